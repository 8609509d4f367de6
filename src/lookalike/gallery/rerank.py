"""Search's second stage: geometric verification of the top hits, then query expansion.

The global vector finds candidates fast; local features verify the best ``depth`` of them
against the query (a verified crop or partial copy rises, a look-alike without matching
structure does not), and the query is averaged with its best hit for a second pass (alpha-QE,
Radenovic et al. 2018), which pulls in other views of the same object. The gains and costs of
each step are measured in docs/benchmarks.md ("Quality"); settings turn each off.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from lookalike import scores
from lookalike.models.local import LocalFeatures, Verification, verify
from lookalike.storage.base import Hit, Store


@dataclass(frozen=True)
class Ranked:
    hit: Hit
    """The store's hit; its cosine is against the (expanded) query vector."""
    similarity: float
    """The cosine raised by verification: what the order and the Score come from."""
    inliers: int | None


def _best_first(r: Ranked) -> tuple[float, float]:
    return (-r.similarity, -r.hit.cosine)


def verifications(
    store: Store, group_id: str, query: LocalFeatures, hits: list[Hit], pool: Executor
) -> dict[str, Verification]:
    """Geometric verification of each hit that has stored local features."""
    stored = store.get_features(group_id, [h.image.pic_name for h in hits])
    names = list(stored)
    unverified = Verification(0, np.zeros((0, 4), np.float32))

    def one(name: str) -> Verification:
        try:
            return verify(query, LocalFeatures.from_bytes(stored[name]))
        except Exception:  # damaged features never fail a search: that hit just goes unverified
            return unverified

    return dict(zip(names, pool.map(one, names), strict=True))


def rerank(
    store: Store,
    group_id: str,
    vector: np.ndarray,
    features: LocalFeatures | None,
    search: Callable[[np.ndarray, int], list[Hit]],
    *,
    want: int,
    depth: int,
    expand: bool,
    pool: Executor,
    verify_from: float = -1.0,
) -> list[Ranked]:
    """The first ``max(want, depth)`` hits, best first by similarity.

    ``search(vector, limit)`` is the store search with the caller's filter and no threshold:
    the threshold applies to the similarity, after verification. Without query ``features``
    (local features off) nothing is verified and the expansion weighs the best hit by its cosine.
    Of the top ``depth`` only hits from cosine ``verify_from`` up are verified (LOOKALIKE_VERIFY_FROM,
    the rule pairs follow): below it no copy was measured, and the bonus of a verified look-alike
    leaves it under the match boundary (docs/benchmarks.md, "Speed").
    """
    n = max(want, depth)
    hits = search(vector, n)
    doubtful = [h for h in hits[:depth] if h.cosine >= verify_from]
    verified = {} if features is None else verifications(store, group_id, features, doubtful, pool)

    def ranked(found: list[Hit]) -> list[Ranked]:
        out = []
        for h in found:
            v = verified.get(h.image.pic_name)
            if v is None:
                out.append(Ranked(h, h.cosine, None))
            else:
                out.append(Ranked(h, scores.similarity(h.cosine, v.inliers, v.share), v.inliers))
        out.sort(key=_best_first)
        return out

    first = ranked(hits)
    # Copies of the query (Score >= 80: the picture itself, or its verified crop or edit) add
    # nothing to it: the query is expanded with the best hit that is not a copy. The copies keep
    # their first-pass similarity, and no other hit becomes one through the expansion: a picture
    # found by itself still scores 100, and an edited copy's original stays first.
    copies = {r.hit.image.pic_name: r for r in first if r.similarity >= scores.COPY_COSINE}
    best = next((r for r in first if r.hit.image.pic_name not in copies), None) if expand else None
    if best is None:
        return first
    stored = store.get_vectors(group_id, [best.hit.image.pic_name]).get(best.hit.image.pic_name)
    weight = min(1.0, max(0.0, best.similarity))
    if stored is None or weight == 0.0:
        return first
    expanded = vector + weight * stored
    expanded /= max(float(np.linalg.norm(expanded)), 1e-12)
    again = ranked(search(expanded.astype(np.float32), n))
    found = {r.hit.image.pic_name for r in again}
    second = [
        copies.get(r.hit.image.pic_name) or Ranked(r.hit, scores.expanded(r.similarity), r.inliers) for r in again
    ]
    second += [r for name, r in copies.items() if name not in found]  # a copy is never lost to the expansion
    second.sort(key=_best_first)
    return second[:n]
