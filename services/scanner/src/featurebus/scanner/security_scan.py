"""AST security scan of every .py file of a plugin: allowlists, not blocklists.

Plugins are untrusted code. The scan is a pre-filter (plugins still run in Ray workers, never in a
service), and it fails closed: what it cannot reason about, it rejects.

- Imports: only the modules of :data:`ALLOWED_MODULES` (the guide's table, the SDK and its import
  aliases, and side-effect-free standard library modules) and the plugin's own modules.
- Names: forbidden builtins are rejected as calls *and* as references (``f = eval``, a decorator,
  a callback); names bound to ``os`` (``import os as o``, ``e = os``, a parameter default) are
  followed, and ``os.system``/``os.popen``/``os.exec*``/``os.spawn*``/``os.fork*``/``os.kill``/
  ``os.putenv`` are rejected wherever they appear, as are ``os.environ`` writes (reads are fine).
- Reflection: ``getattr``/``hasattr``/``delattr`` need a constant, non-dunder attribute name;
  ``vars``, ``__dict__``, ``globals``/``locals``, dunders outside :data:`ALLOWED_DUNDERS`, frame and
  code attributes are rejected — the object-graph escapes (``().__class__.__base__.__subclasses__()``).
- Unsafe loading: ``torch.load`` without ``weights_only=True``, ``allow_pickle=True``,
  ``trust_remote_code=True``, ``read_pickle``.
- Source is decoded exactly as the import system does (coding cookie, universal newlines), only
  UTF-8/ASCII/Latin-1 cookies are accepted, and the tree is walked without recursion.
"""

from __future__ import annotations

import ast
import codecs
import importlib.util
import io
import tokenize
from dataclasses import dataclass, field
from typing import Literal

from featurebus.common.events import Violation

__all__ = [
    "ALLOWED_DUNDERS",
    "ALLOWED_MODULES",
    "FORBIDDEN_BUILTINS",
    "ScanOptions",
    "parse_source",
    "scan_source",
    "scan_tree",
]

# The guide's allowed libraries, the SDK (native and guide import paths), and standard-library
# modules that neither run processes, open files, load code nor reach interpreter internals.
ALLOWED_MODULES = frozenset(
    {
        # the guide's table
        "numpy", "pandas", "polars", "pyarrow", "torch", "transformers", "sentence_transformers", "onnxruntime",
        "PIL", "cv2", "imageio", "librosa", "soundfile", "ffmpeg", "requests", "httpx", "aiohttp",
        "os", "json", "re", "typing", "dataclasses", "pydantic", "logging",
        # used by the guide's own examples
        "torchvision", "io", "hashlib", "asyncio",
        # the SDK and the guide's import paths for it
        "featurebus.sdk", "engine", "shared",
        # side-effect-free standard library
        "math", "cmath", "statistics", "random", "decimal", "fractions", "numbers", "operator", "functools",
        "itertools", "collections", "enum", "abc", "copy", "string", "textwrap", "unicodedata", "base64",
        "binascii", "struct", "datetime", "time", "calendar", "zoneinfo", "uuid", "heapq", "bisect", "array",
        "contextlib", "concurrent.futures", "threading", "queue", "warnings", "typing_extensions", "types",
        "html", "urllib.parse", "zlib", "gzip", "bz2", "lzma", "difflib", "fnmatch", "secrets", "hmac",
    }
)  # fmt: skip

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
    "locals": "pass values explicitly",
    "vars": "read attributes by their constant names",
    "breakpoint": "remove debugging calls",
    "memoryview": "plugins may not view raw memory",
    "__build_class__": "define classes with class statements",
    "__builtins__": "use the builtins directly",
    "__loader__": "plugins may not reach the import system",
    "__spec__": "plugins may not reach the import system",
}
FORBIDDEN_OS = ("system", "popen", "exec", "spawn", "fork", "kill", "posix_spawn", "putenv", "unsetenv", "plock")
ENVIRON_WRITERS = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__"}
ALLOWED_DUNDERS = frozenset(
    {
        "__init__", "__call__", "__name__", "__doc__", "__file__", "__version__", "__all__", "__len__",
        "__iter__", "__next__", "__enter__", "__exit__", "__aenter__", "__aexit__", "__repr__", "__str__",
        "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__bool__", "__contains__",
        "__getitem__", "__setitem__", "__delitem__", "__post_init__", "__add__", "__sub__", "__mul__",
        "__truediv__", "__floordiv__", "__mod__", "__neg__", "__abs__", "__slots__", "__annotations__",
        "__main__", "__future__", "__await__", "__aiter__", "__anext__", "__del__", "__format__", "__float__",
        "__int__", "__index__", "__matmul__",
    }
)  # fmt: skip
FRAME_ATTRS = {
    "f_globals", "f_locals", "f_back", "f_builtins", "f_code", "gi_frame", "gi_code", "cr_frame", "cr_code",
    "ag_frame", "ag_code", "tb_frame", "tb_next", "co_code", "co_consts", "func_globals",
}  # fmt: skip
HUB_LOADERS = {"from_pretrained", "SentenceTransformer", "hf_hub_download", "snapshot_download", "pipeline"}
Severity = Literal["ERROR", "WARNING", "INFO"]
_SAFE_ENCODINGS = {"utf-8", "ascii", "latin-1", "iso8859-1"}


@dataclass(frozen=True)
class ScanOptions:
    strict: bool = False
    # Top-level names of the plugin's own modules (importable without the allowlist).
    own_modules: frozenset[str] = frozenset()


def _allowed(module: str, own: frozenset[str]) -> bool:
    parts = module.split(".")
    if parts[0] in own:
        return True
    return any(".".join(parts[:i]) in ALLOWED_MODULES for i in range(1, len(parts) + 1))


def decode_like_python(data: bytes) -> str:
    """Decode source as the import system does; refuse encodings other than UTF-8/ASCII/Latin-1."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    if codecs.lookup(encoding).name not in _SAFE_ENCODINGS:
        raise ValueError(f"source encoding {encoding!r} is not accepted: save the file as UTF-8")
    return importlib.util.decode_source(data)


def parse_source(filename: str, data: bytes) -> ast.Module | Violation:
    """The module's tree, or the violation that says why the scanner cannot read it."""
    try:
        return ast.parse(decode_like_python(data), filename=filename)
    except (SyntaxError, ValueError, UnicodeDecodeError, LookupError, RecursionError, MemoryError) as exc:
        return Violation(
            filename=filename,
            line=getattr(exc, "lineno", 0) or 0,
            code="SEC000",
            message=f"cannot parse {filename}: {exc}",
            hint="the scanner rejects what it cannot read",
        )


def scan_tree(filename: str, tree: ast.Module, options: ScanOptions | None = None) -> list[Violation]:
    return _Checker(filename, options or ScanOptions()).run(tree)


def scan_source(filename: str, data: bytes, options: ScanOptions | None = None) -> list[Violation]:
    parsed = parse_source(filename, data)
    return [parsed] if isinstance(parsed, Violation) else scan_tree(filename, parsed, options)


@dataclass
class _Checker:
    filename: str
    options: ScanOptions
    violations: list[Violation] = field(default_factory=list)
    os_names: set[str] = field(default_factory=set)  # names bound to the os module
    environ_names: set[str] = field(default_factory=set)  # names bound to os.environ

    def add(
        self, node: ast.AST, code: str, message: str, hint: str | None = None, severity: Severity = "ERROR"
    ) -> None:
        self.violations.append(
            Violation(
                filename=self.filename,
                line=getattr(node, "lineno", 0),
                severity=severity,
                code=code,
                message=message,
                hint=hint,
            )
        )

    def run(self, tree: ast.AST) -> list[Violation]:
        # Pre-order, source order, without recursion: bindings are seen before their uses.
        stack: list[ast.AST] = [tree]
        while stack:
            node = stack.pop()
            handler = getattr(self, f"check_{type(node).__name__}", None)
            if handler is not None:
                handler(node)
            stack.extend(reversed(list(ast.iter_child_nodes(node))))
        return self.violations

    # -- what a name or expression stands for ------------------------------------------------------

    def is_os(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id in self.os_names

    def is_environ(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.environ_names
        return isinstance(node, ast.Attribute) and node.attr == "environ" and self.is_os(node.value)

    def bind(self, target: ast.AST, value: ast.AST) -> None:
        """Follow aliases: a name assigned the os module (or os.environ) is that object too."""
        if isinstance(target, ast.Name):
            if self.is_os(value):
                self.os_names.add(target.id)
            elif self.is_environ(value):
                self.environ_names.add(target.id)

    # -- imports ----------------------------------------------------------------------------------

    def check_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not _allowed(alias.name, self.options.own_modules):
                self.add(
                    node,
                    "SEC001",
                    f"import of {alias.name!r}, which is not on the allowlist",
                    "plugins may import the guide's libraries (numpy, pandas, torch, transformers, ...), the SDK "
                    "and side-effect-free standard library modules",
                )
            elif alias.name.split(".")[0] == "os" and (alias.asname is None or alias.name == "os"):
                self.os_names.add(alias.asname or "os")  # `import os.path` binds `os` too

    def check_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:  # the plugin's own modules
            return
        module = node.module or ""
        if not _allowed(module, self.options.own_modules):
            self.add(
                node,
                "SEC001",
                f"import from {module!r}, which is not on the allowlist",
                "plugins may import the guide's libraries, the SDK and side-effect-free standard library modules",
            )
            return
        for alias in node.names:
            if module == "os" and (alias.name == "*" or alias.name.startswith(FORBIDDEN_OS)):
                self.add(
                    node, "SEC002", f"import of os.{alias.name}", "plugins may not run shell commands or processes"
                )
            elif module == "os" and alias.name == "environ":
                self.environ_names.add(alias.asname or "environ")
            elif module.split(".")[0] not in ("featurebus", "engine", "shared") and (
                alias.name.startswith("__") or alias.name in FORBIDDEN_BUILTINS
            ):
                self.add(
                    node, "SEC004", f"import of {module}.{alias.name}", "plugins may not reach interpreter internals"
                )

    # -- bindings that create aliases --------------------------------------------------------------

    def check_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self.bind(target, node.value)
            self.check_environ_write(target)

    def check_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.bind(node.target, node.value)
        self.check_environ_write(node.target)

    def check_AugAssign(self, node: ast.AugAssign) -> None:
        self.check_environ_write(node.target)

    def check_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.bind(node.target, node.value)

    def check_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self.check_environ_write(target)

    def check_arguments(self, node: ast.arguments) -> None:
        positional = node.posonlyargs + node.args
        for arg, default in zip(positional[len(positional) - len(node.defaults) :], node.defaults, strict=True):
            self.bind(ast.Name(id=arg.arg), default)
        for arg, kw_default in zip(node.kwonlyargs, node.kw_defaults, strict=True):
            if kw_default is not None:
                self.bind(ast.Name(id=arg.arg), kw_default)

    def check_environ_write(self, target: ast.AST) -> None:
        if isinstance(target, ast.Subscript) and self.is_environ(target.value):
            self.add(
                target,
                "SEC005",
                "write to os.environ",
                "read os.environ freely; pass configuration as plugin parameters instead of changing the "
                "worker's environment",
            )
        if isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self.check_environ_write(element)

    # -- names and attributes ----------------------------------------------------------------------

    def check_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_BUILTINS and isinstance(node.ctx, ast.Load):
            self.add(node, "SEC003", f"use of forbidden builtin {node.id}", FORBIDDEN_BUILTINS[node.id])

    def check_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if self.is_os(node.value) and attr.startswith(FORBIDDEN_OS):
            self.add(node, "SEC002", f"use of os.{attr}", "plugins may not run shell commands or processes")
        elif self.is_environ(node.value) and attr in ENVIRON_WRITERS:
            self.add(node, "SEC005", f"write to os.environ via .{attr}()", "read os.environ; don't change it")
        elif attr == "__dict__":
            self.add(node, "SEC006", "access to __dict__", "read attributes by their constant names")
        elif attr.startswith("__") and attr.endswith("__") and attr not in ALLOWED_DUNDERS:
            self.add(node, "SEC004", f"access to {attr}", "plugins may not reach into interpreter internals")
        elif attr in FRAME_ATTRS:
            self.add(node, "SEC004", f"access to frame or code attribute {attr}", "plugins may not inspect frames")
        elif attr == "read_pickle":
            self.add(node, "SEC007", "read_pickle unpickles arbitrary objects", "store data as Parquet, CSV or JSON")
        elif attr == "modules" and isinstance(node.value, ast.Name) and node.value.id == "sys":
            self.add(node, "SEC006", "access to sys.modules", "import modules with import statements")

    # -- calls ----------------------------------------------------------------------------------------

    def check_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in ("getattr", "hasattr") and isinstance(func, ast.Name):
            self.check_reflection(node, name)
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        for unsafe in ("allow_pickle", "trust_remote_code"):
            value = keywords.get(unsafe)
            if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                self.add(
                    node,
                    "SEC007",
                    f"{name}(..., {unsafe}=...) can run code from the loaded data",
                    f"remove {unsafe} (it must be False)",
                )
        if name == "load" and isinstance(func, ast.Attribute) and _is_named(func.value, "torch"):
            weights_only = keywords.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                self.add(
                    node,
                    "SEC007",
                    "torch.load without weights_only=True unpickles arbitrary objects",
                    "call torch.load(path, weights_only=True) or use safetensors",
                )
        if self.options.strict and name in HUB_LOADERS and "revision" not in keywords:
            self.add(
                node,
                "SEC100",
                f"{name}(...) downloads from a model hub without a pinned revision",
                "pass revision=<commit sha> so the weights cannot change under you",
            )

    def check_reflection(self, node: ast.Call, name: str) -> None:
        if len(node.args) < 2:
            return
        attribute = node.args[1]
        if not (isinstance(attribute, ast.Constant) and isinstance(attribute.value, str)):
            self.add(
                node,
                "SEC006",
                f"{name}() with an attribute name that is not a constant",
                f'{name}(obj, "name") with a string literal; the scanner must see which attribute is read',
            )
            return
        value = attribute.value
        if value.startswith("__") and value not in ALLOWED_DUNDERS:
            self.add(node, "SEC004", f"{name}() of {value}", "plugins may not reach into interpreter internals")
        elif self.is_os(node.args[0]) and value.startswith(FORBIDDEN_OS):
            self.add(node, "SEC002", f"{name}(os, {value!r})", "plugins may not run shell commands or processes")


def _is_named(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name
