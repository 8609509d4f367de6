"""The background HNSW upkeep ("the merger"): one thread acting on each group's :class:`AnnState`.

It adds new vectors to a group's index in small chunks (outside the group lock: searches go on),
removes deleted ones, checks that every added row is reachable from its own vector (an island
row stays in the exact scan, :meth:`AnnIndex.unreachable`), sweeps the whole index again once it
has doubled, and saves the index file after much work so that the next start need not rebuild.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from lookalike import errors
from lookalike.storage.ann import ADD_CHUNK, SWEEP_CHUNK, save_ids
from lookalike.storage.changelog import ChangeLog
from lookalike.storage.lifecycle import AnnState, ann_state
from lookalike.storage.memory import GroupVectors

log = logging.getLogger(__name__)

_SETTLED = (AnnState.IDLE, AnnState.SAVE)
"""States in which :meth:`SqliteStore.wait_for_index` has nothing left to wait for."""


class IndexMerger(ChangeLog):
    """The index upkeep of every loaded group, in a thread of its own or on demand."""

    def _merge_step(self) -> bool:
        """One chunk of index upkeep for each group that needs it; True if anything was done."""
        did = False
        with self._handles_lock:
            groups = list(self._handles.items())
        for group_id, handle in groups:
            if self._stop.is_set():
                break
            state = ann_state(handle, self.exact_threshold)
            if state is AnnState.SAVE:
                self._save(group_id, handle)  # caught up after much work: spare the next start a rebuild
            elif state is AnnState.SWEEP:
                did = self._sweep_step(handle) or did
            elif state is not AnnState.IDLE:
                did = self._merge_chunk(group_id, handle) or did
        return did

    def _merge_chunk(self, group_id: str, handle: GroupVectors) -> bool:
        """Build, drop, or add/remove one chunk of ``handle``'s index (states BUILD, DROP, MERGE)."""
        with handle.lock.write():
            state = ann_state(handle, self.exact_threshold)  # again, under the lock
            gid = self._gids.get(group_id)
            if state is AnnState.BUILD:
                self._start_ann(gid, handle)
            elif state is AnnState.DROP:
                handle.drop_ann()  # small again: exact is faster and the index costs memory
                if gid is not None:
                    self._unlink_index(gid)
                return True
            elif state is not AnnState.MERGE:
                return False
            ann = handle.ann
            if ann is None:
                return False
            ids, vecs, removed = handle.take_work(ADD_CHUNK)
            if not len(ids) and not len(removed):
                return False
            handle.merging = True
        done = False
        lost = np.empty(0, dtype=np.int64)
        try:
            ann.remove(removed)
            ann.add(ids, vecs)  # outside the group lock: searches go on meanwhile
            lost = ann.unreachable(ids, vecs)  # the rows stay pending (scanned exactly) until marked
            ann.remove(lost)
            done = True
        finally:
            with handle.lock.write():
                handle.merging = False
                if handle.ann is ann:
                    handle.dirty = True
                    if done:
                        handle.mark_indexed(ids, lost)
                    else:  # try again later; meanwhile the rows stay in the exact scan
                        handle.pending.extendleft(reversed(ids.tolist()))
                        handle.removed.extend(removed.tolist())
        return True

    def _sweep_step(self, handle: GroupVectors) -> bool:
        """Check one chunk of indexed rows for reachability; strand the unreachable ones."""
        with handle.lock.write():
            ann = handle.ann
            if ann is None or not handle.wants_sweep():
                return False
            ids, vecs = handle.take_sweep(SWEEP_CHUNK)
        lost = ann.unreachable(ids, vecs)  # read-only on the graph: outside the lock
        if len(lost):
            with handle.lock.write():
                if handle.ann is ann:
                    ann.remove(handle.strand(lost))
                    handle.dirty = True
            log.info("%d picture(s) unreachable in an HNSW index: searched exactly from now on", len(lost))
        return True

    def _merge_loop(self) -> None:
        last_trim = time.monotonic()
        while not self._stop.is_set():
            try:
                self._sync()  # so that other processes' adds get indexed without waiting for a search
                if time.monotonic() - last_trim > 600:
                    last_trim = time.monotonic()
                    self._trim_changes()
                did = self._merge_step()
            except Exception:  # noqa: BLE001 - the index is derived; never kill the upkeep thread
                log.exception("ANN index upkeep failed; retrying (searches stay exact meanwhile)")
                did = False
                time.sleep(1.0)
            if not did:
                with self._idle:
                    self._idle.notify_all()
                self._wake.wait(1.0)
                self._wake.clear()

    def wait_for_index(self, timeout: float | None = None, *, sweep: bool = False) -> bool:
        """Block until every loaded group's index has caught up (benchmarks, tests). Without a
        background merger, does the upkeep in the calling thread. ``sweep``: also check every
        indexed row that was not checked since the index last grew (a settled state)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._sync()
        if sweep:
            with self._handles_lock:
                for handle in self._handles.values():
                    handle.sweep_requested = True
        while True:
            if self._merger is None:
                if not self._merge_step():
                    return True
                continue
            with self._handles_lock:
                handles = list(self._handles.values())
            if all(self._settled(handle) for handle in handles):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._wake.set()
            with self._idle:
                self._idle.wait(0.05)

    def _settled(self, handle: GroupVectors) -> bool:
        """Whether ``handle``'s index has nothing left to do, read under its lock (see
        :mod:`~lookalike.storage.lifecycle`: without it a half-attached index looks finished)."""
        with handle.lock.read():
            return ann_state(handle, self.exact_threshold) in _SETTLED

    def _save(self, group_id: str, handle: GroupVectors) -> None:
        """Save ``handle``'s index if it changed; one save at a time, so that a caller of
        :meth:`save_indexes` returns after a save the merger had begun, not before its file exists."""
        with self._save_lock:
            self._save_locked(group_id, handle)

    def _save_locked(self, group_id: str, handle: GroupVectors) -> None:
        gid = self._gids.get(group_id)
        ann = handle.ann
        if ann is None or gid is None or handle.dead or not handle.dirty:
            return
        handle.added_since_save = 0
        handle.dirty = False
        swept = handle.unswept == 0 and not handle.sweep_queue
        stranded = np.fromiter(handle.stranded, dtype=np.int64, count=len(handle.stranded))
        try:
            self._swept_path(gid).unlink(missing_ok=True)  # the markers never outlive their file
            self._stranded_path(gid).unlink(missing_ok=True)
            ann.save(self._ann_path(gid))
            save_ids(self._stranded_path(gid), stranded)
            if swept:
                self._swept_path(gid).touch()
        except errors.StorageFull as exc:  # the previous file (or none) is left as it was
            handle.dirty = True  # close() tries again
            log.warning("did not save the ANN index of group %r: %s", group_id, exc.message)
        except (OSError, RuntimeError):  # an optimisation only: the next start rebuilds instead
            handle.dirty = True
            log.exception("could not save the ANN index of group %r", group_id)

    def save_indexes(self) -> None:
        """Write each changed HNSW index next to the database (an optimisation for the next
        start: without the file the index is rebuilt in the background). Called by close()."""
        with self._handles_lock:
            groups = list(self._handles.items())
        for group_id, handle in groups:
            self._save(group_id, handle)
