"""A small, backend-neutral filter language over an image's Tags.

The gallery parses Tencent's Filter string into these nodes; each store compiles them to its
own query language (SQL for the embedded store, an expression for a database server).
"""

from __future__ import annotations

from dataclasses import dataclass

Value = str | int | float

OPERATORS = (">", ">=", "<", "<=", "=", "!=")


@dataclass(frozen=True)
class Compare:
    """``Tags[key] <op> value``; numbers compare as numbers, strings as strings."""

    key: str
    op: str
    value: Value


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


Expr = Compare | And | Or


def is_number(value: object) -> bool:
    """Whether a filter's operand compares as a number (an int or float, not a bool); every
    other operand compares as text."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def tag_number(value: object) -> float | None:
    """A tag's value as a number comparison reads it: ``float(value)``, or None where it does not
    read as one (missing, not numeric, too large for a float). Every backend encodes tags so."""
    if value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None


def _cmp(left: object, op: str, right: Value) -> bool:
    if left is None:
        return op == "!="
    if is_number(right):
        left = tag_number(left)
        if left is None:
            return op == "!="
    else:
        left = str(left)
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if op == ">":
        return left > right  # type: ignore[operator]
    if op == ">=":
        return left >= right  # type: ignore[operator]
    if op == "<":
        return left < right  # type: ignore[operator]
    if op == "<=":
        return left <= right  # type: ignore[operator]
    raise ValueError(f"unknown operator {op!r}")


def matches(expr: Expr | None, tags: dict[str, object]) -> bool:
    """Reference semantics every backend must agree with (tests compare against it)."""
    if expr is None:
        return True
    if isinstance(expr, Compare):
        return _cmp(tags.get(expr.key), expr.op, expr.value)
    if isinstance(expr, And):
        return all(matches(item, tags) for item in expr.items)
    if isinstance(expr, Or):
        return any(matches(item, tags) for item in expr.items)
    raise TypeError(f"not a filter expression: {expr!r}")
