"""Tencent's SearchImage ``Filter`` language, parsed by recursive descent into the store's AST.

Grammar (keywords case-insensitive; AND binds tighter than OR, as in SQL)::

    filter     := or_expr END
    or_expr    := and_expr ( "OR" and_expr )*
    and_expr   := primary ( "AND" primary )*
    primary    := "(" or_expr ")" | comparison
    comparison := key OP value
    key        := WORD | STRING
    OP         := ">" | ">=" | "<" | "<=" | "=" | "!="
    value      := NUMBER | STRING | WORD

``STRING`` is double- or single-quoted with backslash escapes; ``NUMBER`` is a decimal such as
``3``, ``-2.5`` or ``1e3``; ``WORD`` is a run of characters that are not blanks, quotes,
parentheses or operator characters, and compares as a string. So ``colour = red``,
``colour="red"`` and ``(size >= 3 OR size < 1) AND shop != 'x y'`` all parse; anything else is
refused with ``InvalidParameterValue.FilterInvalid`` naming the position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lookalike.errors import FilterInvalid, FilterSizeExceed
from lookalike.gallery.models import FILTER_MAX
from lookalike.storage.filters import And, Compare, Expr, Or, Value

MAX_DEPTH = 32
"""Parentheses nesting limit: a hostile filter cannot exhaust the parser's stack."""

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<op>>=|<=|!=|=|>|<)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<word>[^\s()<>=!"']+)
    """,
    re.VERBOSE | re.DOTALL,
)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class Token:
    kind: str  # op, lparen, rparen, string, word, end
    text: str
    pos: int

    @property
    def keyword(self) -> str | None:
        return self.text.upper() if self.kind == "word" and self.text.upper() in ("AND", "OR") else None


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            snippet = text[pos : pos + 10]
            if text[pos] in "\"'":
                raise FilterInvalid(f"Filter: unterminated string at position {pos}: {snippet!r}")
            raise FilterInvalid(f"Filter: unexpected {snippet!r} at position {pos}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, expected: str) -> FilterInvalid:
        token = self.current
        found = "the end" if token.kind == "end" else repr(token.text)
        return FilterInvalid(f"Filter: expected {expected} at position {token.pos}, found {found}")

    def parse(self) -> Expr:
        expr = self.or_expr()
        if self.current.kind != "end":
            raise self.fail("AND, OR or the end")
        return expr

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self.current.keyword == "OR":
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(_flatten(items, Or)))

    def and_expr(self) -> Expr:
        items = [self.primary()]
        while self.current.keyword == "AND":
            self.advance()
            items.append(self.primary())
        return items[0] if len(items) == 1 else And(tuple(_flatten(items, And)))

    def primary(self) -> Expr:
        if self.current.kind == "lparen":
            self.advance()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FilterInvalid(f"Filter: parentheses nest deeper than {MAX_DEPTH}")
            expr = self.or_expr()
            if self.current.kind != "rparen":
                raise self.fail("')'")
            self.advance()
            self.depth -= 1
            return expr
        return self.comparison()

    def comparison(self) -> Compare:
        token = self.current
        if token.kind == "string":
            key = _unquote(token.text)
        elif token.kind == "word" and token.keyword is None:
            key = token.text
        else:
            raise self.fail("a tag name or '('")
        if not key:
            raise self.fail("a non-empty tag name")
        self.advance()
        if self.current.kind != "op":
            raise self.fail("one of > >= < <= = !=")
        op = self.advance().text
        return Compare(key, op, self.value())

    def value(self) -> Value:
        token = self.current
        if token.kind == "string":
            self.advance()
            return _unquote(token.text)
        if token.kind == "word" and token.keyword is None:
            self.advance()
            if _NUMBER.fullmatch(token.text):
                number = float(token.text)
                is_int = re.fullmatch(r"[+-]?\d+", token.text) is not None
                return int(token.text) if is_int else number
            return token.text
        raise self.fail("a value (number, quoted string or word)")


def _flatten(items: list[Expr], kind: type[And] | type[Or]) -> list[Expr]:
    """``a AND (b AND c)`` is one And of three: shallower trees for the store to compile."""
    out: list[Expr] = []
    for item in items:
        out.extend(item.items if isinstance(item, kind) else (item,))
    return out


def _unquote(text: str) -> str:
    return _ESCAPE.sub(r"\1", text[1:-1])


def parse_filter(text: str | None) -> Expr | None:
    """Filter text -> AST, or None for an absent or blank filter."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise FilterInvalid("Filter must be a string")
    if len(text) > FILTER_MAX:
        raise FilterSizeExceed(f"Filter has {len(text)} characters; at most {FILTER_MAX}")
    if not text.strip():
        return None
    return _Parser(text).parse()
