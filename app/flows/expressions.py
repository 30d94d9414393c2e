"""Conditions (CEL) and `${}` references in a flow's node inputs.

Conditions are Common Expression Language, compiled by cel-python when a flow is saved and evaluated
over the variables' values only: CEL has no access to files, the network or the service. References
are `${name}` and `${name.field}` of declared variables; any other text that starts with `${` (a
shell's `${VAR:-x}`, an unknown name at run time) is left exactly as written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import celpy
import lark
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError

from app.secrets import MASK

CONDITION_MAX_CHARS = 4096
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\}")
# CEL's comprehension macros bind their first argument as a name of their own.
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_environment = celpy.Environment()
UNEVALUATED = "the condition cannot be evaluated: a value it reads is unset or of another type"


class ConditionError(Exception):
    """A condition that does not compile, names an unknown variable, or cannot be evaluated."""


@dataclass(frozen=True)
class Condition:
    """A compiled condition and the variable names it reads."""

    text: str
    names: frozenset[str]
    program: celpy.Runner

    def holds(self, values: Mapping[str, Any]) -> bool:
        """Whether the condition is true for these values; ConditionError when it is not a boolean
        or reads a value that is missing or of the wrong type."""
        activation = {name: json_to_cel(values.get(name)) for name in self.names}
        try:
            result = self.program.evaluate(activation)
        except (celpy.CELEvalError, TypeError, ValueError) as exc:
            raise ConditionError(UNEVALUATED) from exc
        if isinstance(result, celpy.CELEvalError):
            raise ConditionError(UNEVALUATED)
        if not isinstance(result, celpy.celtypes.BoolType):
            raise ConditionError(f"the condition gave {type(result).__name__}, not a boolean")
        return bool(result)


def compile_condition(text: str, declared: Iterable[str]) -> Condition:
    """The condition compiled; ConditionError when it is not CEL or reads a name not declared."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError("a condition is a non-empty CEL expression")
    if len(text) > CONDITION_MAX_CHARS:
        raise ConditionError(f"at most {CONDITION_MAX_CHARS} characters")
    try:
        tree = _environment.compile(text)
    except CELParseError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ConditionError(f"not a CEL expression: {first_line}") from exc
    names = free_names(tree)
    unknown = sorted(names - set(declared))
    if unknown:
        raise ConditionError(f"no variable named {', '.join(unknown)}")
    return Condition(text, frozenset(names), _environment.program(tree))


def free_names(tree: lark.Tree) -> set[str]:
    """The variable names an expression reads (names bound by its macros excluded)."""
    names: set[str] = set()
    bound: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "primary" and node.children and isinstance(node.children[0], lark.Tree):
            child = node.children[0]
            if child.data == "ident":
                names.add(str(child.children[0]))
        if node.data == "member_dot_arg" and str(node.children[1]) in MACROS:
            arguments = node.children[2] if len(node.children) > 2 else None
            if isinstance(arguments, lark.Tree) and arguments.children:
                bound |= {
                    str(token)
                    for sub in arguments.children[0].iter_subtrees()
                    if sub.data == "ident"
                    for token in sub.children
                }
    return names - bound


@dataclass(frozen=True)
class Reference:
    name: str
    field: str | None


def references(value: Any) -> list[Reference]:
    """Every `${name}` / `${name.field}` in a value's strings, nested lists and objects included."""
    found: list[Reference] = []
    for text in _strings(value):
        found.extend(Reference(match[1], match[2]) for match in REFERENCE.finditer(text))
    return found


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def render(value: Any, values: Mapping[str, Any], secrets: Iterable[str] = ()) -> tuple[Any, Any]:
    """The value with each reference to a known variable replaced, and the same with secret values
    masked (what may be shown and stored). A string that is one reference alone becomes the value
    itself (a list stays a list); inside a longer string a value that is not a string is written as
    JSON. Object keys are never rendered."""
    masked_values = {**values, **dict.fromkeys(set(secrets) & set(values), MASK)}
    return _render(value, values), _render(value, masked_values)


def _render(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _render_text(value, values)
    if isinstance(value, Mapping):
        return {key: _render(item, values) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_render(item, values) for item in value]
    return value


_MISSING = object()


def _lookup(values: Mapping[str, Any], name: str, field: str | None) -> Any:
    value = values.get(name, _MISSING)
    if field is None or value is _MISSING:
        return value
    if isinstance(value, Mapping):
        return value.get(field, _MISSING)
    return _MISSING


def _render_text(text: str, values: Mapping[str, Any]) -> Any:
    whole = REFERENCE.fullmatch(text)
    if whole:
        found = _lookup(values, whole[1], whole[2])
        return text if found is _MISSING else found

    def replace(match: re.Match) -> str:
        found = _lookup(values, match[1], match[2])
        if found is _MISSING:
            return match[0]
        return found if isinstance(found, str) else json.dumps(found, ensure_ascii=False)

    return REFERENCE.sub(replace, text)
