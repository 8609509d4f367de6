"""Other processes' writes: the ``changes`` log, written with every write and applied before searches.

Several processes may share a data directory (the CLI beside a running server): every write
also appends to ``changes`` in the same transaction, and before each search a store applies the
entries it has not seen (``PRAGMA data_version`` tells it cheaply whether there are any),
re-reading each touched image's current row, so the order of application never matters. The
log is read and applied under one lock, so no search starts between the two (issue 18's race).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable

import numpy as np

from lookalike.storage.memory import GroupVectors
from lookalike.storage.sqlite_core import StoreCore
from lookalike.storage.sqlite_tables import CHANGES_KEPT, in_batches, tags_load

log = logging.getLogger(__name__)


class ChangeLog(StoreCore):
    """Writes the log entries of this store's writes and applies everyone else's."""

    def _claim(self, seqs: Iterable[int]) -> None:
        """Change-log entries written by the open transaction: this store applies them itself."""
        seqs = list(seqs)
        self._txn_own.extend(seqs)
        self._own.update(seqs)

    def _log(self, conn: sqlite3.Connection, gid: int, op: str, ids: list[int]) -> None:
        """Log ``op`` ('add', 'tags', 'del') of the pictures ``ids`` in the open transaction."""
        conn.executemany("INSERT INTO changes (gid, op, image_id) VALUES (?, ?, ?)", [(gid, op, i) for i in ids])
        (last,) = conn.execute("SELECT last_insert_rowid()").fetchone()
        self._claim(range(int(last) - len(ids) + 1, int(last) + 1))

    def _sync(self) -> None:
        """Bring memory up to date with writes committed by other connections (other processes,
        or another store on the same directory). A few microseconds when there are none.

        The log is read *and applied* under ``_watch_lock``: a concurrent caller that finds the
        data version already taken waits until memory reflects it, instead of returning early
        and searching rows that do not hold those changes yet (the race of issue 18)."""
        if self._closed:
            return
        with self._watch_lock:
            (version,) = self._watch.execute("PRAGMA data_version").fetchone()
            if version == self._data_version:
                return
            seen = self._seen
            rows = self._watch.execute(
                "SELECT seq, gid, op, image_id FROM changes WHERE seq > ? ORDER BY seq", (seen,)
            ).fetchall()
            (oldest,) = self._watch.execute("SELECT COALESCE(MIN(seq), 0) FROM changes").fetchone()
            self._apply_changes(rows, trimmed=oldest > seen + 1)
            # Only once applied: a failure leaves the version untaken, so the next caller retries.
            self._data_version = version
            if rows:
                self._seen = int(rows[-1][0])

    def _apply_changes(self, rows: list[tuple[int, int, str, int | None]], *, trimmed: bool) -> None:
        """Make memory reflect change-log ``rows`` (the caller holds ``_watch_lock``). ``trimmed``:
        entries this store never saw are gone from the log, so its groups reload from the tables."""
        with self._handles_lock:
            by_gid = {self._gids[g]: (g, h) for g, h in self._handles.items() if g in self._gids}
        if trimmed:
            for _group_id, handle in by_gid.values():
                with handle.lock.write():
                    handle.loaded = False
                    handle.ann = None
            return
        touched: dict[int, set[int]] = {}
        dropped: set[int] = set()
        own = self._own
        for seq, gid, op, image_id in rows:
            if seq in own:
                own.discard(seq)
                continue
            if op == "drop":
                dropped.add(gid)
            elif image_id is not None:
                touched.setdefault(gid, set()).add(int(image_id))
        for gid in dropped:
            if gid in by_gid:
                group_id, handle = by_gid[gid]
                with handle.lock.write():
                    self._bury(group_id, handle)
        for gid, ids in touched.items():
            if gid in by_gid and gid not in dropped:
                self._refresh(*by_gid[gid], sorted(ids))

    def _refresh(self, group_id: str, handle: GroupVectors, ids: list[int]) -> None:
        """Make the rows of ``ids`` match the tables (added, re-tagged or gone): idempotent."""
        with handle.lock.write():
            if not handle.loaded or handle.dead:
                return  # it reads the tables when it loads
            current: dict[int, tuple[str, bytes]] = {}
            with self._read() as conn:
                for chunk, marks in in_batches(ids):
                    for image_id, tag_text, blob in conn.execute(
                        f"SELECT i.id, i.tags, v.vec FROM images i JOIN vectors v ON v.image_id = i.id "
                        f"WHERE i.id IN ({marks})",
                        chunk,
                    ):
                        current[int(image_id)] = (tag_text, blob)
            for image_id in ids:
                row = current.get(image_id)
                if row is None:
                    handle.remove(image_id)
                elif image_id in handle.pos:
                    handle.set_tags(image_id, tags_load(row[0]))
                else:
                    handle.add(image_id, np.frombuffer(row[1], dtype=np.float32).copy(), tags_load(row[0]))
        self._wake.set()

    def _trim_changes(self) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - ?", (CHANGES_KEPT,))
