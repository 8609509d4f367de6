"""The embedded store's core: connections, transactions, and each group's in-memory handle.

Concurrency: one writer connection behind a mutex (SQLite allows one writer anyway) and a pool
of reader connections, which WAL lets read while a write is in progress. Each group has a
readers-writer lock over its in-memory rows (:class:`GroupVectors`); a write holds it across its
SQLite commit and the memory update, so a search never sees the two disagree. The layers above:
:mod:`~lookalike.storage.changelog` (other processes' writes), :mod:`~lookalike.storage.merger`
(the HNSW upkeep), :mod:`~lookalike.storage.sqlite` (the store's operations).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike.storage.ann import AnnIndex
from lookalike.storage.memory import GroupVectors
from lookalike.storage.rules import in_namespace, no_such_group
from lookalike.storage.sqlite_tables import (
    EXACT_THRESHOLD,
    SCHEMA,
    SCHEMA_VERSION,
    storage_full,
    tags_load,
)

log = logging.getLogger(__name__)


@dataclass
class GroupWrite:
    """One write to one group: its handle under the write lock, the open transaction and the
    group's gid in it. Memory changes after :meth:`commit`, still under the lock (see
    :meth:`StoreCore._group_write`)."""

    handle: GroupVectors
    conn: sqlite3.Connection
    gid: int
    _transaction: ExitStack = field(repr=False)

    def commit(self) -> None:
        """Commit now (idempotent); a body that never calls it commits when it ends."""
        self._transaction.close()


class StoreCore:
    """Connections and group handles of one data directory; no store operation of its own."""

    def __init__(
        self,
        data_dir: Path,
        *,
        dim: int = 512,
        exact_threshold: int = EXACT_THRESHOLD,
        synchronous: str = "NORMAL",
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ann_dir = self.data_dir / "ann"
        self.ann_dir.mkdir(exist_ok=True)
        self.path = self.data_dir / "gallery.db"
        self.dim = dim
        self.exact_threshold = exact_threshold
        self._synchronous = synchronous.upper()
        self._closed = False
        self._wlock = threading.Lock()
        self._txn_own: list[int] = []
        """Change-log entries the open write transaction claimed (forgotten if it fails)."""
        self._writer = self._connect()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        with self._wlock, self._translated():
            self._writer.executescript(SCHEMA)
            self._check_meta()
        self._watch = self._connect()
        self._watch_lock = threading.Lock()
        self._data_version = -1
        (seen,) = self._watch.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
        self._seen = int(seen)
        """The last change-log entry reflected in memory (groups load their current rows anyway)."""
        self._own: set[int] = set()
        """Log entries this store wrote (and applied) itself: skipped by :meth:`_sync`."""
        self._handles: dict[str, GroupVectors] = {}
        self._handles_lock = threading.Lock()
        self._gids: dict[str, int] = {}
        self._save_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._merger: threading.Thread | None = None
        self._remove_orphan_index_files()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60.0)
        try:
            with self._translated():
                # 8 KiB pages hold three 2 KiB vectors; 4 KiB pages hold one (measured: 2.8 vs 4.2 KB
                # per image on disk, and faster inserts). Only takes effect when the file is created.
                conn.execute("PRAGMA page_size=8192")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self._synchronous}")
                conn.execute("PRAGMA temp_store=MEMORY")
                conn.create_function("in_namespace", 2, in_namespace, deterministic=True)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """A full disk (or quota) raises :class:`~lookalike.errors.StorageFull`, not SQLite's error."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            full = storage_full(exc, self.data_dir)
            if full is None:
                raise
            raise full from exc

    def _check_meta(self) -> None:
        rows = dict(self._writer.execute("SELECT key, value FROM meta").fetchall())
        if not rows:
            self._writer.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                [("schema", str(SCHEMA_VERSION)), ("dim", str(self.dim))],
            )
            return
        if int(rows.get("dim", self.dim)) != self.dim:
            raise ValueError(f"{self.path} holds {rows['dim']}-d vectors, not {self.dim}-d")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A reader connection of the pool (WAL: never blocked by the writer)."""
        if self._closed:
            raise RuntimeError("the store is closed")
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            yield conn
        finally:
            self._readers.put(conn)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: every check inside it sees the state it commits against.

        Callers change memory only after it returns, so a failed write (a full disk: SQLite then
        rolls back by itself, often at COMMIT) leaves memory as it was, like the tables."""
        if self._closed:
            raise RuntimeError("the store is closed")
        with self._wlock, self._translated():
            self._txn_own.clear()
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
                self._writer.execute("COMMIT")
            except BaseException:
                self._abort()
                raise
            finally:
                self._txn_own.clear()

    def _abort(self) -> None:
        """Undo a failed write transaction (the caller holds the writer lock)."""
        # The entries it claimed were never committed: their numbers go to the next commit,
        # maybe another process's, which _sync must then not skip as ours.
        self._own.difference_update(self._txn_own)
        if self._writer.in_transaction:  # SQLITE_FULL and I/O errors may have rolled back already
            try:
                self._writer.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("ROLLBACK failed")

    def _gid(self, conn: sqlite3.Connection, group_id: str) -> int | None:
        row = conn.execute("SELECT gid FROM groups WHERE group_id = ?", (group_id,)).fetchone()
        return None if row is None else int(row[0])

    def _handle(self, group_id: str) -> GroupVectors | None:
        """The group's in-memory handle (rows not loaded yet), or None if there is no such group."""
        with self._handles_lock:
            handle = self._handles.get(group_id)
            if handle is not None:
                return handle
        with self._read() as conn:
            gid = self._gid(conn, group_id)
        if gid is None:
            return None
        with self._handles_lock:
            handle = self._handles.get(group_id)
            if handle is None or self._gids.get(group_id) != gid:
                handle = self._handles[group_id] = GroupVectors(self.dim)
                self._gids[group_id] = gid
            return handle

    def _load(self, group_id: str, handle: GroupVectors) -> None:
        """Read the group's rows into memory (the caller holds the handle's write lock)."""
        if handle.loaded or handle.dead:
            return
        with self._read() as conn:
            gid = self._gid(conn, group_id)
            if gid is None:
                handle.dead = True
                return
            conn.execute("BEGIN")  # one snapshot for the count and the rows (other processes write too)
            try:
                (count,) = conn.execute("SELECT COUNT(*) FROM images WHERE gid = ?", (gid,)).fetchone()
                ids = np.empty(count, dtype=np.int64)
                mat = np.empty((count, self.dim), dtype=np.float32)
                tags: list[dict[str, object]] = []
                cursor = conn.execute(
                    "SELECT i.id, i.tags, v.vec FROM images i JOIN vectors v ON v.image_id = i.id "
                    "WHERE i.gid = ? ORDER BY i.id",
                    (gid,),
                )
                row = 0
                while batch := cursor.fetchmany(4096):
                    m = min(len(batch), count - row)
                    batch = batch[:m]
                    ids[row : row + m] = [b[0] for b in batch]
                    mat[row : row + m] = np.frombuffer(b"".join(b[2] for b in batch), dtype=np.float32).reshape(
                        m, self.dim
                    )
                    tags.extend(tags_load(b[1]) for b in batch)
                    row += m
            finally:
                conn.execute("COMMIT")
        handle.load(ids[:row], mat[:row], tags)
        if row >= self.exact_threshold:
            self._start_ann(gid, handle)
            self._wake.set()

    @contextmanager
    def _reading(self, group_id: str) -> Iterator[GroupVectors | None]:
        """The group's loaded rows under its read lock (None: no such group)."""
        while True:
            handle = self._handle(group_id)
            if handle is None:
                yield None
                return
            if not handle.loaded:
                with handle.lock.write():
                    self._load(group_id, handle)
            with handle.lock.read():
                if handle.dead:
                    self._forget(group_id, handle)
                    continue
                if handle.loaded:
                    yield handle
                    return

    @contextmanager
    def _writing(self, group_id: str, *, load: bool = True) -> Iterator[GroupVectors | None]:
        """The group's handle under its write lock (None: no such group). The lock is held
        across the SQLite commit and the memory update, so searches never see them disagree.
        ``load=False``: a handle not loaded yet stays so (it reads the tables when it loads)."""
        while True:
            handle = self._handle(group_id)
            if handle is None:
                yield None
                return
            with handle.lock.write():
                if load:
                    self._load(group_id, handle)  # memory follows every write from the first one on
                if handle.dead:  # deleted (and maybe re-created) since we looked it up
                    self._forget(group_id, handle)
                    continue
                yield handle
                return

    @contextmanager
    def _group_write(self, group_id: str, *, load: bool = True) -> Iterator[GroupWrite]:
        """A write to an existing group (else :func:`~lookalike.storage.rules.no_such_group`):
        see :meth:`_group_write_if_any`."""
        with self._group_write_if_any(group_id, load=load) as write:
            if write is None:
                raise no_such_group(group_id)
            yield write

    @contextmanager
    def _group_write_if_any(self, group_id: str, *, load: bool = True) -> Iterator[GroupWrite | None]:
        """Every write to a group's pictures, in one order: the group's write lock
        (:meth:`_writing`), then one transaction (:meth:`_write`) in which the group still exists.
        None when there is no such group, either before the lock or inside the transaction (it
        was deleted meanwhile, maybe by another process).

        The body writes its rows, calls :meth:`GroupWrite.commit`, then changes memory, still
        under the lock: a search never sees the tables and memory disagree, and a failed commit
        (an exception from ``commit``, or from the body: both roll back) leaves memory as it was."""
        with self._writing(group_id, load=load) as handle:
            if handle is None:
                yield None
                return
            with ExitStack() as transaction:
                conn = transaction.enter_context(self._write())
                gid = self._gid(conn, group_id)
                yield None if gid is None else GroupWrite(handle, conn, gid, transaction)

    def _bury(self, group_id: str, handle: GroupVectors) -> None:
        """The group was deleted (here or by another process): its handle is dead, holds nothing,
        and is no longer the group's (the caller holds its write lock; a waiter finds it dead)."""
        handle.dead = True
        handle.loaded = False
        handle.ann = None
        self._forget(group_id, handle)

    def _forget(self, group_id: str, handle: GroupVectors) -> None:
        with self._handles_lock:
            if self._handles.get(group_id) is handle:
                del self._handles[group_id]
                self._gids.pop(group_id, None)

    def _ann_path(self, gid: int) -> Path:
        return self.ann_dir / f"g{gid}.usearch"

    def _swept_path(self, gid: int) -> Path:
        """Present only beside an index file saved right after a full reachability sweep."""
        return self.ann_dir / f"g{gid}.swept"

    def _stranded_path(self, gid: int) -> Path:
        """The ids the saved index could not reach (kept out of it), saved with it: re-adding
        them at the next start re-pruned their near-copies' links and stranded others (49 of
        100k pictures lost after a restart; docs/benchmarks.md, "No unreachable picture")."""
        return self.ann_dir / f"g{gid}.stranded.npy"

    def _unlink_index(self, gid: int) -> None:
        self._swept_path(gid).unlink(missing_ok=True)
        self._stranded_path(gid).unlink(missing_ok=True)
        self._ann_path(gid).unlink(missing_ok=True)

    def _start_ann(self, gid: int | None, handle: GroupVectors) -> None:
        """The group's saved index (reconciled), or a new one (the caller holds the write lock)."""
        loaded = AnnIndex.load(self._ann_path(gid), self.dim) if gid is not None else None
        swept = loaded is not None and gid is not None and self._swept_path(gid).exists()
        stranded = np.empty(0, dtype=np.int64)
        if loaded is not None and gid is not None:
            try:
                stranded = np.load(self._stranded_path(gid)).astype(np.int64)
            except (OSError, ValueError):  # none saved (or unreadable): those rows are checked again
                pass
        handle.start_ann(loaded or AnnIndex(self.dim), swept=swept, stranded=stranded)

    def _remove_orphan_index_files(self) -> None:
        with self._read() as conn:
            live = {int(g) for (g,) in conn.execute("SELECT gid FROM groups")}
        for path in self.ann_dir.glob("g*.*"):
            stem = path.name.split(".")[0][1:]
            if not stem.isdigit() or int(stem) not in live or path.suffix == ".tmp":
                path.unlink(missing_ok=True)
