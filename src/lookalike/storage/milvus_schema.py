"""The Milvus backend's layout: collections, keys, the tags' filter encodings, blobs in VARCHARs.

What a row of each collection holds and how a picture's key, its tags and its blobs are written
there (the module docstring of :mod:`lookalike.storage.milvus` says why this layout). Pure
functions: nothing here talks to Milvus.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from typing import Any

from lookalike.storage.filters import And, Compare, Expr, Or, is_number, tag_number

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
_DUMMY = [0.0, 1.0]
_MAX_DOUBLE = 1.7976931348623157e308


def _escape(text: str) -> str:
    """A double-quoted Milvus string literal (Go-style escapes, which JSON's are a subset of)."""
    return json.dumps(text, ensure_ascii=False)


def picture_key(group_id: str, pic_name: str) -> int:
    """The primary key of a picture: 63 bits of its group and name, the same in every process."""
    digest = hashlib.blake2b(f"{group_id}\x00{pic_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def tag_numbers(tags: dict[str, object]) -> dict[str, float]:
    """Each tag as a number filter compares it (the reference semantics in storage/filters.py)."""
    out: dict[str, float] = {}
    for key, value in tags.items():
        number = tag_number(value)
        if number is None or math.isnan(number):
            continue  # compares false with everything, like a missing key
        out[key] = max(-_MAX_DOUBLE, min(_MAX_DOUBLE, number))
    return out


def tag_texts(tags: dict[str, object]) -> dict[str, str]:
    return {key: str(value) for key, value in tags.items()}


def compile_filter(expr: Expr) -> str:
    """The Milvus boolean expression that selects exactly what :func:`filters.matches` does."""
    if isinstance(expr, Compare):
        number = is_number(expr.value)
        field = f"tag_num[{_escape(expr.key)}]" if number else f"tag_str[{_escape(expr.key)}]"
        value = repr(float(expr.value)) if number else _escape(str(expr.value))
        if number and not math.isfinite(float(expr.value)):
            value = repr(math.copysign(_MAX_DOUBLE, float(expr.value)))
        if expr.op == "!=":
            return f"(not ({field} == {value}))"
        op = "==" if expr.op == "=" else expr.op
        return f"({field} {op} {value})"
    if isinstance(expr, And):
        return "(" + " and ".join(compile_filter(item) for item in expr.items) + ")"
    if isinstance(expr, Or):
        return "(" + " or ".join(compile_filter(item) for item in expr.items) + ")"
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
