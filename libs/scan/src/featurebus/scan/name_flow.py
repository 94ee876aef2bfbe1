"""Where a plugin's names point: aliases of imported objects, followed across the plugin's own modules.

The analysis is flow- and scope-insensitive: a name is every value it is ever given anywhere in its
module, an attribute ``x.name`` is every value ever stored as ``<anything>.name``, and a function
returns every value it ever returns. That over-approximates, which is the safe direction for a
scanner; ordinary plugin code gives very few names a module as value, so it costs no false alarms.

Values are strings:

- ``numpy.ctypeslib``: an imported object, by its canonical qualified name;
- ``@m:processors.helpers``: one of the plugin's own modules;
- ``@f:processors.helpers:12:4``: one of the plugin's functions or lambdas, by position;
- ``[]`` + value: a container (list, tuple, dict, set, generator, iterator) holding that value.

Aliases are followed through assignment, unpacking, ``for``/``with``/``match`` targets, walrus,
containers and their mutators, parameters (defaults and every call site, callbacks included),
return and yield, decorators, attributes (``self.x = os``, class bodies), and ``import`` /
``from .helpers import name`` between the plugin's modules.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

__all__ = ["MAX_DEPTH", "ModuleFacts", "OutOfBudget", "PluginProgram", "module_name", "nesting_depth", "strip_wrapping"]

EMPTY: frozenset[str] = frozenset()
_WRAP = "[]"
_MAX_WRAP = _WRAP * 3
_MAX_DOTS = 12  # `x = x.a` in a loop must not grow names forever
_MAX_ROUNDS = 40
# Bounds, so that a crafted plugin cannot make the scan hang or exhaust memory. A typical plugin
# needs a few thousand steps and sets of a handful of values; past a bound the scan fails closed.
MAX_DEPTH = 120  # AST nesting (value() recurses on expressions; ordinary code nests < 30)
_MAX_VALUES = 512  # values one name, attribute or return may hold
MAX_WORK = 400_000  # value() steps for solving, and again for checking every module (a plugin: ~2,000)
_TRIMMED = 32  # what a set keeps when solving gave up (the checks still run, on fewer values)


class OutOfBudget(Exception):
    """The analysis went past one of its bounds; the plugin is rejected as too complex to follow."""


def nesting_depth(tree: ast.AST, limit: int = MAX_DEPTH) -> int:
    """The depth of ``tree`` (level by level, without recursion), counted up to ``limit + 1``."""
    depth, level = 0, [tree]
    while level and depth <= limit:
        depth += 1
        below: list[ast.AST] = []
        for node in level:
            for name in node._fields:
                item = getattr(node, name, None)
                if type(item) is list:
                    below.extend(c for c in item if isinstance(c, ast.AST))
                elif isinstance(item, ast.AST) and name != "ctx":
                    below.append(item)
        level = below
    return depth


# Builtins whose result holds the elements of their arguments (list(fs), next(iter(fs)), ...).
ELEMENT_BUILTINS = frozenset(
    {"list", "tuple", "set", "frozenset", "sorted", "reversed", "iter", "next", "enumerate", "zip", "dict",
     "min", "max", "filter", "map"}
)  # fmt: skip
# Container methods that put their arguments into the receiver.
MUTATORS = frozenset({"append", "extend", "insert", "add", "update", "setdefault", "__setitem__", "appendleft"})

Transform = Callable[[Iterable[str]], set[str]]
# a function's module, positional parameter names, keyword-only names, (*args name, **kwargs name)
_Params = tuple["ModuleFacts", list[str], list[str], tuple[str | None, str | None]]


def _wrap(values: Iterable[str]) -> set[str]:
    return {v if v.startswith(_MAX_WRAP) else _WRAP + v for v in values}


def _unwrap(values: Iterable[str]) -> set[str]:
    return {v[2:] for v in values if v.startswith(_WRAP)}


def _same(values: Iterable[str]) -> set[str]:
    return set(values)


def strip_wrapping(value: str) -> str:
    while value.startswith(_WRAP):
        value = value[2:]
    return value


def module_name(filename: str) -> tuple[str, bool]:
    """``processors/core.py`` → (``processors.core``, False); ``processors/__init__.py`` → (``processors``, True)."""
    parts = list(PurePosixPath(filename).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


@dataclass
class ModuleFacts:
    name: str
    is_package: bool
    tree: ast.Module
    env: dict[str, set[str]] = field(default_factory=dict)
    nodes: list[ast.AST] = field(default_factory=list)  # every node, pre-order, for the checks

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


class PluginProgram:
    """The alias facts of every module of one plugin, solved together."""

    def __init__(self, trees: dict[str, ast.Module], own: frozenset[str]) -> None:
        self.own = own
        self.by_file: dict[str, ModuleFacts] = {}
        self.modules: dict[str, ModuleFacts] = {}
        self.attrs: dict[str, set[str]] = {}
        self.returns: dict[str, set[str]] = {}
        self.params: dict[str, _Params] = {}
        self.imported_modules: set[str] = set()  # qualified names bound by `import` statements
        self.converged = True
        self.gave_up_in: str | None = None  # the file whose rule was being solved when the bounds ran out
        self.work = 0
        self.work_limit = MAX_WORK
        self._rules: list[tuple[str, Callable[[], bool]]] = []
        for filename, tree in trees.items():
            name, is_package = module_name(filename)
            facts = ModuleFacts(name, is_package, tree)
            self.by_file[filename] = facts
            self.modules[name] = facts
        # every module and package path, namespace packages (no __init__.py) included
        self.module_paths = {".".join(n.split(".")[:i]) for n in self.modules for i in range(1, n.count(".") + 2)}
        for filename, facts in self.by_file.items():
            self._current = filename
            _Collector(self, facts).run()
        self._solve()

    # -- solving ----------------------------------------------------------------------------------

    def _solve(self) -> None:
        rules = self._rules
        filename = next(iter(self.by_file), None)
        try:
            for _ in range(_MAX_ROUNDS):
                changed = False
                for owner, rule in rules:
                    filename = owner
                    if rule():
                        changed = True
                if not changed:
                    return
        except (OutOfBudget, RecursionError):
            pass
        self.gave_up_in = filename
        # Not solved within the bounds: the checker reports it (fail closed) and still judges what
        # it knows, on sets trimmed so that the checks stay cheap.
        self.converged = False
        for sets in (*(m.env for m in self.modules.values()), self.attrs, self.returns):
            for key, values in sets.items():
                if len(values) > _TRIMMED:
                    sets[key] = set(sorted(values, key=len)[:_TRIMMED])

    def start_budget(self) -> None:
        """A fresh budget of value() steps (for the checks, after solving)."""
        self.work = 0

    def spend(self, steps: int) -> None:
        self.work += steps
        if self.work > self.work_limit:
            raise OutOfBudget

    def rule(self, fn: Callable[[], bool]) -> None:
        self._rules.append((self._current, fn))

    def add(self, into: set[str], values: set[str] | frozenset[str]) -> bool:
        self.spend(len(values))
        before = len(into)
        into.update(values)
        after = len(into)
        if after > _MAX_VALUES:
            raise OutOfBudget
        return after != before

    def attr_set(self, name: str) -> set[str]:
        return self.attrs.setdefault(name, set())

    # -- values -----------------------------------------------------------------------------------

    def value(self, m: ModuleFacts, node: ast.AST) -> set[str] | frozenset[str]:
        """Every value the expression may have, as far as the plugin's own code can decide it."""
        self.work += 1
        if self.work > self.work_limit:
            raise OutOfBudget
        t = type(node)
        if t is ast.Name:
            return m.env.get(node.id, EMPTY)  # type: ignore[attr-defined]
        if t is ast.Attribute:
            base = self.value(m, node.value)  # type: ignore[attr-defined]
            extra = self.attrs.get(node.attr)  # type: ignore[attr-defined]
            if not base:
                return extra or EMPTY
            out = set(extra) if extra else set()
            self.spend(len(base))
            for q in base:
                self.attribute_of(q, node.attr, out)  # type: ignore[attr-defined]
            return out
        if t is ast.Call:
            return self._call_value(m, node)  # type: ignore[arg-type]
        if t is ast.Subscript:
            return _unwrap(self.value(m, node.value))  # type: ignore[attr-defined]
        if t is ast.List or t is ast.Tuple or t is ast.Set:
            out = set()
            for element in node.elts:  # type: ignore[attr-defined]
                if type(element) is ast.Starred:
                    out |= self.value(m, element.value)
                else:
                    out |= _wrap(self.value(m, element))
            return out
        if t is ast.Dict:
            out = set()
            for key, item in zip(node.keys, node.values, strict=True):  # type: ignore[attr-defined]
                if key is None:
                    out |= self.value(m, item)
                else:
                    out |= _wrap(self.value(m, key)) | _wrap(self.value(m, item))
            return out
        if t is ast.ListComp or t is ast.SetComp or t is ast.GeneratorExp:
            return _wrap(self.value(m, node.elt))  # type: ignore[attr-defined]
        if t is ast.DictComp:
            return _wrap(self.value(m, node.key)) | _wrap(self.value(m, node.value))  # type: ignore[attr-defined]
        if t is ast.IfExp:
            return self.value(m, node.body) | self.value(m, node.orelse)  # type: ignore[attr-defined]
        if t is ast.BoolOp:
            out = set()
            for item in node.values:  # type: ignore[attr-defined]
                out |= self.value(m, item)
            return out
        if t is ast.Await or t is ast.NamedExpr or t is ast.Starred:
            return self.value(m, node.value)  # type: ignore[attr-defined]
        if t is ast.Lambda:
            return {function_id(m, node)}
        return EMPTY

    def attribute_of(self, q: str, attr: str, out: set[str]) -> None:
        if q.startswith(_WRAP):
            out.add(q)  # a container's methods: calling one gives its elements back
        elif q.startswith("@m:"):
            name = q[3:]
            module = self.modules.get(name)
            if module is not None:
                out.update(module.env.get(attr, EMPTY))
            sub = f"{name}.{attr}" if name else attr
            if sub in self.module_paths:
                out.add("@m:" + sub)
        elif not q.startswith("@") and q.count(".") < _MAX_DOTS:
            out.add(f"{q}.{attr}")

    def _call_value(self, m: ModuleFacts, node: ast.Call) -> set[str]:
        out: set[str] = set()
        callee = self.value(m, node.func)
        self.spend(len(callee))
        for q in callee:
            if q.startswith("@f:"):
                out |= self.returns.get(q, EMPTY)
            elif q.startswith(_WRAP):
                out.add(q)
                out.add(q[2:])
        func = node.func
        builtin = type(func) is ast.Name and func.id not in m.env and func.id
        if builtin == "getattr" and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                for q in self.value(m, node.args[0]):
                    self.attribute_of(q, name.value, out)
                out |= self.attrs.get(name.value, EMPTY)
            else:  # getattr(self, name): any attribute the plugin ever stored
                for values in self.attrs.values():
                    self.spend(len(values))
                    out |= values
            for default in node.args[2:]:
                out |= self.value(m, default)
            return out
        arguments = self.argument_values(m, node)
        self.spend(len(arguments))
        for argument in arguments:
            if argument.startswith(_WRAP):
                out.add(argument)
                out.add(argument[2:])
            elif argument.startswith("@f:"):
                returned = self.returns.get(argument, EMPTY)
                out |= returned | _wrap(returned)
            elif builtin in ELEMENT_BUILTINS:
                out.add(_WRAP + argument)
        return out

    def argument_values(self, m: ModuleFacts, node: ast.Call) -> set[str]:
        out: set[str] = set()
        for argument in node.args:
            out |= self.value(m, argument)
        for keyword in node.keywords:
            out |= self.value(m, keyword.value)
        return out


def function_id(m: ModuleFacts, node: ast.AST) -> str:
    return f"@f:{m.name}:{node.lineno}:{node.col_offset}"  # type: ignore[attr-defined]


class _Collector:
    """One pre-order walk of a module: it records every node and the rules of its bindings."""

    def __init__(self, program: PluginProgram, m: ModuleFacts) -> None:
        self.p = program
        self.m = m

    def env_set(self, name: str) -> set[str]:
        return self.m.env.setdefault(name, set())

    def run(self) -> None:
        # (node, enclosing function id, directly in a class body)
        stack: list[tuple[ast.AST, str | None, bool]] = [(self.m.tree, None, False)]
        nodes = self.m.nodes
        handlers = _HANDLERS
        while stack:
            node, fid, in_class = stack.pop()
            nodes.append(node)
            t = type(node)
            handler = handlers.get(t)
            if handler is not None:
                handler(self, node, fid, in_class)
            if t is ast.FunctionDef or t is ast.AsyncFunctionDef or t is ast.Lambda:
                fid, in_class = function_id(self.m, node), False
            elif t is ast.ClassDef:
                in_class = True
            children: list[ast.AST] = []
            for name in node._fields:
                if name == "ctx":  # Load/Store/Del carry nothing to check
                    continue
                item = getattr(node, name, None)
                if type(item) is list:
                    children.extend(c for c in item if isinstance(c, ast.AST))
                elif isinstance(item, ast.AST):
                    children.append(item)
            for child in reversed(children):
                stack.append((child, fid, in_class))

    # -- stores -----------------------------------------------------------------------------------

    def store(self, target: ast.AST, value: ast.AST, transform: Transform, in_class: bool = False) -> None:
        p, m = self.p, self.m
        t = type(target)
        if t is ast.Name:
            into = self.env_set(target.id)  # type: ignore[attr-defined]
            also = p.attr_set(target.id) if in_class else None  # type: ignore[attr-defined]

            def rule() -> bool:
                values = transform(p.value(m, value))
                changed = p.add(into, values)
                return p.add(also, values) or changed if also is not None else changed

            p.rule(rule)
        elif t is ast.Attribute:
            into = p.attr_set(target.attr)  # type: ignore[attr-defined]
            p.rule(lambda: p.add(into, transform(p.value(m, value))))
        elif t is ast.Subscript:
            self.store_into(target.value, value, lambda v: _wrap(transform(v)))  # type: ignore[attr-defined]
        elif t is ast.Starred:
            self.store(target.value, value, lambda v: _wrap(_unwrap(transform(v))), in_class)  # type: ignore[attr-defined]
        elif t is ast.Tuple or t is ast.List:
            elts = target.elts  # type: ignore[attr-defined]
            pairwise = (
                type(value) in (ast.Tuple, ast.List)
                and len(value.elts) == len(elts)  # type: ignore[attr-defined]
                and not any(type(e) is ast.Starred for e in (*elts, *value.elts))  # type: ignore[attr-defined]
            )
            for i, element in enumerate(elts):
                if pairwise:
                    self.store(element, value.elts[i], transform, in_class)  # type: ignore[attr-defined]
                elif type(element) is ast.Starred:
                    self.store(element, value, transform, in_class)
                else:
                    self.store(element, value, lambda v: _unwrap(transform(v)), in_class)

    def store_into(self, base: ast.AST, value: ast.AST, transform: Transform) -> None:
        """``base`` (a container) receives ``value``: ``fs[0] = v``, ``self.fs.append(v)``."""
        p, m = self.p, self.m
        t = type(base)
        if t is ast.Name:
            into = self.env_set(base.id)  # type: ignore[attr-defined]
        elif t is ast.Attribute:
            into = p.attr_set(base.attr)  # type: ignore[attr-defined]
        elif t is ast.Subscript:
            self.store_into(base.value, value, lambda v: _wrap(transform(v)))  # type: ignore[attr-defined]
            return
        else:
            return
        p.rule(lambda: p.add(into, transform(p.value(m, value))))

    # -- handlers -----------------------------------------------------------------------------------

    def on_assign(self, node: ast.Assign, fid: str | None, in_class: bool) -> None:
        for target in node.targets:
            self.store(target, node.value, _same, in_class)

    def on_annassign(self, node: ast.AnnAssign, fid: str | None, in_class: bool) -> None:
        if node.value is not None:
            self.store(node.target, node.value, _same, in_class)

    def on_augassign(self, node: ast.AugAssign, fid: str | None, in_class: bool) -> None:
        self.store(node.target, node.value, _same, in_class)

    def on_namedexpr(self, node: ast.NamedExpr, fid: str | None, in_class: bool) -> None:
        self.store(node.target, node.value, _same)

    def on_for(self, node: ast.For | ast.AsyncFor | ast.comprehension, fid: str | None, in_class: bool) -> None:
        self.store(node.target, node.iter, _unwrap)

    def on_with(self, node: ast.With | ast.AsyncWith, fid: str | None, in_class: bool) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self.store(item.optional_vars, item.context_expr, _same)

    def on_match(self, node: ast.Match, fid: str | None, in_class: bool) -> None:
        names = {
            n
            for case in node.cases
            for sub in ast.walk(case.pattern)
            for n in (getattr(sub, "name", None), getattr(sub, "rest", None))
            if isinstance(n, str)
        }
        for name in names:
            self.store(ast.Name(id=name), node.subject, lambda v: _same(v) | _unwrap(v))

    def on_import(self, node: ast.Import, fid: str | None, in_class: bool) -> None:
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] in self.p.own:
                bound = alias.name if alias.asname else parts[0]
                self.env_set(alias.asname or parts[0]).add("@m:" + bound)
                continue
            self.p.imported_modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
            self.env_set(alias.asname or parts[0]).add(alias.name if alias.asname else parts[0])

    def on_importfrom(self, node: ast.ImportFrom, fid: str | None, in_class: bool) -> None:
        p = self.p
        module = node.module or ""
        if node.level:
            base = self.m.package.split(".") if self.m.package else []
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            source: str | None = ".".join([*base, *([module] if module else [])])
        elif module.split(".")[0] in p.own:
            source = module
        else:
            source = None
        for alias in node.names:
            if source is None:
                if alias.name != "*":
                    self.env_set(alias.asname or alias.name).add(f"{module}.{alias.name}")
                continue
            if alias.name == "*":
                self._star_from(source)
                continue
            into = self.env_set(alias.asname or alias.name)
            ref, name = "@m:" + source, alias.name

            def rule(into: set[str] = into, ref: str = ref, name: str = name) -> bool:
                out: set[str] = set()
                p.attribute_of(ref, name, out)
                return p.add(into, out)

            p.rule(rule)

    def _star_from(self, source: str) -> None:
        p, env = self.p, self.m.env

        def rule() -> bool:
            module = p.modules.get(source)
            changed = False
            for name, values in list(module.env.items()) if module else ():
                if not name.startswith("_"):
                    changed = p.add(env.setdefault(name, set()), values) or changed
            return changed

        p.rule(rule)

    def on_function(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, fid: str | None, in_class: bool
    ) -> None:
        p, m = self.p, self.m
        own_id = function_id(m, node)
        p.returns.setdefault(own_id, set())
        args = node.args
        positional = [a.arg for a in (*args.posonlyargs, *args.args)]
        kwonly = [a.arg for a in args.kwonlyargs]
        packed = (args.vararg.arg if args.vararg else None, args.kwarg.arg if args.kwarg else None)
        for name in (*positional, *kwonly, *packed):
            if name:
                self.env_set(name)
        p.params[own_id] = (m, positional, kwonly, packed)
        with_defaults = [*args.posonlyargs, *args.args][len(positional) - len(args.defaults) :]
        for arg, default in zip(with_defaults, args.defaults, strict=True):
            self.store(ast.Name(id=arg.arg), default, _same)
        for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
            if kw_default is not None:
                self.store(ast.Name(id=arg.arg), kw_default, _same)
        if isinstance(node, ast.Lambda):
            returns = p.returns[own_id]
            p.rule(lambda: p.add(returns, p.value(m, node.body)))
            return
        self.env_set(node.name).add(own_id)
        if in_class:
            p.attr_set(node.name).add(own_id)
        for decorator in node.decorator_list:
            # @dec def f: f is whatever dec(f) returns, and dec's parameters receive f.
            call = ast.Call(func=decorator, args=[ast.Name(id=node.name)], keywords=[])
            self.store(ast.Name(id=node.name), call, _same, in_class)
            self.on_call(call, fid, in_class)

    def on_return(self, node: ast.Return, fid: str | None, in_class: bool) -> None:
        if fid is not None and node.value is not None:
            returns = self.p.returns.setdefault(fid, set())
            value, p, m = node.value, self.p, self.m
            p.rule(lambda: p.add(returns, p.value(m, value)))

    def on_yield(self, node: ast.Yield | ast.YieldFrom, fid: str | None, in_class: bool) -> None:
        if fid is not None and node.value is not None:
            returns = self.p.returns.setdefault(fid, set())
            value, p, m = node.value, self.p, self.m
            transform = _wrap if isinstance(node, ast.Yield) else _same
            p.rule(lambda: p.add(returns, transform(p.value(m, value))))

    def on_call(self, node: ast.Call, fid: str | None, in_class: bool) -> None:
        p, m = self.p, self.m
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in MUTATORS:
            for argument in (*node.args, *(k.value for k in node.keywords)):
                self.store_into(func.value, argument, _wrap)
        if not node.args and not node.keywords:
            return

        method_call = isinstance(func, ast.Attribute)

        def bind() -> bool:
            changed = False
            for target in p.value(m, func):
                known = p.params.get(target) if target.startswith("@f:") else None
                if known is not None:
                    changed = self.bind_call(node, known, method_call) or changed
            # A plugin function passed as a callback (map(f, [os]), Thread(target=f, args=(os,)),
            # sorted(xs, key=f)) may receive any of the call's other arguments.
            values = p.argument_values(m, node)
            callbacks = [q for q in values if q.startswith("@f:")]
            if not callbacks:
                return changed
            values = set(values) | _unwrap(values)
            p.spend(len(values) * len(callbacks))
            for callback in callbacks:
                known = p.params.get(callback)
                if known is not None:
                    facts, positional, kwonly, packed = known
                    for name in (*positional, *kwonly):
                        changed = p.add(facts.env.setdefault(name, set()), values) or changed
                    for name in filter(None, packed):
                        changed = p.add(facts.env.setdefault(name, set()), _wrap(values)) or changed
            return changed

        p.rule(bind)

    def bind_call(self, node: ast.Call, known: _Params, method_call: bool) -> bool:
        """Arguments to parameters: by position (after self/cls of a method), by keyword, or packed."""
        p, m = self.p, self.m
        facts, positional, kwonly, packed = known
        env = facts.env
        if method_call and positional and positional[0] in ("self", "cls"):
            positional = positional[1:]
        vararg, kwarg = packed
        changed = False

        def give(name: str | None, values: set[str] | frozenset[str]) -> None:
            nonlocal changed
            if name:
                changed = p.add(env.setdefault(name, set()), values) or changed

        for i, argument in enumerate(node.args):
            values = p.value(m, argument)
            if not values:
                continue
            if type(argument) is ast.Starred:
                spread = set(values) | _unwrap(values)
                for name in (*positional, *kwonly):
                    give(name, spread)
                give(vararg, values)
            elif i < len(positional):
                give(positional[i], values)
            else:
                give(vararg, _wrap(values))
        for keyword in node.keywords:
            values = p.value(m, keyword.value)
            if not values:
                continue
            if keyword.arg is None:
                spread = set(values) | _unwrap(values)
                for name in (*positional, *kwonly):
                    give(name, spread)
                give(kwarg, values)
            elif keyword.arg in positional or keyword.arg in kwonly:
                give(keyword.arg, values)
            else:
                give(kwarg, _wrap(values))
        return changed


_HANDLERS: dict[type, Callable[..., None]] = {
    ast.Assign: _Collector.on_assign,
    ast.AnnAssign: _Collector.on_annassign,
    ast.AugAssign: _Collector.on_augassign,
    ast.NamedExpr: _Collector.on_namedexpr,
    ast.For: _Collector.on_for,
    ast.AsyncFor: _Collector.on_for,
    ast.comprehension: _Collector.on_for,
    ast.With: _Collector.on_with,
    ast.AsyncWith: _Collector.on_with,
    ast.Match: _Collector.on_match,
    ast.Import: _Collector.on_import,
    ast.ImportFrom: _Collector.on_importfrom,
    ast.FunctionDef: _Collector.on_function,
    ast.AsyncFunctionDef: _Collector.on_function,
    ast.Lambda: _Collector.on_function,
    ast.Return: _Collector.on_return,
    ast.Yield: _Collector.on_yield,
    ast.YieldFrom: _Collector.on_yield,
    ast.Call: _Collector.on_call,
}
