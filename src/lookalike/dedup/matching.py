"""Vectors -> groups of near-duplicates, without the all-pairs matrix.

Every vector asks for its ``NEIGHBOURS`` nearest others; the pairs above the threshold are
joined (union-find) into groups. Small collections use exact blocked matrix products, larger
ones the HNSW index the galleries use, with every candidate re-scored exactly. Memory is the
vectors plus ``n x NEIGHBOURS`` candidates, never ``n x n``; time after embedding is close to
linear (HNSW build and search are ~log n per vector).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lookalike.scores import Calibration

NEIGHBOURS = 16
"""Neighbours asked for per vector. A group of any size still joins up, through chains of
nearest neighbours; 16 keeps families of 6 transforms whole with room for crowded scenes."""
EXACT_LIMIT = 20_000
"""Up to this many vectors, exact blocked products (about 4 s at 20k on 2 cores) beat
building an index; above, HNSW."""
BLOCK = 1024
"""Query rows per block: BLOCK x n float32 at a time on the exact path (80 MB at n = 20k), and
BLOCK x k candidate rows to re-score on the ANN path (35 MB)."""


@dataclass(frozen=True)
class Pairs:
    """Similar pairs ``(left[i], right[i])`` with their cosine, each pair once (left < right)."""

    left: np.ndarray
    right: np.ndarray
    cosine: np.ndarray

    def __len__(self) -> int:
        return len(self.left)


def similar_pairs(vectors: np.ndarray, min_cosine: float, *, neighbours: int = NEIGHBOURS, threads: int = 0) -> Pairs:
    """Pairs among ``vectors`` (unit rows) with cosine >= ``min_cosine``, each row's ``neighbours``
    best at most (so a thousand copies of one image cost n x k, not n x n)."""
    n = len(vectors)
    k = min(neighbours, n - 1)
    if k <= 0:
        empty = np.empty(0, dtype=np.int64)
        return Pairs(empty, empty, np.empty(0, dtype=np.float32))
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if n <= EXACT_LIMIT:
        rows, cols, cos = _exact_neighbours(vectors, k, min_cosine)
    else:
        rows, cols, cos = _ann_neighbours(vectors, k, min_cosine, threads or os.cpu_count() or 1)
    left, right = np.minimum(rows, cols), np.maximum(rows, cols)
    keep = left != right
    left, right, cos = left[keep], right[keep], cos[keep]
    pair_id = left * n + right
    _, first = np.unique(pair_id, return_index=True)
    return Pairs(left[first], right[first], cos[first])


def cascade_pairs(
    vectors: np.ndarray,
    min_cosine: float,
    calibration: Calibration,
    second_opinion: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    *,
    doubt: tuple[float, float] | None = None,
    threads: int = 0,
) -> Pairs:
    """Similar pairs at the reference-scale ``min_cosine``, from vectors of a cheaper pipeline.

    ``vectors`` come from the pipeline ``calibration`` describes. A pair whose cosine, on the
    reference scale, lies in the ``doubt`` window (from, to) is settled by ``second_opinion(left,
    right, cosines)``: the reference-scale cosines the second opinion gives those pairs (NaN:
    none, the pair is dropped). Pairs above the window are in, below it out. No window: the
    vectors' word is final. The returned cosines are on the reference scale.
    """
    low = min_cosine if doubt is None or second_opinion is None else min(doubt[0], min_cosine)
    found = similar_pairs(vectors, calibration.from_reference(low), threads=threads)
    reference = np.asarray(calibration.to_reference(found.cosine), dtype=np.float32)
    if doubt is None or second_opinion is None:
        keep = np.flatnonzero(reference >= min_cosine)
        return Pairs(found.left[keep], found.right[keep], reference[keep])
    sure = np.flatnonzero(reference >= max(doubt[1], min_cosine))
    unsure = np.flatnonzero((reference >= low) & (reference < max(doubt[1], min_cosine)))
    if len(unsure):
        second = second_opinion(found.left[unsure], found.right[unsure], reference[unsure])
        passed = second >= min_cosine  # NaN: never
        reference[unsure[passed]] = second[passed]
        sure = np.sort(np.concatenate([sure, unsure[passed]]))
    return Pairs(found.left[sure], found.right[sure], reference[sure])


def _exact_neighbours(
    vectors: np.ndarray, k: int, min_cosine: float, query_rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query row's ``k`` best others by blocked matrix products (all rows by default)."""
    if query_rows is None:
        query_rows = np.arange(len(vectors))
    rows, cols, cos = [], [], []
    for start in range(0, len(query_rows), BLOCK):
        chunk = query_rows[start : start + BLOCK]
        block = vectors[chunk] @ vectors.T
        block[np.arange(len(chunk)), chunk] = -np.inf  # not its own neighbour
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]  # k <= n - 1
        values = np.take_along_axis(block, top, axis=1)
        hit = values >= min_cosine
        rows.append(chunk[:, None].repeat(k, axis=1)[hit])
        cols.append(top[hit])
        cos.append(values[hit])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(cos)


def _ann_neighbours(
    vectors: np.ndarray, k: int, min_cosine: float, threads: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from lookalike.storage.ann import AnnIndex

    index = AnnIndex(vectors.shape[1])
    keys = np.arange(len(vectors), dtype=np.int64)
    index.add(keys, vectors)
    rows, cols, cos, stranded = [], [], [], []
    for start in range(0, len(vectors), BLOCK):
        queries = vectors[start : start + BLOCK]
        found = index.search_many(queries, k + 1, threads=threads)  # +1: itself
        query_rows = np.arange(start, start + len(queries))[:, None].repeat(found.shape[1], axis=1)
        stranded.append(np.flatnonzero(~(found == query_rows).any(axis=1)) + start)
        valid = found >= 0
        r, c = query_rows[valid], found[valid]
        # re-scored exactly (the index's int8 scores are for order only); BLOCK x k rows at a time
        exact = np.einsum("ij,ij->i", vectors[r], vectors[c])
        hit = exact >= min_cosine
        rows.append(r[hit])
        cols.append(c[hit])
        cos.append(exact[hit])
    # A row the walk did not reach from itself sits on an island of the graph (HNSW's pruning
    # can leave a tight clique linked only inside: measured on random families, a whole family
    # of four lost in a third of builds). Those rows are searched exactly: few, n each.
    lost = np.concatenate(stranded)
    if len(lost):
        r, c, x = _exact_neighbours(vectors, k, min_cosine, lost)
        rows.append(r)
        cols.append(c)
        cos.append(x)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(cos)


class DisjointSet:
    """Union-find over 0..n-1 with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def groups(self) -> list[list[int]]:
        """Members of every set with two or more, each sorted, in order of their first member."""
        roots = np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)
        order = np.argsort(roots, kind="stable")
        cuts = np.flatnonzero(np.diff(roots[order])) + 1
        out = [sorted(chunk.tolist()) for chunk in np.split(order, cuts) if len(chunk) > 1]
        out.sort(key=lambda members: members[0])
        return out


def group_pairs(n: int, pairs: Pairs) -> list[list[int]]:
    """Connected components (two or more members) of the pair graph over n items."""
    sets = DisjointSet(n)
    for a, b in zip(pairs.left.tolist(), pairs.right.tolist(), strict=True):
        sets.union(a, b)
    return sets.groups()
