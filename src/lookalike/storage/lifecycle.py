"""The life of a group's HNSW index, as named states the merger acts on.

A group starts EXACT (searched by one matrix product). At ``exact_threshold`` rows it needs an
index (BUILD: a saved file is loaded and reconciled, else a new one starts); rows added since,
and rows deleted, are MERGE work, done a chunk at a time outside the group lock. A caught-up
index is swept for unreachable rows (SWEEP, see :meth:`AnnIndex.unreachable`) once it has grown
by 1/``SWEEP_SHARE`` since the last sweep; after much work it is saved (SAVE) so that the next
start need not rebuild it. Shrunk under half the threshold, the index is dropped (DROP).

The state is computed from the handle's fields each time (never stored), so it cannot drift
from them. Read it under the group lock: the merger changes several fields at once under the
write lock (attaching an index sets it before its pending rows), and a reader without the lock
can see an index with nothing pending in between and take it for a finished one.
"""

from __future__ import annotations

from enum import Enum

from lookalike.storage.memory import GroupVectors


class AnnState(Enum):
    IDLE = "idle"
    """Nothing to do: exact and small, or an index that is caught up, swept and saved enough."""
    BUILD = "build"
    DROP = "drop"
    MERGE = "merge"
    SWEEP = "sweep"
    SAVE = "save"


def ann_state(handle: GroupVectors, exact_threshold: int) -> AnnState:
    """What the merger should do next for ``handle``'s index."""
    if not handle.loaded or handle.dead:
        return AnnState.IDLE
    ann = handle.ann
    if ann is None:
        return AnnState.BUILD if handle.n >= exact_threshold else AnnState.IDLE
    if handle.n < exact_threshold // 2:
        return AnnState.DROP
    if handle.merging or handle.pending or handle.removed:  # merging: a chunk is in flight
        return AnnState.MERGE
    if handle.wants_sweep():
        return AnnState.SWEEP
    if handle.dirty and handle.added_since_save >= max(exact_threshold, len(ann) // 4):
        return AnnState.SAVE
    return AnnState.IDLE
