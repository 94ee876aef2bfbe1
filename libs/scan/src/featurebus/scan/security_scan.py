"""AST security scan of every .py file of a plugin: allowlists, not blocklists.

Plugins are untrusted code. The scan is the first wall — the runtime sandbox is the boundary — and
it fails closed: what it cannot reason about, it rejects. Each refusal says what was refused and
the fix (``file:line [ERROR] <what>; <fix>``).

- Imports: only :data:`ALLOWED_MODULES` (the guide's libraries, the SDK and its import aliases,
  side-effect-free standard library modules; ``sys``, ``ast`` and ``importlib.metadata`` for a few
  attributes) and the plugin's own modules. ``from X import *`` only from modules with nothing to
  refuse.
- Qualified names (:mod:`.security_rules`): every name, attribute and ``getattr`` with a constant
  name is resolved to what it points to (:mod:`.name_flow` follows aliases through assignments,
  containers, returns, attributes, parameters and the plugin's own modules) and judged: process
  spawning (``os``, ``asyncio``, process pools, ``multiprocessing`` anywhere), native loading
  (``ctypes``/``cffi`` anywhere, ``load_library``, ``cpp_extension``, ``numpy.ctypeslib``, ...),
  ``open()`` under other names (``io.open``, ``os.open``, raw descriptors), links, import-system
  and interpreter hooks, process-wide state.
- Builtins: forbidden builtins are rejected as calls and as references; ``getattr``/``hasattr``
  only as direct calls, with a constant name or on the plugin's own objects; ``vars``,
  ``__dict__``, dunders outside :data:`ALLOWED_DUNDERS` (``self.__class__.__name__`` is fine),
  frame and code attributes are rejected — the object-graph escapes.
- Monkeypatching: assignments to attributes or items of imported modules and classes (SEC009),
  replacing ``os.environ``; a few documented settings (``torch.backends.*``) and items of
  ``os.environ`` (the guide's ``os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = "1"``) are fine.
- Escapes: a module passed to a function the scanner cannot follow (``copy.copy(os)``,
  ``functools.partial(f, os)`` with a library ``f``) is rejected (SEC010).
- Unsafe loading: ``torch.load`` without ``weights_only=True``, ``allow_pickle``,
  ``trust_remote_code``, ``read_pickle``.
- Code hidden in strings: string annotations (which pydantic and ``typing.get_type_hints``
  evaluate) are scanned as code; format strings may not reach dunders.
- Source is decoded exactly as the import system does (coding cookie, universal newlines), only
  UTF-8/ASCII/Latin-1 cookies are accepted, and the tree is walked without recursion.
"""

from __future__ import annotations

import ast
import codecs
import importlib.util
import io
import string
import tokenize
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from featurebus.common.events import Violation
from featurebus.scan.dependencies import PluginPackages
from featurebus.scan.name_flow import (
    MAX_DEPTH,
    ModuleFacts,
    OutOfBudget,
    PluginProgram,
    nesting_depth,
    strip_wrapping,
)
from featurebus.scan.security_rules import (
    ALLOWED_DUNDERS,
    ALLOWED_MODULES,
    ATTRIBUTE_NAME_RULES,
    CLASS_NAME_READS,
    FORBIDDEN_BUILTINS,
    FRAME_ATTRS,
    HUB_LOADERS,
    PLUGIN_SETTINGS,
    SDK_ROOTS,
    STAR_IMPORT_OK,
    Rule,
    is_allowed_module,
    is_rule_prefix,
    refusal,
    restricted_name,
)

__all__ = [
    "ALLOWED_DUNDERS",
    "ALLOWED_MODULES",
    "FORBIDDEN_BUILTINS",
    "PluginProgram",
    "ScanOptions",
    "parse_source",
    "scan_program",
]

Severity = Literal["ERROR", "WARNING", "INFO"]
_SAFE_ENCODINGS = {"utf-8", "ascii", "latin-1", "iso8859-1"}
REFLECTION_BUILTINS = frozenset({"getattr", "hasattr"})
# Builtins that may be given a module or os.environ: they read it (or are modelled by name_flow).
SAFE_CONSUMERS = frozenset(
    {"isinstance", "issubclass", "len", "dict", "list", "tuple", "set", "frozenset", "sorted", "reversed", "iter",
     "next", "enumerate", "zip", "str", "repr", "print", "bool", "id", "hash", "type", "min", "max", "any", "all",
     "dir", "callable", "format", "getattr", "hasattr", "super"}
)  # fmt: skip
_MAX_STRING_DEPTH = 3


@dataclass(frozen=True)
class ScanOptions:
    strict: bool = False
    # Top-level names of the plugin's own modules (importable without the allowlist).
    own_modules: frozenset[str] = frozenset()
    # Top-level modules of the plugin's own environment (the installable packages it depends on).
    environment_modules: frozenset[str] = frozenset()
    # The operator's installable packages: an import of one the plugin does not depend on says so.
    packages: PluginPackages | None = None


def decode_like_python(data: bytes) -> str:
    """Decode source as the import system does; refuse encodings other than UTF-8/ASCII/Latin-1."""
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    if codecs.lookup(encoding).name not in _SAFE_ENCODINGS:
        raise ValueError(f"source encoding {encoding!r} is not accepted: save the file as UTF-8")
    return importlib.util.decode_source(data)


def parse_source(filename: str, data: bytes) -> ast.Module | Violation:
    """The module's tree, or the violation that says why the scanner cannot read it."""
    try:
        tree = ast.parse(decode_like_python(data), filename=filename)
    except (SyntaxError, ValueError, UnicodeDecodeError, LookupError, RecursionError, MemoryError) as exc:
        return Violation(
            filename=filename,
            line=getattr(exc, "lineno", 0) or 0,
            code="SEC000",
            message=f"cannot parse {filename}: {exc}",
            hint="the scanner rejects what it cannot read",
        )
    if nesting_depth(tree) > MAX_DEPTH:
        return Violation(
            filename=filename,
            code="SEC000",
            message=f"{filename} nests code more than {MAX_DEPTH} levels deep",
            hint="the scanner bounds its analysis: split the expression (long a + b + ... chains, deep literals)",
        )
    return tree


def scan_program(program: PluginProgram, options: ScanOptions | None = None) -> dict[str, list[Violation]]:
    """The violations of every module of a plugin whose aliases were solved together."""
    opts = options or ScanOptions()
    program.start_budget()  # one budget for checking every module: a thousand files cannot multiply it
    return {name: _Checker(name, facts, program, opts).run() for name, facts in program.by_file.items()}


def _describe(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_str(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


@dataclass
class _Checker:
    filename: str
    facts: ModuleFacts
    program: PluginProgram
    options: ScanOptions
    violations: list[Violation] = field(default_factory=list)
    called: set[int] = field(default_factory=set)  # ids of getattr/hasattr names that are called
    blessed: set[int] = field(default_factory=set)  # ids of `x.__class__` nodes read for a name
    _seen: set[tuple[int, str, str]] = field(default_factory=set)

    def add(self, node: ast.AST, code: str, what: str, fix: str | None = None, severity: Severity = "ERROR") -> None:
        line = getattr(node, "lineno", 0)
        key = (line, code, what)
        if key in self._seen:
            return
        self._seen.add(key)
        self.violations.append(
            Violation(
                filename=self.filename,
                line=line,
                severity=severity,
                code=code,
                message=f"{what}; {fix}" if fix else what,
                hint=fix,
            )
        )

    def refuse(self, node: ast.AST, found: tuple[Rule, str], how: str = "use of") -> None:
        rule, name = found
        self.add(node, rule.code, f"{how} {name}, which {rule.what}", rule.fix)

    def run(self) -> list[Violation]:
        program = self.program
        if program.gave_up_in == self.filename:
            self.add(
                self.facts.tree,
                "SEC010",
                "the scanner could not follow this plugin's aliases within its bounds",
                "simplify how modules and functions are passed around (fewer values per name)",
            )
        if program.work > program.work_limit:
            return self.violations  # an earlier module used up the checks' budget and said so
        try:
            self.check_nodes(self.facts.nodes, 0)
        except (OutOfBudget, RecursionError):
            program.work = program.work_limit + 1
            self.add(
                self.facts.tree,
                "SEC010",
                "the plugin is too large or too intricate for the scanner to check within its bounds",
                "split long modules and simplify how modules and functions are passed around",
            )
        return self.violations

    def check_nodes(self, nodes: list[ast.AST], depth: int) -> None:
        handlers = _CHECKS
        for node in nodes:
            handler = handlers.get(type(node))
            if handler is not None:
                handler(self, node)
            if depth < _MAX_STRING_DEPTH and type(node) in _ANNOTATED:
                self.check_annotation(node, depth)

    # -- what an expression stands for ------------------------------------------------------------

    def value(self, node: ast.AST) -> set[str] | frozenset[str]:
        return self.program.value(self.facts, node)

    def is_builtin(self, node: ast.AST, names: frozenset[str]) -> bool:
        return isinstance(node, ast.Name) and node.id in names and not self.facts.env.get(node.id)

    def dangerous(self, value: str) -> bool:
        """A value that leads to refused things when handed to code the scanner cannot follow."""
        core = strip_wrapping(value)
        if core.startswith("@m:"):
            return True
        if core.startswith("@"):
            return False
        if core.endswith(("os.environ", "os.environb")):
            return False  # a mapping to read (json.dumps(dict(os.environ))); writes are judged where they are made
        return core in self.program.imported_modules or is_rule_prefix(core)

    # -- imports ----------------------------------------------------------------------------------

    def check_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not self.importable(alias.name):
                self.add(
                    node,
                    "SEC001",
                    f"import of {alias.name!r}, which is not on the allowlist",
                    self.import_hint(alias.name),
                )
            elif alias.name.split(".")[0] not in self.options.own_modules:
                found = self.refusal(alias.name)
                if found:
                    self.refuse(node, found, "import of")

    def refusal(self, qualname: str) -> tuple[Rule, str] | None:
        return refusal(qualname, self.options.environment_modules)

    def importable(self, module: str) -> bool:
        """On the allowlist, one of the plugin's own modules, or of its environment's packages."""
        return is_allowed_module(module, self.options.own_modules) or (
            module.split(".")[0] in self.options.environment_modules
        )

    def import_hint(self, module: str) -> str:
        package = self.options.packages.package_of_module(module) if self.options.packages else None
        if package is not None:
            return f'list "{package}" in the manifest\'s dependencies: featurebus installs it for this plugin'
        return (
            "plugins may import the guide's libraries (numpy, pandas, torch, transformers, ...), the SDK, "
            "side-effect-free standard library modules and the packages their manifest's dependencies list"
        )

    def check_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or module.split(".")[0] in self.options.own_modules:
            self.check_own_import(node)
            return
        if not self.importable(module) and not all(
            is_allowed_module(f"{module}.{a.name}") for a in node.names if a.name != "*"
        ):
            self.add(node, "SEC001", f"import from {module!r}, which is not on the allowlist", self.import_hint(module))
            return
        for alias in node.names:
            if alias.name == "*":
                if module not in STAR_IMPORT_OK and module.split(".")[0] not in SDK_ROOTS:
                    self.add(
                        node,
                        "SEC002" if module == "os" else "SEC004",
                        f"from {module} import *, which hides the names this module uses",
                        f"import the names you need: from {module} import name",
                    )
                continue
            found = self.refusal(f"{module}.{alias.name}")
            if found:
                self.refuse(node, found, "import of")
            elif module.split(".")[0] not in SDK_ROOTS and (
                alias.name.startswith("__") or alias.name in FORBIDDEN_BUILTINS
            ):
                self.add(
                    node, "SEC004", f"import of {module}.{alias.name}", "plugins may not reach interpreter internals"
                )

    def check_own_import(self, node: ast.ImportFrom) -> None:
        """``from .helpers import run``: what the other module gave ``run`` is judged here too."""
        for alias in node.names:
            for value in self.facts.env.get(alias.asname or alias.name, ()):
                if not value.startswith("@") and not value.startswith("[]"):
                    found = self.refusal(value)
                    if found:
                        self.refuse(node, found, f"import of {alias.name} (from the plugin's own module) =")

    # -- names and attributes ---------------------------------------------------------------------

    def check_Name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Load):
            return
        name = node.id
        if name in FORBIDDEN_BUILTINS:
            self.add(node, "SEC003", f"use of forbidden builtin {name}", FORBIDDEN_BUILTINS[name])
            return
        values = self.facts.env.get(name)
        if not values:
            if name in REFLECTION_BUILTINS and id(node) not in self.called:
                self.add(
                    node,
                    "SEC006",
                    f"{name} used as a value (bound to a name, passed or stored)",
                    f'call {name}(obj, "name") directly so the scanner sees which attribute is read',
                )
            return
        for value in values:
            if not value.startswith("@") and not value.startswith("[]"):
                found = self.refusal(value)
                if found:
                    self.refuse(node, found, f"use of {name} =")
                    return

    def check_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr in CLASS_NAME_READS and isinstance(node.value, ast.Attribute) and node.value.attr == "__class__":
            self.blessed.add(id(node.value))
        if attr == "__dict__":
            self.add(node, "SEC006", "access to __dict__", "read attributes by their constant names")
            return
        if attr.startswith("__") and attr.endswith("__"):
            if attr == "__class__" and id(node) in self.blessed:
                pass
            elif attr not in ALLOWED_DUNDERS:
                fix = (
                    "read type(obj).__name__" if attr == "__class__" else "plugins may not reach interpreter internals"
                )
                self.add(node, "SEC004", f"access to {attr}", fix)
                return
            elif attr == "__annotations__" and not isinstance(node.ctx, ast.Load):
                self.add(
                    node, "SEC004", "write to __annotations__", "annotate in the source; annotations are evaluated"
                )
                return
        if attr in FRAME_ATTRS:
            self.add(node, "SEC004", f"access to frame or code attribute {attr}", "plugins may not inspect frames")
            return
        if attr == "read_pickle":
            self.add(node, "SEC007", "read_pickle unpickles arbitrary objects", "store data as Parquet, CSV or JSON")
            return
        if attr in ATTRIBUTE_NAME_RULES:
            rule = ATTRIBUTE_NAME_RULES[attr]
            shown = ast.unparse(node)  # the call as written (asyncio.create_subprocess_exec), if short
            self.add(
                node, rule.code, f"use of {shown if len(shown) <= 60 else '.' + attr}, which {rule.what}", rule.fix
            )
            return
        storing = not isinstance(node.ctx, ast.Load)
        for base in self.value(node.value):
            if base.startswith("@") or base.startswith("[]"):
                continue
            if self.refusal(base):
                continue  # reported where the refused part itself appears
            qualname = f"{base}.{attr}"
            found = self.refusal(qualname)
            if found:
                self.refuse(node, found)
                return
            if storing:
                self.check_patch(node, base, qualname)
                return

    def check_patch(self, node: ast.AST, base: str, qualname: str) -> None:
        if qualname.startswith(PLUGIN_SETTINGS) or qualname in PLUGIN_SETTINGS:
            return
        self.add(
            node,
            "SEC009",
            f"assignment to {qualname}, an attribute of the imported {base} (monkeypatching)",
            "subclass or wrap the object in your own module instead of changing the library for everyone in the worker",
        )

    def check_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Load):
            return
        for base in self.value(node.value):
            if base.startswith("@") or base.startswith("[]"):
                continue
            if base.endswith(("os.environ", "os.environb")):
                continue  # the guide's device settings; the sandboxed process and its environment are the plugin's
            if not self.refusal(base):
                self.add(
                    node,
                    "SEC009",
                    f"item assignment into {base}, which belongs to an imported module (monkeypatching)",
                    "keep your own copy: table = dict(library.TABLE); table[key] = value",
                )
            return

    # -- calls ----------------------------------------------------------------------------------------

    def check_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        callee = self.value(func)
        if self.is_builtin(func, REFLECTION_BUILTINS):
            self.called.add(id(func))
            self.check_reflection(node, name)
        self.check_keywords(node, name, callee)
        if any(q == "operator.attrgetter" or q == "operator.methodcaller" for q in callee):
            self.check_getter(node, "attrgetter" if any(q.endswith("attrgetter") for q in callee) else "methodcaller")
        if any(q.endswith("typing.ForwardRef") for q in callee) and node.args:
            self.check_code_string(node.args[0], 0, required=True)
        if any(q.endswith("typing.TypeVar") for q in callee):
            for keyword in node.keywords:
                if keyword.arg == "bound":
                    self.check_code_string(keyword.value, 0, required=False)
        if isinstance(func, ast.Attribute) and func.attr in ("format", "format_map") and _is_str(func.value):
            self.check_format_string(node, func.value.value)  # type: ignore[attr-defined]
        if not callee or not all(q.startswith("@f:") for q in callee):
            self.check_escape(node, callee)

    def check_keywords(self, node: ast.Call, name: str, callee: set[str] | frozenset[str]) -> None:
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
        is_torch_load = any(q == "torch.load" or q.endswith(".torch.load") for q in callee) or (
            name == "load" and isinstance(node.func, ast.Attribute) and _is_named(node.func.value, "torch")
        )
        if is_torch_load:
            weights_only = keywords.get("weights_only")
            if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                self.add(
                    node,
                    "SEC007",
                    "torch.load without weights_only=True unpickles arbitrary objects",
                    "call torch.load(path, weights_only=True) or use safetensors",
                )
        if any(q.endswith("DataLoader") for q in callee):
            workers = keywords.get("num_workers")
            if workers is not None and not (isinstance(workers, ast.Constant) and workers.value == 0):
                self.add(
                    node,
                    "SEC011",
                    "DataLoader(num_workers=...) starts worker processes, which the sandbox refuses",
                    "use num_workers=0; batches arrive already parallelised by the platform",
                    severity="WARNING",
                )
        if self.options.strict and name in HUB_LOADERS and "revision" not in keywords:
            self.add(
                node,
                "SEC100",
                f"{name}(...) downloads from a model hub without a pinned revision",
                "pass revision=<commit sha> so the weights cannot change under you",
            )

    def check_reflection(self, node: ast.Call, name: str) -> None:
        if any(isinstance(a, ast.Starred) for a in node.args) or node.keywords:
            self.add(node, "SEC006", f"{name}() with arguments the scanner cannot see", f'{name}(obj, "name")')
            return
        if len(node.args) < 2:
            return
        target, attribute = node.args[0], node.args[1]
        targets = [v for v in self.value(target) if not v.startswith("@f:") and not v.startswith("[]")]
        if not _is_str(attribute):
            if targets:
                what = _describe(target)
                self.add(
                    node,
                    "SEC006",
                    f"{name}({what}, <expression>) reads an attribute of a module the scanner cannot see",
                    f'name the attribute: {name}({what}, "name"), or pick from a dict of allowed values, e.g. '
                    '{"float16": torch.float16}[name]',
                )
            return
        value = attribute.value  # type: ignore[attr-defined]
        if value.startswith("__") and value not in ALLOWED_DUNDERS:
            self.add(node, "SEC004", f"{name}() of {value}", "plugins may not reach into interpreter internals")
            return
        if value in FRAME_ATTRS:
            self.add(node, "SEC004", f"{name}() of {value}", "plugins may not inspect frames")
            return
        for base in targets:
            if base.startswith("@"):
                continue
            found = self.refusal(f"{base}.{value}")
            if found:
                self.refuse(node, found, f"{name}() of")
                return

    def check_getter(self, node: ast.Call, kind: str) -> None:
        names = node.args if kind == "attrgetter" else node.args[:1]
        for argument in names:
            if not _is_str(argument):
                self.add(
                    node,
                    "SEC006",
                    f"operator.{kind}() with a name that is not a constant",
                    "use a lambda that names the attribute, e.g. lambda row: row.score",
                )
                return
            parts = argument.value.split(".") if kind == "attrgetter" else [argument.value]  # type: ignore[attr-defined]
            bad = [p for p in parts if restricted_name(p)]
            if bad:
                self.add(
                    node,
                    "SEC006",
                    f"operator.{kind}({argument.value!r}) reaches {bad[0]}",  # type: ignore[attr-defined]
                    "plugins may not reach refused attributes by name",
                )
                return

    def check_escape(self, node: ast.Call, callee: set[str] | frozenset[str]) -> None:
        """A module handed to code the scanner cannot follow could be used there for anything."""
        if self.is_builtin(node.func, SAFE_CONSUMERS):
            return
        arguments = [*node.args, *(k.value for k in node.keywords)]
        for argument in arguments:
            for value in self.value(argument):
                if self.dangerous(value):
                    core = strip_wrapping(value)
                    shown = core.replace("@m:", "the plugin module ") if core.startswith("@m:") else core
                    self.add(
                        node,
                        "SEC010",
                        f"passes {shown} to {_describe(node.func)}, where the scanner cannot follow what is done "
                        "with it",
                        f"call the function you need ({shown}.name(...)) yourself, or pass plain values",
                    )
                    return

    # -- code hidden in strings -------------------------------------------------------------------------

    def check_annotation(self, node: ast.AST, depth: int) -> None:
        annotation = node.returns if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else node.annotation  # type: ignore[attr-defined]
        if annotation is None:
            return
        stack = [annotation]
        while stack:
            current = stack.pop()
            if isinstance(current, ast.Subscript) and _names_literal(current.value):
                continue  # Literal["a b"] holds values, not code
            if _is_str(current):
                self.check_code_string(current, depth, required=False)
            else:
                stack.extend(ast.iter_child_nodes(current))

    def check_code_string(self, node: ast.AST, depth: int, *, required: bool) -> None:
        """Forward references are evaluated by pydantic and typing: scan them as the code they are."""
        if not _is_str(node):
            if required:
                self.add(node, "SEC003", "a forward reference built at run time", "write the type as a string literal")
            return
        try:
            tree = ast.parse(node.value.strip(), mode="eval")  # type: ignore[attr-defined]
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return  # not an expression: evaluating it raises SyntaxError, it runs nothing
        if nesting_depth(tree) > MAX_DEPTH:
            self.add(
                node, "SEC003", f"a string annotation nested more than {MAX_DEPTH} levels deep", "simplify the type"
            )
            return
        ast.increment_lineno(tree, getattr(node, "lineno", 1) - 1)
        self.check_nodes(list(ast.walk(tree)), depth + 1)

    def check_format_string(self, node: ast.Call, template: str) -> None:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
        except ValueError:
            return
        for name in fields:
            parts = name.replace("[", ".").replace("]", "").split(".")
            if any(p.startswith("_") or p in FRAME_ATTRS for p in parts[1:]):
                self.add(
                    node,
                    "SEC004",
                    f"format field {{{name}}} reaches private attributes",
                    "format plain values: '{}'.format(obj.name)",
                )
                return


_ANNOTATED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.arg, ast.AnnAssign)
_CHECKS: dict[type, Callable[[_Checker, Any], None]] = {
    ast.Import: _Checker.check_Import,
    ast.ImportFrom: _Checker.check_ImportFrom,
    ast.Name: _Checker.check_Name,
    ast.Attribute: _Checker.check_Attribute,
    ast.Subscript: _Checker.check_Subscript,
    ast.Call: _Checker.check_Call,
}


def _names_literal(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "Literal") or (
        isinstance(node, ast.Attribute) and node.attr == "Literal"
    )


def _is_named(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name
