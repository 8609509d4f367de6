"""The Milvus backend's session consistency: read-your-writes without a time tick per read.

A collection this process wrote to in the last :data:`SESSION_S` seconds is read at Milvus'
*Strong* level; other reads run at *Bounded* staleness. The constraint checks read at Bounded
staleness merged with :class:`RecentWrites`, this process's own writes of the last
:data:`RECENT_S` seconds, so an ingest does not wait for a tick per picture.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from lookalike.storage.base import ImageRecord

SESSION_S = 10.0
"""After writing to a collection, this process reads it at Strong level for this long: more
than Milvus' Bounded staleness (``common.gracefulTime``, 5 s by default)."""
RECENT_S = 60.0
"""How long this process remembers its own writes for its constraint checks: far longer than
Milvus' Bounded staleness (5 s by default), so a check always sees them one way or the other."""


class RecentWrites:
    """This process's own writes of the last :data:`RECENT_S` seconds: key -> record or None
    (deleted). Merged into Bounded-staleness reads, they give read-your-writes without waiting."""

    def __init__(self) -> None:
        self._items: OrderedDict[int, tuple[float, str, ImageRecord | None]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: int, group_id: str, record: ImageRecord | None) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (time.monotonic(), group_id, record)
            self._expire()

    def _expire(self) -> None:
        cutoff = time.monotonic() - RECENT_S
        while self._items:
            key, (stamp, _, _) = next(iter(self._items.items()))
            if stamp >= cutoff:
                break
            self._items.popitem(last=False)

    def of_group(self, group_id: str) -> dict[int, ImageRecord | None]:
        with self._lock:
            self._expire()
            return {k: rec for k, (_, g, rec) in self._items.items() if g == group_id}

    def forget_group(self, group_id: str) -> None:
        with self._lock:
            for key in [k for k, (_, g, _) in self._items.items() if g == group_id]:
                del self._items[key]
