"""AST security scan of every .py file of a plugin (a pre-filter; plugins still run in Ray workers).

This first version rejects the guide's forbidden modules and calls, and also *references* to
them (``f = eval``, ``map(os.system, ...)``) and aliased imports (``from os import system as log``,
``import os as o; o.system``). Source that cannot be parsed is rejected: what the scanner cannot
read, it does not pass.
"""

from __future__ import annotations

import ast
import io
import tokenize

from featurebus.common.events import Violation

__all__ = ["FORBIDDEN_BUILTINS", "FORBIDDEN_MODULES", "scan_source"]

FORBIDDEN_MODULES = {
    "subprocess": "use requests or httpx for HTTP; plugins may not start processes",
    "socket": "use requests, httpx or aiohttp for network calls",
    "ctypes": "plugins may not load native code",
    "multiprocessing": "featurebus runs max_concurrency actors for you (compute_profile); use parallel_io for I/O",
    "pickle": "load weights with torch.load(..., weights_only=True) or safetensors",
    "marshal": "plugins may not load code objects",
    "shelve": "shelve unpickles; store data as JSON or Parquet",
    "importlib": "import modules with import statements",
    "runpy": "plugins may not run other code",
    "pty": "plugins may not start processes",
    "builtins": "use the builtins directly",
    "code": "plugins may not run other code",
}
FORBIDDEN_BUILTINS = {
    "eval": "use json.loads for parsing, dataclasses for config",
    "exec": "plugins may not run generated code",
    "compile": "plugins may not compile code",
    "open": "embed config as Python dicts or json.loads a string constant; library I/O such as torch.load, "
    "from_pretrained or pd.read_csv is allowed",
    "setattr": "use class attributes or constructor assignment",
    "delattr": "use class attributes or constructor assignment",
    "__import__": "import modules with import statements",
    "globals": "pass values explicitly",
    "breakpoint": "remove debugging calls",
}
FORBIDDEN_OS_PREFIXES = ("system", "popen", "exec", "spawn", "fork", "kill", "posix_spawn", "killpg")


def _forbidden_os(attr: str) -> bool:
    return attr.startswith(FORBIDDEN_OS_PREFIXES)


def _decode(data: bytes) -> str:
    """Decode as the interpreter would (PEP 263 coding cookie, BOM)."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    return data.decode(encoding)


def scan_source(filename: str, data: bytes) -> list[Violation]:
    try:
        tree = ast.parse(_decode(data), filename=filename)
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        line = getattr(exc, "lineno", 0) or 0
        return [
            Violation(
                filename=filename,
                line=line,
                code="SEC000",
                message=f"cannot parse {filename}: {exc}",
                hint="the scanner rejects what it cannot read",
            )
        ]
    visitor = _Visitor(filename)
    visitor.visit(tree)
    return visitor.violations


class _Visitor(ast.NodeVisitor):
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.violations: list[Violation] = []
        self.os_names: set[str] = set()  # names bound to the os module

    def _add(self, node: ast.AST, code: str, message: str, hint: str | None) -> None:
        self.violations.append(
            Violation(filename=self.filename, line=getattr(node, "lineno", 0), code=code, message=message, hint=hint)
        )

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top in FORBIDDEN_MODULES:
                self._add(node, "SEC001", f"import of forbidden module {alias.name!r}", FORBIDDEN_MODULES[top])
            elif alias.name == "os":
                self.os_names.add(alias.asname or "os")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        top = module.split(".")[0]
        if node.level == 0 and top in FORBIDDEN_MODULES:
            self._add(node, "SEC001", f"import from forbidden module {module!r}", FORBIDDEN_MODULES[top])
        elif node.level == 0 and module == "os":
            for alias in node.names:
                if alias.name == "*" or _forbidden_os(alias.name):
                    self._add(
                        node,
                        "SEC002",
                        f"import of os.{alias.name}" + (f" as {alias.asname}" if alias.asname else ""),
                        "plugins may not run shell commands or processes",
                    )
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_BUILTINS and isinstance(node.ctx, ast.Load):
            self._add(node, "SEC003", f"use of forbidden builtin {node.id}()", FORBIDDEN_BUILTINS[node.id])
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id in self.os_names and _forbidden_os(node.attr):
            self._add(node, "SEC002", f"use of os.{node.attr}", "plugins may not run shell commands or processes")
        if node.attr in ("__import__", "__builtins__", "__subclasses__", "__globals__", "__code__"):
            self._add(node, "SEC004", f"access to {node.attr}", "plugins may not reach into interpreter internals")
        self.generic_visit(node)
