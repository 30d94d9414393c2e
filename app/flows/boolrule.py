"""bamboo-pipeline's gateway conditions (boolrule, read after its `${}` references are rendered as text)
translated to CEL, the conditions of Opsflow's flows.

bamboo renders `${name}` into the condition's text, then boolrule parses what results: comparisons
(`== != > >= < <=`, `in` and `notin` a list `(a, b)`, `issuperset`) of numbers, quoted strings,
true/false and bare words (which read as themselves), joined by `and`/`or` and grouped by parentheses.
Two things differ from CEL, and the translation keeps bamboo's meaning:
- a chain of `and` and `or` groups to the right: `a and b or c` is `a and (b or c)`;
- values are compared by what they look like: a reference compared with a number is read as a number,
  with a string as text, with true or false as a boolean's text.
So a reference is written `double(x)` next to a number and `string(x)` next to a string (a string
variable as itself). Anything else, a Mako expression inside `${}` above all, is Untranslatable.
The CEL is written from the parsed tokens, never pasted from the text: nothing in a condition reaches
CEL but variable names, literals and the operators listed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.flows.graph import VariableKind

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\}")


class Untranslatable(Exception):
    """A condition that is not one of the simple comparisons that translate to CEL."""


TOKEN = re.compile(
    r"""\s*(?:
        (?P<ref>\$\{[^}]*\}?)
      | (?P<string>"[^"\n]*"|'[^'\n]*')
      | (?P<real>[+-]?(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<int>[+-]?\d+(?:[eE]\+?\d+)?)
      | (?P<op>==|!=|>=|<=|>|<)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<other>\S)
    )""",
    re.VERBOSE,
)
WORD_OPERATORS = frozenset({"in", "notin", "issuperset", "notissuperset"})
JOINERS = {"and": "&&", "or": "||"}
CEL_OPERATORS = {"==": "==", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
TRUE_TEXTS = ('"true"', '"True"', '"TRUE"')
FALSE_TEXTS = ('"false"', '"False"', '"FALSE"')


@dataclass(frozen=True)
class Operand:
    """One side of a comparison: a reference (`name` our variable, `field` of a built-in), or a literal
    (a string, a number, a boolean) or a list of literals."""

    kind: str
    value: Any = None
    field: str | None = None


def condition_to_cel(text: str, renames: Mapping[str, str], kinds: Mapping[str, str]) -> str:
    """A bamboo condition as a CEL expression over our variables (`renames`: bk-sops name -> ours;
    `kinds`: our name -> its kind); Untranslatable saying why when it is not simple comparisons."""
    if not isinstance(text, str) or not text.strip():
        raise Untranslatable("it is empty")
    if text.strip() == "*":
        return "true"
    tokens = _tokens(text)
    parser = _Parser(tokens, renames, kinds)
    cel = parser.expression()
    if parser.position != len(tokens):
        raise Untranslatable(f"unexpected {tokens[parser.position][1]!r}")
    return cel


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if match is None:
            break
        position = match.end()
        kind = match.lastgroup
        value = match[kind]
        if kind == "other":
            raise Untranslatable(f"{value!r} is not part of a simple comparison")
        if kind == "word" and value.lower() in (*WORD_OPERATORS, *JOINERS):
            kind = "op" if value.lower() in WORD_OPERATORS else "join"
            value = value.lower()
        tokens.append((kind, value))
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], renames: Mapping[str, str], kinds: Mapping[str, str]):
        self.tokens = tokens
        self.position = 0
        self.renames = renames
        self.kinds = kinds

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise Untranslatable("it ends too early")
        self.position += 1
        return token

    def expression(self) -> str:
        """condition ((and | or) expression)?: bamboo groups a chain to the right (a and b or c is
        a and (b or c)), so each joiner is written with what follows it in parentheses."""
        first = self.condition()
        token = self.peek()
        if token is None or token[0] != "join":
            return first
        self.take()
        rest = self.expression()
        return f"({first}) {JOINERS[token[1]]} ({rest})"

    def condition(self) -> str:
        start = self.position
        if self.peek() == ("punct", "("):
            try:
                return self.comparison()
            except Untranslatable:
                self.position = start
            self.take()
            inner = self.expression()
            if self.take() != ("punct", ")"):
                raise Untranslatable("a parenthesis is not closed")
            return inner
        return self.comparison()

    def comparison(self) -> str:
        left = self.operand()
        kind, operator = self.take()
        if kind != "op":
            raise Untranslatable(f"{operator!r} is not a comparison operator")
        right = self.operand()
        return _compare(left, operator, right, self.kinds)

    def operand(self) -> Operand:
        kind, value = self.take()
        if kind == "punct" and value == "(":
            items = [self.literal(self.take())]
            while self.peek() == ("punct", ","):
                self.take()
                items.append(self.literal(self.take()))
            if self.take() != ("punct", ")"):
                raise Untranslatable("a list is not closed")
            return Operand("list", items)
        return self.literal((kind, value), references=True)

    def literal(self, token: tuple[str, str], references: bool = False) -> Operand:
        kind, value = token
        if kind == "ref" and references:
            return self.reference(value)
        if kind == "string":
            inner = value[1:-1]
            if "${" in inner:
                whole = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", inner)
                if whole and references:
                    reference = self.reference(inner)
                    return (
                        Operand("ref", reference.value, reference.field)
                        if reference.field
                        else Operand("text_ref", reference.value)
                    )
                raise Untranslatable(f"the string {value} mixes text and references")
            return Operand("string", inner)
        if kind in ("real", "int"):
            number = float(value)
            if not math.isfinite(number):
                raise Untranslatable(f"{value} is not a finite number")
            return Operand("number", number)
        if kind == "word":
            if value.lower() in ("true", "false"):
                return Operand("bool", value.lower() == "true")
            # A bare word is text once rendered: bamboo reads it as itself.
            return Operand("string", value)
        raise Untranslatable(f"{value!r} is not a value")

    def reference(self, text: str) -> Operand:
        match = REFERENCE.fullmatch(text)
        if match is None:
            raise Untranslatable(f"{text} is a Mako expression: only ${{name}} references translate")
        name, field_name = match[1], match[2]
        if field_name is not None:
            if name != "_system":
                raise Untranslatable(f"{text} reads a field: only ${{_system.NAME}} does")
            return Operand("ref", "_system", field_name)
        if name == "_loop":
            return Operand("ref", "_loop")
        return Operand("ref", self.renames.get(name, name))


def _compare(left: Operand, operator: str, right: Operand, kinds: Mapping[str, str]) -> str:
    if operator in ("issuperset", "notissuperset"):
        raise Untranslatable(f"{operator} has no simple counterpart")
    if operator in ("in", "notin"):
        if right.kind != "list" or left.kind == "list":
            raise Untranslatable(f"{operator} takes a value on its left and a list (a, b) on its right")
        numeric = all(item.kind == "number" for item in right.value)
        items = ", ".join(_literal(item, numeric) for item in right.value)
        test = f"{_side(left, 'number' if numeric else 'string', kinds)} in [{items}]"
        return test if operator == "in" else f"!({test})"
    if "list" in (left.kind, right.kind):
        raise Untranslatable("a list is compared with in or notin only")
    kinds_given = {left.kind, right.kind}
    if "bool" in kinds_given:
        if operator not in ("==", "!="):
            raise Untranslatable("true and false are compared with == or != only")
        literal, other = (left, right) if left.kind == "bool" else (right, left)
        test = _boolean_test(other, literal.value, kinds)
        return test if operator == "==" else f"!({test})"
    if "number" in kinds_given:
        compared = "number"
    elif kinds_given & {"string", "text_ref"} or operator in ("==", "!="):
        compared = "string"
    else:
        compared = "number"
    return f"{_side(left, compared, kinds)} {CEL_OPERATORS[operator]} {_side(right, compared, kinds)}"


def _boolean_test(side: Operand, value: bool, kinds: Mapping[str, str]) -> str:
    if side.kind == "bool":
        return "true" if side.value == value else "false"
    if side.kind == "ref" and side.field is None and kinds.get(side.value) == VariableKind.BOOLEAN:
        return side.value if value else f"!{side.value}"
    texts = TRUE_TEXTS if value else FALSE_TEXTS
    return f"{_side(side, 'string', kinds)} in [{', '.join(texts)}]"


def _side(operand: Operand, compared: str, kinds: Mapping[str, str]) -> str:
    if operand.kind in ("ref", "text_ref"):
        name = operand.value if operand.field is None else f"{operand.value}.{operand.field}"
        kind = kinds.get(operand.value) if operand.field is None else None
        if compared == "number":
            return f"double({name})"
        if kind in (VariableKind.STRING, VariableKind.SECRET):
            return name
        return f"string({name})"
    return _literal(operand, compared == "number")


def _literal(operand: Operand, numeric: bool) -> str:
    if operand.kind == "number" and numeric:
        return repr(float(operand.value))
    if operand.kind == "number":
        value = operand.value
        return json.dumps(str(int(value)) if value.is_integer() else repr(value))
    if operand.kind == "bool":
        return (
            json.dumps("True" if operand.value else "False")
            if not numeric
            else ("1.0" if operand.value else "0.0")
        )
    if operand.kind == "string":
        if numeric:
            if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", operand.value.strip()):
                return repr(float(operand.value))
            raise Untranslatable(f"{operand.value!r} is compared as a number")
        return json.dumps(operand.value, ensure_ascii=False)
    raise Untranslatable("a value that is not a literal")
