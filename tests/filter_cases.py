"""Tag filter cases shared by every evaluator's test, so the evaluators are held to the same cases.

:data:`RULES` states each rule of ``storage/filters.py`` as (tag value, filter, verdict);
:func:`random_tags` and :func:`random_filter` generate rows and filters from values chosen to
sit on those rules' edges: numbers, numeric text (with blanks, exponents, underscores, ``inf``,
``nan``), plain text (quotes, backslashes, non-ASCII, ``"True"``), ints beyond 2**53 and beyond
the largest double, missing keys, and the values only the store API (not the gallery) lets in:
None, bools and lists.
"""

from __future__ import annotations

import random

from lookalike.storage.filters import And, Compare, Expr, Or, Value

MISSING = object()
"""A row without the key."""
BIG = 2**53 + 1
"""The smallest int a float64 cannot hold: it reads as 2**53."""
HUGE = 10**400
"""An int beyond the largest double: it reads as the largest double."""
MAX_DOUBLE = 1.7976931348623157e308
INF = float("inf")

RULES: list[tuple[object, Compare, bool]] = [
    # A missing key satisfies != only, whichever reading the operand asks for.
    (MISSING, Compare("k", "=", "red"), False),
    (MISSING, Compare("k", "!=", "red"), True),
    (MISSING, Compare("k", ">", 1), False),
    (MISSING, Compare("k", "<=", 1), False),
    (MISSING, Compare("k", "!=", 1), True),
    (None, Compare("k", "!=", "None"), True),  # None is no value, not the text "None"
    (None, Compare("k", "=", "None"), False),
    # A number operand reads the tag as a number: numbers and numeric text alike.
    (2, Compare("k", "=", 2), True),
    ("2", Compare("k", "=", 2), True),
    (" 2 ", Compare("k", "=", 2.0), True),
    ("1e1", Compare("k", ">", 9), True),
    ("1_0", Compare("k", "=", 10), True),  # Python's float() syntax, on every backend
    ("0x10", Compare("k", "!=", 16), True),  # not a number: no reading
    ("0x10", Compare("k", "=", 16), False),
    ("red", Compare("k", ">", 1), False),
    ("red", Compare("k", "<", 1), False),
    ("red", Compare("k", "!=", 1), True),
    ("", Compare("k", "=", 0), False),
    # NaN is no number; infinity and ints beyond the largest double saturate to it, both sides.
    ("nan", Compare("k", "!=", 1), True),
    ("nan", Compare("k", "<", 1), False),
    ("nan", Compare("k", ">=", 1), False),
    ("inf", Compare("k", "=", MAX_DOUBLE), True),
    ("inf", Compare("k", "=", INF), True),
    ("-inf", Compare("k", "<", -1e308), True),
    ("1e999", Compare("k", ">=", HUGE), True),
    (HUGE, Compare("k", "=", MAX_DOUBLE), True),
    (-HUGE, Compare("k", "=", -INF), True),
    # Numbers compare as float64: beyond 2**53 ints round as the tag does.
    (BIG, Compare("k", "=", 2**53), True),
    (str(BIG), Compare("k", "=", BIG), True),
    (2**53, Compare("k", "<", BIG), False),
    # A text operand reads the tag as str(value): numbers by their Python spelling.
    (2, Compare("k", "=", "2"), True),
    (2.0, Compare("k", "=", "2"), False),
    (" 2 ", Compare("k", "=", "2"), False),
    ("10", Compare("k", ">", "9"), False),  # text order, not number order
    ("nan", Compare("k", "=", "nan"), True),
    ("Z", Compare("k", "<", "a"), True),
    ("é", Compare("k", ">", "z"), True),  # code point order = UTF-8 byte order
    ("名", Compare("k", ">", "é"), True),
    ('a"b', Compare("k", "=", 'a"b'), True),
    ("c\\d", Compare("k", "=", "c\\d"), True),
    # Bools are text ("True"), not numbers; a list is its text, never a number.
    (True, Compare("k", "=", 1), False),
    (True, Compare("k", "!=", 1), True),
    (True, Compare("k", "=", "True"), True),
    ([1, 2], Compare("k", "=", "[1, 2]"), True),
    ([1, 2], Compare("k", ">", 0), False),
]

KEYS = ["n", "colour", "名字", 'q"k', "b\\s"]
ABSENT_KEY = "absent"
"""A key no row has."""
NUMBERS: list[Value] = [0, 1, 2, 7, -1.5, 3.25, 2.0, 1e300, -1e300, 2**53, BIG, MAX_DOUBLE]
NUMERIC_TEXT = ["0", "1", "2", "2.0", " 2 ", "-3", "+5", "1e1", "1_0", str(BIG), "1e999", "inf", "-inf", "nan"]
PLAIN_TEXT = ["red", "Red", "z", "é", "名", 'a"b', "c\\d", "", "True", "None", "[1, 2]", "0x10"]
ODD_VALUES: list[object] = [None, True, False, [1, 2]]
"""Values the gallery refuses (it lets only strings and numbers a double holds in) but a store
must still treat by the rules."""
BEYOND_DOUBLE: list[object] = [HUGE, -HUGE]
"""Ints no double holds: the gallery refuses them and Milvus' JSON cannot store them (its insert
fails), so only the embedded store's evaluators meet them."""


def storable_in_milvus(value: object) -> bool:
    return not (isinstance(value, int) and abs(value) > MAX_DOUBLE)


def random_tags(rng: random.Random, *, beyond_double: bool = True) -> dict[str, object]:
    """A row's tags: each key present with probability 0.75."""
    pool: list[object] = [*NUMBERS, *NUMERIC_TEXT, *PLAIN_TEXT, *ODD_VALUES, *(BEYOND_DOUBLE if beyond_double else [])]
    return {key: rng.choice(pool) for key in KEYS if rng.random() < 0.75}


def random_filter(rng: random.Random, depth: int = 0) -> Expr:
    """A filter of up to three levels; And/Or of 0-3 items (the parser never makes an empty one,
    but the AST allows it)."""
    if depth < 2 and rng.random() < 0.4:
        items = tuple(random_filter(rng, depth + 1) for _ in range(rng.randint(0, 3)))
        return And(items) if rng.random() < 0.5 else Or(items)
    operands: list[Value] = [*NUMBERS, HUGE, -HUGE, 10, INF, -INF, *NUMERIC_TEXT, *PLAIN_TEXT, "x"]
    key = rng.choice([*KEYS, ABSENT_KEY])
    return Compare(key, rng.choice([">", ">=", "<", "<=", "=", "!="]), rng.choice(operands))


PARSED = [
    'colour = "a\\"b"',
    "n >= 2",
    "n != 2",
    "名字 = 名",
    "n = 1e999",
    "n > 9007199254740992",
    "n < -1e999 OR n = '1e1'",
    "(colour != red AND n >= 0) OR 'q\"k' = None",
    "absent != x AND absent != 1",
]
"""Filter texts run through the gallery's parser: the AST the wires actually produce."""
