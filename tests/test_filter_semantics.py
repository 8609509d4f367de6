"""The tag filter rules (storage/filters.py) and every evaluator held to them on the same cases.

The rules table (tests/filter_cases.py) pins what ``Tags[key] <op> value`` means; the reference
:func:`filters.matches`, the embedded store's vectorised masks and Milvus' compiled expressions
must then agree on it and on generated filters over generated rows, so a rule changed or added
in one evaluator and not the others fails here.
"""

from __future__ import annotations

import math
import random
import uuid

import numpy as np
import pytest

from filter_cases import MISSING, PARSED, RULES, random_filter, random_tags, storable_in_milvus
from lookalike.gallery import parse_filter
from lookalike.storage.base import GroupRecord, ImageRecord
from lookalike.storage.filters import And, Compare, Expr, Or, decide, matches
from lookalike.storage.memory import GroupVectors
from lookalike.storage.milvus import MilvusStore, compile_filter

DIM = 8


def rule_tags(value: object) -> dict[str, object]:
    return {} if value is MISSING else {"k": value}


@pytest.mark.parametrize(
    ("value", "compare", "verdict"), RULES, ids=[f"{v!r:.20} {c.op} {c.value!r:.24}" for v, c, _ in RULES]
)
def test_the_reference_follows_each_rule(value: object, compare: Compare, verdict: bool) -> None:
    assert matches(compare, rule_tags(value)) is verdict


def test_a_filter_refuses_an_unknown_operator_and_nan() -> None:
    with pytest.raises(ValueError, match="unknown operator"):
        Compare("k", "~", 1)
    with pytest.raises(ValueError, match="NaN"):
        Compare("k", "=", math.nan)


def test_one_decision_per_compare_whatever_the_operand_type() -> None:
    """The operand picks the reading; ints and floats become one float64; only != lets a row
    without a reading through."""
    assert decide(Compare("k", "=", 2)) == decide(Compare("k", "=", 2.0))
    assert decide(Compare("k", ">", 2**53 + 1)).operand == 2.0**53
    assert decide(Compare("k", "<", 10**400)).operand == decide(Compare("k", "<", math.inf)).operand
    assert decide(Compare("k", "=", "2")).reading == "text" and decide(Compare("k", "=", 2)).reading == "number"
    assert [decide(Compare("k", op, 1)).missing for op in ("=", "!=", "<", "<=", ">", ">=")] == [
        False, True, False, False, False, False,
    ]


def cases(seed: int, rows: int, filters: int, *, milvus: bool = False) -> tuple[list[dict[str, object]], list[Expr]]:
    """Generated rows plus one row per rule value; generated filters plus every rule's filter and
    the parsed texts. For Milvus, no tag value that its JSON cannot store."""
    rng = random.Random(seed)
    tags = [random_tags(rng, beyond_double=not milvus) for _ in range(rows)]
    tags += [rule_tags(v) for v, _, _ in RULES if not milvus or storable_in_milvus(v)]
    exprs = [random_filter(rng) for _ in range(filters)]
    exprs += [c for _, c, _ in RULES] + [e for e in map(parse_filter, PARSED) if e is not None]
    exprs += [And(()), Or(()), Or((And(()), Compare("n", "=", 1)))]
    return tags, exprs


def test_vectorised_masks_agree_with_the_reference_row_by_row() -> None:
    tags, exprs = cases(7, 400, 500)
    group = GroupVectors(4)
    for i, t in enumerate(tags):
        group.add(i + 1, np.ones(4, dtype=np.float32), t)
    for expr in exprs:
        assert group.mask(expr).tolist() == [matches(expr, group.tags[r]) for r in range(group.n)], expr
    # Columns are kept in step through removals (swap with the last row) and tag updates.
    rng = random.Random(8)
    for image_id in rng.sample(range(1, len(tags) + 1), 150):
        group.remove(image_id)
    for image_id in rng.sample(list(group.pos), 80):
        group.set_tags(image_id, random_tags(rng))
    for i in range(len(tags) + 1, len(tags) + 50):
        group.add(i, np.ones(4, dtype=np.float32), random_tags(rng))
    for expr in exprs[:300]:
        assert group.mask(expr).tolist() == [matches(expr, group.tags[r]) for r in range(group.n)], expr


def test_milvus_selects_exactly_what_the_reference_selects(milvus_uri) -> None:
    """The same cases through real Milvus: each compiled filter's ids against the expected set."""
    tags, exprs = cases(11, 150, 150, milvus=True)
    vectors = np.random.default_rng(11).normal(size=(len(tags), DIM)).astype(np.float32)
    # A generous timeout: this asserts what is selected, and a loaded machine once took over 10 s
    # to create a collection.
    store = MilvusStore(milvus_uri, prefix=f"f{uuid.uuid4().hex[:10]}", dim=DIM, timeout=120)
    try:
        store.create_group(GroupRecord("g", "g"))
        # One bulk write (the rows go through the same encoding as add_image's): ~200 single adds
        # took minutes of a loaded machine's time.
        records = [ImageRecord("g", f"e{i}", f"p{i}", tags=row) for i, row in enumerate(tags)]
        assert store.import_images([(r, v, None) for r, v in zip(records, vectors, strict=True)]) == len(tags)
        for expr in exprs:
            got = {h.image.pic_name for h in store.search("g", vectors[0], limit=len(tags) + 10, where=expr)}
            want = {f"p{i}" for i, row in enumerate(tags) if matches(expr, row)}
            assert got == want, (expr, compile_filter(expr), sorted(got ^ want))
    finally:
        store.close()
