"""Tag filters, once: the backend-neutral AST and the one place that says what it means.

The gallery parses Tencent's Filter string into these nodes. What ``Tags[key] <op> value``
means is decided here and nowhere else: :func:`decide` turns a :class:`Compare` into a
:class:`Condition` (which reading of the tag it tests, the operand in that reading's type, the
operator, and the verdict for a row that has no such reading). Every evaluator only translates
a Condition:

* :func:`matches`, the reference, one row at a time (the tests hold every backend to it);
* ``memory.GroupVectors.mask`` (the embedded store), numpy over per-key columns filled with
  :func:`reading`;
* ``milvus_schema.compile_filter``, a Milvus expression over two JSON fields written with
  :func:`reading` (``tag_num``: the number readings, ``tag_str``: the text readings).

So a new operator is one line in :data:`COMPARISONS` (and its :data:`NEGATION`), a new reading
rule is one change to :func:`tag_number` / :func:`tag_text`, and the Milvus and numpy
translations follow.

The rules (``tests/test_filter_semantics.py`` states each one as a case):

============================  ========  ==============================  ======================
operand                       reading   a tag's reading                 no reading
============================  ========  ==============================  ======================
int or float (not a bool)     number    float64 of an int, a float or   missing key, text that
                                        numeric text (``" 2 "``,        is not a number,
                                        ``"1e1"``), +-inf saturated     ``"nan"``, a bool,
                                        to +-max double                 None, a list
anything else                 text      ``str(value)``                  missing key, None
============================  ========  ==============================  ======================

* Numbers compare as float64 on both sides: an int operand beyond 2**53 rounds as the tag does
  (exact int comparison cannot be expressed in Milvus' double JSON values).
* Infinity saturates to the largest double on both sides: Milvus' JSON cannot hold infinity, and
  a rule that told ``"inf"`` from ``1.7976931348623157e308`` would hold on one backend only.
* NaN is "no number" rather than IEEE's NaN, for the same reason.
* Text compares by code point, which is UTF-8 byte order (Milvus' order).
* A row with no reading satisfies ``!=`` only ("not red" holds for an untagged picture; an order
  or an equality never does).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Value = str | int | float
Reading = Literal["number", "text"]
NUMBER: Reading = "number"
TEXT: Reading = "text"

COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    "!=": operator.ne,
}
"""Each operator as Python (and numpy) applies it to two readings of one kind."""
OPERATORS = tuple(COMPARISONS)
NEGATION = {">": "<=", ">=": "<", "<": ">=", "<=": ">", "=": "!=", "!=": "="}
"""``not (a op b)`` is ``a NEGATION[op] b`` for any two readings: both kinds are totally ordered
(no NaN reading exists). A translator that can only say "false" for a row without a reading
states a ``missing=True`` condition as the negation of its negated operator."""
MAX_DOUBLE = 1.7976931348623157e308


@dataclass(frozen=True)
class Compare:
    """``Tags[key] <op> value``: see the module docstring for what it selects."""

    key: str
    op: str
    value: Value

    def __post_init__(self) -> None:
        if self.op not in COMPARISONS:
            raise ValueError(f"unknown operator {self.op!r}")
        if isinstance(self.value, float) and math.isnan(self.value):
            raise ValueError("a filter cannot compare with NaN")


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


Expr = Compare | And | Or


@dataclass(frozen=True)
class Condition:
    """One Compare as every evaluator applies it: rows whose ``reading`` of tag ``key`` is present
    pass when ``COMPARISONS[op](tag_reading, operand)``; rows without one get ``missing``."""

    key: str
    reading: Reading
    op: str
    operand: float | str
    missing: bool


def is_number(value: object) -> bool:
    """Whether a filter's operand compares as a number (an int or float, not a bool); every
    other operand compares as text."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def tag_number(value: object) -> float | None:
    """A tag's number reading: the float64 of an int, a float or numeric text (Python's
    ``float()`` syntax), +-inf and ints too large for a float saturated to +-:data:`MAX_DOUBLE`;
    None for NaN, bools, None, other text and other types."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    except OverflowError:  # only an int beyond the largest double raises it
        number = math.inf if int(value) > 0 else -math.inf
    if math.isnan(number):
        return None
    return max(-MAX_DOUBLE, min(MAX_DOUBLE, number))


def tag_text(value: object) -> str | None:
    """A tag's text reading: ``str(value)``; None for None."""
    return None if value is None else str(value)


def reading(value: object, kind: Reading) -> float | str | None:
    """A tag value's reading of ``kind``, None where it has none."""
    return tag_number(value) if kind == NUMBER else tag_text(value)


def decide(compare: Compare) -> Condition:
    """The rule for one Compare (the only place it is made)."""
    kind = NUMBER if is_number(compare.value) else TEXT
    operand = reading(compare.value, kind)
    if operand is None:  # unreachable: Compare refuses NaN and text reads any non-None value
        raise ValueError(f"no {kind} reading of {compare.value!r}")
    return Condition(compare.key, kind, compare.op, operand, missing=compare.op == "!=")


def holds(condition: Condition, value: object) -> bool:
    """Whether a tag value (None: the key is missing) passes ``condition``."""
    have = reading(value, condition.reading)
    if have is None:
        return condition.missing
    return bool(COMPARISONS[condition.op](have, condition.operand))


def matches(expr: Expr | None, tags: dict[str, object]) -> bool:
    """Reference semantics every backend must agree with (tests compare against it)."""
    if expr is None:
        return True
    if isinstance(expr, Compare):
        return holds(decide(expr), tags.get(expr.key))
    if isinstance(expr, And):
        return all(matches(item, tags) for item in expr.items)
    if isinstance(expr, Or):
        return any(matches(item, tags) for item in expr.items)
    raise TypeError(f"not a filter expression: {expr!r}")
