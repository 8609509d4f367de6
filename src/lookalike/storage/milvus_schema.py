"""The Milvus backend's layout: collections, keys, the tags' filter encodings, blobs in VARCHARs.

What a row of each collection holds and how a picture's key, its tags and its blobs are written
there (the module docstring of :mod:`lookalike.storage.milvus` says why this layout). Pure
functions: nothing here talks to Milvus.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from typing import Any

import numpy as np

from lookalike.storage.filters import (
    NEGATION,
    NUMBER,
    TEXT,
    And,
    Compare,
    Condition,
    Expr,
    Or,
    decide,
    tag_number,
    tag_text,
)

MAX_TOPK = 16384
"""Milvus' largest ``limit`` (and query window); Offset + Limit beyond it finds nothing more."""
FILTERED_EF_FACTOR = 8
"""A filtered search widens HNSW's breadth this much. Milvus 2.3's HNSW walks the graph and
drops the rows the filter refuses, so a filter that keeps 10% starves ef=128: recall@10 0.70 at
20k vectors, 0.95 at 1M. x8 (1024) gave 0.965 and 0.997, at 223 ms p50 at 1M on 2 cores
(docs/milvus.md). Filters that keep under ~7% are brute-forced by Milvus anyway."""
THUMB_CHUNK = 65535
"""Milvus' longest VARCHAR; a blob's base64 spans several such fields (``data1``, ``data2``, ...)."""
THUMB_FIELDS = 2
"""VARCHAR fields a thumbnail's base64 spans."""
FEATURE_FIELDS = 4
"""VARCHAR fields a picture's local features' base64 spans: up to ~196 KB of features
(1000 keypoints take ~132 KB; larger ones are not stored in Milvus)."""
FEATURE_BATCH = 64
"""Feature rows written or read per call (~12 MB at 1000 keypoints each)."""
REACH_BITS = 16
"""Bits of a picture's reach key (:func:`reach_key`): ~15 pictures a key at 1M uniform vectors,
more where vectors cluster, each read back by a search whose key matches."""
REACH_ROWS = 1024
"""The most rows a reach-key lookup reads: a key shared by more (mass exact duplicates, which
all tie with the query) adds nothing the first 1024 do not."""
_REACH_SEED = 0x1_0CA1_1CE
_DUMMY = [0.0, 1.0]
_ALWAYS = "(pk >= 0)"
"""A condition every row meets (keys are 63-bit, never negative): an empty And."""


def _escape(text: str) -> str:
    """A double-quoted Milvus string literal (Go-style escapes, which JSON's are a subset of)."""
    return json.dumps(text, ensure_ascii=False)


def picture_key(group_id: str, pic_name: str) -> int:
    """The primary key of a picture: 63 bits of its group and name, the same in every process."""
    digest = hashlib.blake2b(f"{group_id}\x00{pic_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@functools.cache
def _reach_planes(dim: int) -> np.ndarray:
    return np.random.default_rng(_REACH_SEED).standard_normal((REACH_BITS, dim))


def reach_key(vector: np.ndarray) -> int:
    """Which side of :data:`REACH_BITS` fixed random hyperplanes a (unit) vector lies on
    (random-hyperplane hashing). The same vector always gets the same key, so a search with a
    picture's own bytes reads it back by its key even where Milvus' HNSW graph cannot reach it
    (an island: :meth:`MilvusStore.search`). A near-copy shares the key unless a hyperplane
    falls between them: each bit differs with probability angle / pi, 2% at cosine 0.998."""
    sides = _reach_planes(len(vector)) @ np.asarray(vector, dtype=np.float64) > 0
    return int(sides @ (1 << np.arange(REACH_BITS)))


def tag_numbers(tags: dict[str, object]) -> dict[str, float]:
    """The ``tag_num`` JSON: each tag's number reading (:func:`filters.tag_number`); a tag without
    one is left out, which Milvus' comparisons treat as the rules treat it (false)."""
    return {key: number for key, value in tags.items() if (number := tag_number(value)) is not None}


def tag_texts(tags: dict[str, object]) -> dict[str, str]:
    """The ``tag_str`` JSON: each tag's text reading (:func:`filters.tag_text`), likewise."""
    return {key: text for key, value in tags.items() if (text := tag_text(value)) is not None}


_READING_FIELDS = {NUMBER: "tag_num", TEXT: "tag_str"}
_OPERATORS = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "=": "==", "!=": "!="}
"""Each filter operator as Milvus spells it."""


def compile_condition(condition: Condition) -> str:
    """One decided Compare as a Milvus expression. Milvus' comparison is false for a row whose JSON
    lacks the key; a condition that a row without a reading passes is therefore stated as ``not``
    of its negation (``not (tag_str["k"] == "v")`` for ``k != v``)."""
    field = f"{_READING_FIELDS[condition.reading]}[{_escape(condition.key)}]"
    operand = condition.operand
    value = repr(operand) if isinstance(operand, float) else _escape(operand)
    if condition.missing:
        return f"(not ({field} {_OPERATORS[NEGATION[condition.op]]} {value}))"
    return f"({field} {_OPERATORS[condition.op]} {value})"


def compile_filter(expr: Expr) -> str:
    """The Milvus boolean expression that selects exactly what :func:`filters.matches` does."""
    if isinstance(expr, Compare):
        return compile_condition(decide(expr))
    if isinstance(expr, And | Or):
        if not expr.items:  # all() of nothing holds, any() of nothing does not
            return _ALWAYS if isinstance(expr, And) else f"(not {_ALWAYS})"
        joiner = " and " if isinstance(expr, And) else " or "
        return "(" + joiner.join(compile_filter(item) for item in expr.items) + ")"
    raise TypeError(f"not a filter expression: {expr!r}")


def _in_group(group_id: str) -> str:
    """The expression selecting one group's rows (the group is a filtered field)."""
    return f"group_id == {_escape(group_id)}"


def _collection_name(prefix: str, model: str) -> str:
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', model)}"


def _blob_fields(fields: int) -> list[str]:
    return [f"data{i + 1}" for i in range(fields)]


def _blob_row(data: bytes, fields: int) -> dict[str, str] | None:
    """``data`` as base64 spread over ``fields`` VARCHAR fields; None when it does not fit."""
    text = base64.b64encode(data).decode()
    if len(text) > fields * THUMB_CHUNK:
        return None
    return {name: text[i * THUMB_CHUNK : (i + 1) * THUMB_CHUNK] for i, name in enumerate(_blob_fields(fields))}


def _blob(row: dict[str, Any], fields: int) -> bytes:
    return base64.b64decode("".join(row[name] for name in _blob_fields(fields)))
