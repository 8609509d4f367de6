"""The approximate nearest-neighbour index: a thin wrapper so the library is named in one place.

usearch (HNSW) was chosen over hnswlib (unmaintained since 2023) and faiss-cpu (its HNSW
cannot remove ids): it is maintained, removes keys, saves/loads a file, and quantises the
vectors it keeps. That copy is only used to walk the graph: every candidate it returns is
re-scored exactly from the store's float32 matrix, so int8 costs no reported precision and
no measured recall, while halving the index's memory and build time against float16
(measurements: docs/benchmarks.md, "Vector search").

One usearch call holds the index for its whole duration (searches wait behind an ``add``),
so callers add in small chunks (:data:`ADD_CHUNK`) to keep search latency bounded.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from lookalike.errors import StorageFull

try:  # onnxruntime must be loaded before usearch: usearch's extension links libstdc++ statically
    # and its (process-global) C++ symbols then crash onnxruntime's import with SIGSEGV
    # (usearch 2.26 + onnxruntime 1.26). The other order is fine.
    import onnxruntime  # noqa: F401
except ImportError:  # pragma: no cover - a store without the models
    pass
from usearch.index import BatchMatches, Index  # noqa: E402

CONNECTIVITY = 16
"""HNSW M: 16 reaches recall@10 ≈ 0.99 on clustered 512-d data at a modest build cost."""
EXPANSION_ADD = 128
"""ef_construction: 64 builds faster but lost recall on hard clustered data (0.95 vs 0.99 @10)."""
EXPANSION_SEARCH = 128
LARGE = 300_000
"""From this size the graph walk is twice as broad: at 1M vectors 128 candidates gave recall@10
0.963, 256 gave 0.986 for +0.5 ms (up to 300k, 128 already gave 1.000)."""
HUGE = 600_000
"""From this size, four times as broad: the store's recall@10 at 1M was 0.974-0.989 with 256
candidates, under the 0.99 wanted; the index alone gave 0.991 with 512 (+0.7 ms)."""
DTYPE = "i8"
"""Quantised copy inside the index; candidates are re-scored in float32 by the store."""
ADD_THREADS = max(1, min(8, os.cpu_count() or 1))
"""The merger builds with every core: it only has much to do after a bulk load or a restart
without an index file, and real ingest is bounded by embedding, not by this."""
ADD_CHUNK = 32 * ADD_THREADS
"""Vectors per ``add`` call: ~20-40 ms, the longest a search waits behind one."""
SWEEP_CHUNK = 4 * ADD_CHUNK
"""Rows per step of a reachability sweep (one ``search_many``; searches go on meanwhile)."""
SWEEP_SHARE = 1
"""A full reachability sweep once the index has doubled since the last one: at most about one
more self search per added row, amortised, beside the one at add time (a sweep every 1/8 of
growth would cost ~8: at 1M rows, hours of a core)."""


def _out_of_space(exc: BaseException, folder: Path, needed: int) -> bool:
    """Whether a failed save ran out of space: ENOSPC / EDQUOT, or usearch's bare RuntimeError
    while the file system has less room than the index needs."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, RuntimeError):
        try:
            st = os.statvfs(folder)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < needed + (1 << 20)
    return False


def save_ids(path: Path, ids: np.ndarray) -> None:
    """``ids`` as a .npy file, atomically (a temporary file, then a rename); none when empty."""
    if not len(ids):
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as out:
            np.save(out, np.asarray(ids, dtype=np.int64))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def breadth(size: int) -> int:
    """Candidates to ask an index of ``size`` for (usearch walks max(ef_search, count) wide)."""
    if size < LARGE:
        return EXPANSION_SEARCH
    return 2 * EXPANSION_SEARCH if size < HUGE else 4 * EXPANSION_SEARCH


class AnnIndex:
    """Cosine (inner product of unit vectors) HNSW over integer keys (the images' ids)."""

    def __init__(self, dim: int, index: Index | None = None) -> None:
        self.dim = dim
        self._index = index or Index(
            ndim=dim,
            metric="ip",
            dtype=DTYPE,
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )

    def __len__(self) -> int:
        return len(self._index)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys):
            self._index.add(keys.astype(np.uint64), vectors, threads=ADD_THREADS)

    def remove(self, keys: np.ndarray) -> None:
        if len(keys):
            self._index.remove(keys.astype(np.uint64))

    def keys(self) -> np.ndarray:
        return np.asarray(self._index.keys, dtype=np.int64)

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` (keys, scores), best first. The scores are on usearch's int8 scale (about
        16000 x cosine), good for order only: callers re-score candidates exactly."""
        found = self._index.search(vector, k, threads=1)
        return np.asarray(found.keys, dtype=np.int64), 1.0 - np.asarray(found.distances, dtype=np.float64)

    def search_many(self, vectors: np.ndarray, k: int, *, threads: int = 1) -> np.ndarray:
        """Keys of up to ``k`` nearest for each row, best first; -1 where fewer were found.
        Order only (int8 scores): callers re-score exactly."""
        found = self._index.search(vectors, k, threads=threads)
        keys = np.asarray(found.keys, dtype=np.int64).reshape(len(vectors), -1)
        counts = np.asarray(found.counts if isinstance(found, BatchMatches) else [len(found.keys)]).reshape(-1, 1)
        keys[np.arange(keys.shape[1])[None, :] >= counts] = -1
        return keys

    def unreachable(self, keys: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Those of ``keys`` that a search for their own vector, as broad as a store's search,
        does not return: an island of the graph. HNSW's neighbour pruning can leave a tight
        family of near-copies (identical once quantised to int8) linked only among itself, so
        no walk from the entry point reaches it (measured: 3-8 of 7,244 real SSCD vectors with
        near-copy families, per build; 1-9 of 4,000 synthetic family vectors over six builds,
        whatever M or ef_construction). Callers take them out of the index and scan them exactly."""
        keys = np.asarray(keys, dtype=np.int64)
        if not len(keys):
            return keys
        # As wide as the store's own searches, not narrower: at 1M vectors a check 128 wide took
        # 47,577 rows (4.8%) out of the index, and every search then scanned them exactly (p50
        # 52 ms against 5; docs/benchmarks.md, "Vector search").
        found = self.search_many(vectors, breadth(len(self)), threads=ADD_THREADS)
        return keys[~(found == keys[:, None]).any(axis=1)]

    def save(self, path: Path) -> None:
        """Atomically: a crash or a full disk mid-save leaves the previous file (or none), never
        half of one, and no partial temporary file taking the space. A full disk (or quota)
        raises :class:`~lookalike.errors.StorageFull`."""
        tmp = path.with_suffix(".tmp")
        try:
            self._index.save(str(tmp))  # usearch says only "Failed to serialize" when out of space
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)  # where space is only claimed at write-back (NFS, quotas), it fails here
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if _out_of_space(exc, path.parent, len(self) * (self.dim + 160)):  # int8 vectors + links
                raise StorageFull(f"no space left to save the ANN index {path.name} in {path.parent}") from exc
            raise

    @classmethod
    def load(cls, path: Path, dim: int) -> AnnIndex | None:
        """The saved index, or None when it is missing, unreadable or of another shape."""
        try:
            index = Index.restore(str(path))
        except (ValueError, RuntimeError, OSError):
            return None
        if index is None or index.ndim != dim:
            return None
        # usearch defines this setter apart from its getter, which mypy reads as read-only.
        index.expansion_search = EXPANSION_SEARCH  # type: ignore[misc]
        return cls(dim, index)
