"""Just enough PromQL reading for the deploy tests: the series an expression selects, with their
label matchers, and the labels it aggregates by. Not a PromQL parser: it handles what the
dashboard writes (selectors, ``by``/``without`` groupings, range durations, function calls,
string literals that contain braces, such as route templates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Expression", "Selector", "parse"]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_TOKEN = re.compile(r"(?<![A-Za-z0-9_:.])(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)\s*(?P<matchers>\{[^}]*\})?(?P<call>\s*\()?")
_MATCHER = re.compile(r'(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"\x00(?P<index>\d+)\x00"')
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


@dataclass(frozen=True)
class Selector:
    """One series selector: ``name{label op "value", ...}``."""

    name: str
    matchers: tuple[tuple[str, str, str], ...] = ()


@dataclass
class Expression:
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)  # labels of every by, without, on, ignoring (...)


def parse(expr: str) -> Expression:
    """The selectors and grouping labels of a PromQL expression."""
    strings: list[str] = []

    def stash(m: re.Match[str]) -> str:
        strings.append(m[0][1:-1])
        return f'"\x00{len(strings) - 1}\x00"'

    text = _STRING.sub(stash, expr)
    text = _RANGE.sub(" ", text)
    found = Expression()
    for m in _GROUPING.finditer(text):
        found.grouping |= {label.strip() for label in m[1].split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)
    for m in _TOKEN.finditer(text):
        if m["call"] or m["name"] in _KEYWORDS:
            continue
        matchers = tuple(
            (mm["label"], mm["op"], strings[int(mm["index"])]) for mm in _MATCHER.finditer(m["matchers"] or "")
        )
        if m["matchers"] and len(matchers) != m["matchers"].count('"\x00'):
            raise ValueError(f'a matcher of {m["matchers"]!r} is not label op "value"')
        found.selectors.append(Selector(m["name"], matchers))
    return found
