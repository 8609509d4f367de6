"""The in-memory, derived half of one group: its vectors, tags, filter columns and ANN index.

Everything here can be rebuilt from SQLite (the source of truth), so nothing here is
persisted except, optionally, the ANN index file, which is reconciled against SQLite on load.

Search is exact (one float32 matrix-vector product) for small groups and for selective
filters; larger groups use the HNSW index, whose candidates are re-scored exactly. Vectors
added since the index last caught up ("pending") are always scanned exactly, so an add is
searchable the moment it returns, and a deleted id is masked at once (the index forgets it
later, in the background).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from lookalike.storage.ann import SWEEP_SHARE, AnnIndex, breadth
from lookalike.storage.filters import COMPARISONS, TEXT, And, Compare, Condition, Expr, Or, decide, tag_number, tag_text

_MIN_COSINE_MARGIN = 0.01
"""Slack between the index's half-precision cosines and the exact ones."""


def _dot(mat: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``mat @ q`` without BLAS: OpenBLAS's threaded gemv busy-waits, and beside the embedding
    model (or anything else) on a few cores it was 3-30x slower than numpy's own single-thread
    SIMD loop (measured in docs/benchmarks.md, "Vector search")."""
    return np.einsum("ij,j->i", mat, q)


class RWLock:
    """Many readers or one writer; a waiting writer holds new readers back (no starvation).

    Not reentrant: a thread must not take it twice.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Column:
    """One tag key across a group's rows, in the two readings a condition can test
    (:mod:`filters`): the number reading as a float (NaN: none; no reading is ever NaN) and the
    text reading dictionary-encoded (code 0: none), so a text comparison is decided once per
    distinct value, then gathered."""

    def __init__(self, capacity: int) -> None:
        self.num = np.full(capacity, np.nan, dtype=np.float64)
        self.code = np.zeros(capacity, dtype=np.int32)
        self.vocab: list[str] = [""]
        self.codes: dict[str, int] = {}

    def set(self, row: int, value: object) -> None:
        number = tag_number(value)
        self.num[row] = np.nan if number is None else number
        text = tag_text(value)
        if text is None:
            self.code[row] = 0
            return
        code = self.codes.get(text)
        if code is None:
            code = self.codes[text] = len(self.vocab)
            self.vocab.append(text)
        self.code[row] = code

    def move(self, src: int, dst: int) -> None:
        self.num[dst] = self.num[src]
        self.code[dst] = self.code[src]

    def grow(self, capacity: int) -> None:
        n = len(self.num)
        num = np.full(capacity, np.nan, dtype=np.float64)
        code = np.zeros(capacity, dtype=np.int32)
        num[:n], code[:n] = self.num, self.code
        self.num, self.code = num, code

    def mask(self, condition: Condition, n: int) -> np.ndarray:
        """The first ``n`` rows' verdicts on ``condition`` (the translation of :func:`filters.holds`)."""
        compare = COMPARISONS[condition.op]
        if condition.reading == TEXT:
            table = np.fromiter((bool(compare(v, condition.operand)) for v in self.vocab), bool, len(self.vocab))
            table[0] = condition.missing
            return table[self.code[:n]]
        numbers = self.num[:n]
        with np.errstate(invalid="ignore"):
            out = np.asarray(compare(numbers, condition.operand), dtype=bool)
        out[np.isnan(numbers)] = condition.missing
        return out


class GroupVectors:
    """A group's rows in memory. Callers hold :attr:`lock` (read to search, write to change)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.lock = RWLock()
        self.loaded = False
        self.dead = False
        """Set when the group is deleted: a holder of a stale handle must not write to it."""
        self.n = 0
        self.ids = np.empty(0, dtype=np.int64)
        self.mat = np.empty((0, dim), dtype=np.float32)
        self.in_ann = np.empty(0, dtype=bool)
        self.tags: list[dict[str, object]] = []
        self.pos: dict[int, int] = {}
        self.columns: dict[str, _Column] = {}
        self.ann: AnnIndex | None = None
        self.n_pending = 0
        """Rows not (yet) in the ANN index: scanned exactly by every search."""
        self.pending: deque[int] = deque()
        """Ids the merger still has to add to the index (some may have been deleted since)."""
        self.removed: list[int] = []
        """Ids deleted from the group but still in the index: masked until the merger removes them."""
        self.added_since_save = 0
        self.dirty = False
        """The index differs from its saved file."""
        self.merging = False
        """The merger is adding/removing a chunk outside the lock."""
        self.stranded: set[int] = set()
        """Rows the index could not reach from their own vector (:meth:`AnnIndex.unreachable`):
        kept out of the index and out of ``pending``, scanned exactly by every search."""
        self.unswept = 0
        """Rows added to the index since the last full reachability sweep began."""
        self.sweep_queue: deque[int] = deque()
        """Indexed ids the sweep in progress still has to check."""
        self.sweep_requested = False
        """:meth:`SqliteStore.wait_for_index` wants a sweep even below the growth threshold."""

    # ------------------------------------------------------------------ building

    def _grow(self, need: int) -> None:
        cap = len(self.ids)
        if need <= cap:
            return
        new = max(need, 64, cap + cap // 2)
        ids = np.empty(new, dtype=np.int64)
        mat = np.empty((new, self.dim), dtype=np.float32)
        in_ann = np.zeros(new, dtype=bool)
        ids[: self.n], mat[: self.n], in_ann[: self.n] = self.ids[: self.n], self.mat[: self.n], self.in_ann[: self.n]
        self.ids, self.mat, self.in_ann = ids, mat, in_ann
        for col in self.columns.values():
            col.grow(new)

    def load(self, ids: np.ndarray, mat: np.ndarray, tags: list[dict[str, object]]) -> None:
        """The rows as read from SQLite (the caller holds the write lock)."""
        self.n = len(ids)
        self.ids, self.mat = ids.astype(np.int64), mat
        self.in_ann = np.zeros(self.n, dtype=bool)
        self.tags = tags
        self.pos = {int(i): r for r, i in enumerate(self.ids)}
        self.columns = {}
        self.n_pending = self.n
        self.loaded = True

    def add(self, image_id: int, vector: np.ndarray, tags: dict[str, object]) -> None:
        self._grow(self.n + 1)
        row = self.n
        self.ids[row], self.mat[row], self.in_ann[row] = image_id, vector, False
        self.tags.append(tags)
        self.pos[image_id] = row
        for key, col in self.columns.items():
            col.set(row, tags.get(key))
        self.n += 1
        self.n_pending += 1
        if self.ann is not None:
            self.pending.append(image_id)

    def remove(self, image_id: int) -> None:
        row = self.pos.pop(image_id, None)
        if row is None:
            return
        self.stranded.discard(image_id)
        if self.in_ann[row]:
            self.removed.append(image_id)
        else:
            self.n_pending -= 1
        last = self.n - 1
        if row != last:
            moved = int(self.ids[last])
            self.ids[row], self.mat[row], self.in_ann[row] = moved, self.mat[last], self.in_ann[last]
            self.tags[row] = self.tags[last]
            for col in self.columns.values():
                col.move(last, row)
            self.pos[moved] = row
        self.tags.pop()
        self.n = last

    def set_tags(self, image_id: int, tags: dict[str, object]) -> None:
        row = self.pos.get(image_id)
        if row is None:
            return
        self.tags[row] = tags
        for key, col in self.columns.items():
            col.set(row, tags.get(key))

    # ------------------------------------------------------------------ filters

    def _column(self, key: str) -> _Column:
        col = self.columns.get(key)
        if col is None:
            col = _Column(max(len(self.ids), 1))
            for row in range(self.n):
                col.set(row, self.tags[row].get(key))
            self.columns[key] = col
        return col

    def mask(self, expr: Expr) -> np.ndarray:
        """Rows passing ``expr``, vectorised; agrees with :func:`filters.matches` row by row."""
        n = self.n
        if isinstance(expr, And):
            out = np.ones(n, dtype=bool)
            for item in expr.items:
                out &= self.mask(item)
            return out
        if isinstance(expr, Or):
            out = np.zeros(n, dtype=bool)
            for item in expr.items:
                out |= self.mask(item)
            return out
        if not isinstance(expr, Compare):
            raise TypeError(f"not a filter expression: {expr!r}")
        condition = decide(expr)
        return self._column(condition.key).mask(condition, n)

    # ------------------------------------------------------------------ search

    def _select(
        self, q: np.ndarray, rows: np.ndarray | None, k: int, min_cosine: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` of ``rows`` (all rows when None), exactly: (rows, cosines), best first.

        Ties are broken by image id, also across the k-th place, so that pages of one query
        are consistent with each other.
        """
        if rows is None:
            scores = _dot(self.mat[: self.n], q)
        elif len(rows) * 4 > self.n:  # gathering most rows costs more (and a copy) than scoring all
            scores = _dot(self.mat[: self.n], q)[rows]
        else:
            scores = _dot(self.mat[rows], q)
        if rows is None:
            rows = np.arange(self.n)
        if min_cosine > -1.0:
            keep = scores.astype(np.float64) >= min_cosine
            rows, scores = rows[keep], scores[keep]
        if len(scores) > k:
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            above = np.flatnonzero(scores > kth)
            tied = np.flatnonzero(scores == kth)
            tied = tied[np.argsort(self.ids[rows[tied]], kind="stable")][: k - len(above)]
            pick = np.concatenate([above, tied])
            rows, scores = rows[pick], scores[pick]
        order = np.lexsort((self.ids[rows], -scores))
        return rows[order], scores[order]

    def search(
        self, q: np.ndarray, k: int, *, min_cosine: float, where: Expr | None, exact_threshold: int
    ) -> list[tuple[int, float]]:
        """The best ``k`` (image id, cosine) passing ``where`` and ``min_cosine``, best first."""
        if self.n == 0 or k <= 0:
            return []
        allowed: np.ndarray | None = None
        mask: np.ndarray | None = None
        if where is not None:
            mask = self.mask(where)
            allowed = np.flatnonzero(mask)
            if len(allowed) == 0:
                return []
        ann = self.ann
        if ann is None or len(ann) == 0 or self.n_pending * 2 > self.n or (
            allowed is not None and len(allowed) <= exact_threshold
        ):
            rows, scores = self._select(q, allowed, k, min_cosine)
        else:
            rows, scores = self._ann_search(ann, q, k, min_cosine, mask, allowed)
        return [(int(i), float(s)) for i, s in zip(self.ids[rows], scores, strict=True)]

    def _ann_search(
        self,
        ann: AnnIndex,
        q: np.ndarray,
        k: int,
        min_cosine: float,
        mask: np.ndarray | None,
        allowed: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Index candidates plus the pending rows, re-scored exactly; more candidates until
        ``k`` pass the filter, and the exact scan when the index cannot supply them."""
        n = self.n
        pending = np.flatnonzero(~self.in_ann[:n]) if self.n_pending else np.empty(0, dtype=np.int64)
        if mask is not None and len(pending):
            pending = pending[mask[pending]]
        share = 1.0 if allowed is None else len(allowed) / n
        # The graph walk visits ef_search candidates whatever k is: re-scoring all of them
        # costs microseconds and recovers neighbours the int8 copy mis-ranked.
        want = int(min(max(2 * k, breadth(len(ann))) / share, len(ann)))
        while True:
            keys, _ = ann.search(q, max(want, 1))
            rows = np.fromiter((self.pos.get(int(key), -1) for key in keys), dtype=np.int64, count=len(keys))
            ok = rows >= 0
            if mask is not None:
                ok &= mask[np.where(ok, rows, 0)]
            candidates = np.unique(np.concatenate([rows[ok], pending]))
            rows_out, scores = self._select(q, candidates, k, min_cosine)
            if len(rows_out) >= k:
                return rows_out, scores
            # A full answer whose farthest key scores (exactly) below min_cosine: the rest of the
            # index does too. A short answer proves nothing: the graph walk may have missed rows.
            if len(keys) == want and rows[-1] >= 0:
                farthest = float(_dot(self.mat[rows[-1 :]], q)[0])
                if farthest < min_cosine - _MIN_COSINE_MARGIN:
                    return rows_out, scores
            if len(keys) < want or want >= len(ann) or want * 4 > n:
                break
            want = min(want * 4, len(ann))
        # The index could not supply k passing rows: the exact scan never loses one.
        return self._select(q, allowed, k, min_cosine)

    # ------------------------------------------------------------------ the index's upkeep

    def start_ann(self, ann: AnnIndex, *, swept: bool = False, stranded: np.ndarray | None = None) -> None:
        """Attach ``ann`` (new or loaded) and reconcile it with the rows: the file is never trusted.

        Keys it has that the group lost are removed; rows it lacks become pending, except the
        ``stranded`` ones saved with it (found unreachable before: they stay in the exact scan).
        ``swept``: the file was saved right after a full reachability sweep, so its rows need
        none now.
        """
        keys = ann.keys()
        stale = keys[~np.isin(keys, self.ids[: self.n])] if len(keys) else keys
        if len(keys):
            ann.remove(stale)
            self.in_ann[: self.n] = np.isin(self.ids[: self.n], keys)
        else:
            self.in_ann[: self.n] = False
        self.ann = ann
        self.removed = []
        outside = self.ids[: self.n][~self.in_ann[: self.n]]
        kept_out = np.isin(outside, np.empty(0, dtype=np.int64) if stranded is None else stranded)
        self.pending = deque(int(i) for i in outside[~kept_out])
        self.n_pending = len(outside)  # stranded rows count as pending: the exact scan has them
        self.added_since_save = 0
        self.stranded = {int(i) for i in outside[kept_out]}
        self.sweep_queue = deque()
        self.unswept = 0 if swept else len(ann)
        self.dirty = bool(len(stale) or self.pending)

    def drop_ann(self) -> None:
        self.ann = None
        self.in_ann[: self.n] = False
        self.pending.clear()
        self.removed = []
        self.n_pending = self.n
        self.stranded = set()
        self.sweep_queue = deque()
        self.unswept = 0

    def take_work(self, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Up to ``limit`` pending ids with their vectors, and the ids to remove from the index."""
        ids: list[int] = []
        rows: list[int] = []
        while self.pending and len(ids) < limit:
            image_id = self.pending.popleft()
            row = self.pos.get(image_id)
            if row is not None and not self.in_ann[row]:
                ids.append(image_id)
                rows.append(row)
        removed, self.removed = np.asarray(self.removed, dtype=np.int64), []
        return np.asarray(ids, dtype=np.int64), self.mat[rows], removed

    def mark_indexed(self, ids: np.ndarray, unreachable: np.ndarray) -> None:
        """After the merger added ``ids``: those deleted meanwhile must leave the index again;
        ``unreachable`` ones (already out of the index again) stay in the exact scan for good."""
        lost = set(unreachable.tolist())
        for image_id in ids.tolist():
            row = self.pos.get(image_id)
            if image_id in lost:
                if row is not None:
                    self.stranded.add(image_id)
            elif row is None:
                self.removed.append(image_id)
            elif not self.in_ann[row]:
                self.in_ann[row] = True
                self.n_pending -= 1
        self.added_since_save += len(ids)
        self.unswept += len(ids)

    # ------------------------------------------------------------------ reachability sweeps

    @property
    def caught_up(self) -> bool:
        """The index holds every row it should (none pending, none to remove, no chunk in flight)."""
        return self.ann is not None and not self.pending and not self.removed and not self.merging

    def wants_sweep(self) -> bool:
        """A sweep is in progress, or due: a later add can re-prune the links into an older row,
        so rows checked when they were added are checked again once the index has grown by
        1/:data:`SWEEP_SHARE` (or when :meth:`SqliteStore.wait_for_index` asks to settle)."""
        if not self.caught_up or self.ann is None:
            return False
        if self.sweep_queue:
            return True
        return self.unswept > 0 and (self.sweep_requested or self.unswept * SWEEP_SHARE >= len(self.ann))

    def take_sweep(self, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``limit`` indexed ids still to check, with their vectors (starts a sweep if none
        is in progress)."""
        if not self.sweep_queue:
            self.sweep_queue = deque(int(i) for i in self.ids[: self.n][self.in_ann[: self.n]])
            self.unswept = 0
            self.sweep_requested = False
        ids: list[int] = []
        rows: list[int] = []
        while self.sweep_queue and len(ids) < limit:
            image_id = self.sweep_queue.popleft()
            row = self.pos.get(image_id)
            if row is not None and self.in_ann[row]:
                ids.append(image_id)
                rows.append(row)
        return np.asarray(ids, dtype=np.int64), self.mat[rows]

    def strand(self, ids: np.ndarray) -> np.ndarray:
        """Take ``ids`` (found unreachable by a sweep) into the exact scan; returns those still
        indexed, which the caller removes from the index under the same lock."""
        out: list[int] = []
        for image_id in ids.tolist():
            row = self.pos.get(image_id)
            if row is not None and self.in_ann[row]:
                self.in_ann[row] = False
                self.n_pending += 1
                self.stranded.add(image_id)
                out.append(image_id)
        return np.asarray(out, dtype=np.int64)
