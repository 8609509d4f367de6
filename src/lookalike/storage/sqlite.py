"""The embedded store: SQLite (the source of truth) plus derived in-memory search structures.

Layout of ``data_dir``: ``gallery.db`` (groups, images, vectors, thumbnails; WAL mode) and
``ann/g<N>.usearch`` (saved HNSW indexes, an optimisation only: reconciled on load, rebuilt
when missing or unreadable).

Durability: ``synchronous=NORMAL`` in WAL mode. A commit has written its WAL frames to the
operating system when ``COMMIT`` returns, so an acknowledged write survives the process being
killed (kill -9, a crash); only an operating-system crash or power loss can roll back the
last transactions. ``synchronous="FULL"`` (an fsync per commit) closes that gap as well, at
the cost of one disk flush per added image.

Several processes may share a data directory (the CLI beside a running server): every write
also appends to a ``changes`` log in the same transaction, and before each search a store
applies the entries it has not seen (``PRAGMA data_version`` tells it cheaply whether there are
any), re-reading each touched image's current row, so the order of application never matters.

Concurrency: one writer connection behind a mutex (SQLite allows one writer anyway) and a
pool of reader connections, which WAL lets read while a write is in progress. Each group has
a readers-writer lock over its in-memory rows; a write holds it across its SQLite commit and
the memory update, so a search never sees the two disagree. A background thread (the
"merger") adds new vectors to a group's HNSW index in small chunks and removes deleted ones.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lookalike import errors
from lookalike.storage.ann import ADD_CHUNK, SWEEP_CHUNK, AnnIndex
from lookalike.storage.base import GroupRecord, Hit, ImageRecord, unit_vector
from lookalike.storage.filters import Expr
from lookalike.storage.lifecycle import AnnState, ann_state
from lookalike.storage.memory import GroupVectors
from lookalike.storage.rules import check_new_picture, group_exists, in_namespace, no_such_group, stamps

log = logging.getLogger(__name__)

EXACT_THRESHOLD = 10_000
"""Groups with fewer vectors are searched exactly (no HNSW index is built for them). Measured
crossover and reasoning: docs/benchmarks.md, "Vector search"."""

SCHEMA_VERSION = 1
CHANGES_KEPT = 200_000
"""Log entries kept for other processes; one that fell further behind reloads its groups."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS groups (
    gid INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id TEXT NOT NULL UNIQUE,
    group_name TEXT NOT NULL,
    brief TEXT NOT NULL,
    max_capacity INTEGER NOT NULL,
    max_qps INTEGER NOT NULL,
    group_type INTEGER NOT NULL,
    model TEXT NOT NULL,
    pic_count INTEGER NOT NULL DEFAULT 0,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    gid INTEGER NOT NULL,
    entity_id TEXT NOT NULL,
    pic_name TEXT NOT NULL,
    custom_content TEXT NOT NULL,
    tags TEXT NOT NULL,
    rect TEXT,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    UNIQUE (gid, pic_name)
);
CREATE INDEX IF NOT EXISTS images_entity ON images (gid, entity_id);
CREATE TABLE IF NOT EXISTS vectors (image_id INTEGER PRIMARY KEY, vec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS thumbnails (image_id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS features (image_id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    gid INTEGER NOT NULL,
    op TEXT NOT NULL,
    image_id INTEGER
);
"""
# AUTOINCREMENT: ids are never reused, so an id in a saved ANN file can never name a newer
# image (reconciliation by id set is then complete).

_SETTLED = (AnnState.IDLE, AnnState.SAVE)
"""States in which :meth:`SqliteStore.wait_for_index` has nothing left to wait for."""

_IMAGE_COLUMNS = "id, entity_id, pic_name, custom_content, tags, rect, create_time, update_time"
_GROUP_COLUMNS = (
    "group_id, group_name, brief, max_capacity, max_qps, group_type, model, pic_count, create_time, update_time"
)
_EMPTY_TAGS: dict[str, object] = {}

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_LOW_SPACE = 1 << 20
"""Free bytes below which an I/O error of SQLite's is taken for a full disk: SQLite reports
ENOSPC as SQLITE_FULL where it writes pages, but as SQLITE_IOERR_SHMSIZE (or another I/O
error) where it grows the WAL index, and it keeps no errno we could read."""


def storage_full(exc: BaseException, data_dir: Path) -> errors.StorageFull | None:
    """The :class:`~lookalike.errors.StorageFull` that ``exc`` means, or None if it is another
    failure: SQLite's "database or disk is full", ENOSPC / EDQUOT, or an I/O error of SQLite's
    while the data directory's file system has (almost) no space left."""
    if isinstance(exc, errors.StorageFull):
        return exc
    full = False
    if isinstance(exc, OSError):
        full = exc.errno in _FULL_ERRNOS
    elif isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
            full = True
        elif code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
            try:
                st = os.statvfs(data_dir)
                full = st.f_bavail * st.f_frsize < _LOW_SPACE
            except OSError:
                full = False
    if not full:
        return None
    return errors.StorageFull(
        f"the data directory {data_dir} is out of space (or over its quota), so nothing was written; "
        "reads and searches still work. Free some space and retry."
    )


def _tags_json(tags: dict[str, object]) -> str:
    return json.dumps(tags, ensure_ascii=False, separators=(",", ":"))


def _tags_load(text: str) -> dict[str, object]:
    return _EMPTY_TAGS if text == "{}" else json.loads(text)


_INSERT_IMAGE = (
    "INSERT INTO images (gid, entity_id, pic_name, custom_content, tags, rect, create_time, update_time) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _image_row(gid: int, image: ImageRecord, now: float) -> tuple[object, ...]:
    """The ``images`` row of a new picture; a record without times gets ``now``."""
    return (
        gid,
        image.entity_id,
        image.pic_name,
        image.custom_content,
        _tags_json(image.tags),
        None if image.rect is None else json.dumps(list(image.rect)),
        *stamps(image.create_time, image.update_time, now),
    )


def _group(row: Sequence[object]) -> GroupRecord:
    return GroupRecord(*row)  # type: ignore[arg-type]


def _image(group_id: str, row: Sequence[object]) -> ImageRecord:
    _, entity, pic, content, tags, rect, created, updated = row
    return ImageRecord(
        group_id=group_id,
        entity_id=entity,  # type: ignore[arg-type]
        pic_name=pic,  # type: ignore[arg-type]
        custom_content=content,  # type: ignore[arg-type]
        tags=dict(json.loads(tags)),  # type: ignore[arg-type]
        rect=None if rect is None else tuple(json.loads(rect)),  # type: ignore[arg-type]
        create_time=created,  # type: ignore[arg-type]
        update_time=updated,  # type: ignore[arg-type]
    )


class SqliteStore:
    """The :class:`~lookalike.storage.base.Store` of one data directory. Thread-safe."""

    def __init__(
        self,
        data_dir: Path,
        *,
        dim: int = 512,
        exact_threshold: int = EXACT_THRESHOLD,
        synchronous: str = "NORMAL",
        background: bool = True,
    ) -> None:
        """``background=False`` leaves index upkeep to explicit :meth:`wait_for_index` calls (tests)."""
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
            self._writer.executescript(_SCHEMA)
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
        if background:
            self._merger = threading.Thread(target=self._merge_loop, name="lookalike-ann-merger", daemon=True)
            self._merger.start()

    # ------------------------------------------------------------------ connections

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

    def _claim(self, seqs: Iterable[int]) -> None:
        """Change-log entries written by the open transaction: this store applies them itself."""
        seqs = list(seqs)
        self._txn_own.extend(seqs)
        self._own.update(seqs)

    # ------------------------------------------------------------------ group handles

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
                    tags.extend(_tags_load(b[1]) for b in batch)
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

    def _unlink_index(self, gid: int) -> None:
        self._swept_path(gid).unlink(missing_ok=True)
        self._ann_path(gid).unlink(missing_ok=True)

    def _start_ann(self, gid: int | None, handle: GroupVectors) -> None:
        """The group's saved index (reconciled), or a new one (the caller holds the write lock)."""
        loaded = AnnIndex.load(self._ann_path(gid), self.dim) if gid is not None else None
        swept = loaded is not None and gid is not None and self._swept_path(gid).exists()
        handle.start_ann(loaded or AnnIndex(self.dim), swept=swept)

    def _remove_orphan_index_files(self) -> None:
        with self._read() as conn:
            live = {int(g) for (g,) in conn.execute("SELECT gid FROM groups")}
        for path in self.ann_dir.glob("g*.*"):
            stem = path.name.split(".")[0][1:]
            if not stem.isdigit() or int(stem) not in live or path.suffix == ".tmp":
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ groups

    def create_group(self, group: GroupRecord) -> None:
        now = time.time()
        with self._write() as conn:
            if self._gid(conn, group.group_id) is not None:
                raise group_exists(group.group_id)
            conn.execute(
                f"INSERT INTO groups ({_GROUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (
                    group.group_id,
                    group.group_name,
                    group.brief,
                    int(group.max_capacity),
                    int(group.max_qps),
                    int(group.group_type),
                    group.model,
                    *stamps(group.create_time, group.update_time, now),
                ),
            )

    def get_group(self, group_id: str, *, count: bool = True) -> GroupRecord | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {_GROUP_COLUMNS} FROM groups WHERE group_id = ?", (group_id,)).fetchone()
        return None if row is None else _group(row)

    def list_groups(self, offset: int, limit: int, *, namespace: str | None = "") -> tuple[list[GroupRecord], int]:
        where = "in_namespace(group_id, ?)"  # the one Python rule, registered with each connection
        args: tuple[object, ...] = (namespace,)
        with self._read() as conn:
            conn.execute("BEGIN")  # one snapshot for the page and the total
            try:
                rows = conn.execute(
                    f"SELECT {_GROUP_COLUMNS} FROM groups WHERE {where} ORDER BY gid LIMIT ? OFFSET ?",
                    (*args, max(limit, 0), max(offset, 0)),
                ).fetchall()
                (total,) = conn.execute(f"SELECT COUNT(*) FROM groups WHERE {where}", args).fetchone()
            finally:
                conn.execute("COMMIT")
        return [_group(r) for r in rows], int(total)

    def delete_group(self, group_id: str) -> None:
        with self._writing(group_id) as handle:
            if handle is None:
                raise no_such_group(group_id)
            with self._write() as conn:
                gid = self._gid(conn, group_id)
                if gid is None:
                    raise no_such_group(group_id)
                sub = "SELECT id FROM images WHERE gid = ?"
                conn.execute(f"DELETE FROM thumbnails WHERE image_id IN ({sub})", (gid,))
                conn.execute(f"DELETE FROM features WHERE image_id IN ({sub})", (gid,))
                conn.execute(f"DELETE FROM vectors WHERE image_id IN ({sub})", (gid,))
                conn.execute("DELETE FROM images WHERE gid = ?", (gid,))
                conn.execute("DELETE FROM groups WHERE gid = ?", (gid,))
                cursor = conn.execute("INSERT INTO changes (gid, op) VALUES (?, 'drop')", (gid,))
                self._claim([int(cursor.lastrowid)])  # type: ignore[arg-type]
            handle.dead = True
            handle.loaded = False
            handle.ann = None
            self._forget(group_id, handle)
            self._unlink_index(gid)

    # ------------------------------------------------------------------ images

    def add_image(
        self,
        image: ImageRecord,
        vector: np.ndarray,
        *,
        max_per_entity: int,
        thumbnail: bytes | None = None,
        features: bytes | None = None,
    ) -> None:
        vec = unit_vector(vector, self.dim)
        now = time.time()
        tags = dict(image.tags)
        with self._writing(image.group_id) as handle:
            if handle is None:
                raise no_such_group(image.group_id)
            with self._write() as conn:
                row = conn.execute(
                    "SELECT gid, max_capacity, pic_count, "
                    "EXISTS (SELECT 1 FROM images WHERE gid = g.gid AND pic_name = ?), "
                    "(SELECT COUNT(*) FROM images WHERE gid = g.gid AND entity_id = ?) "
                    "FROM groups g WHERE group_id = ?",
                    (image.pic_name, image.entity_id, image.group_id),
                ).fetchone()
                if row is None:
                    raise no_such_group(image.group_id)
                gid, capacity, count, taken, per_entity = row
                check_new_picture(
                    image.group_id,
                    image.pic_name,
                    image.entity_id,
                    name_taken=bool(taken),
                    entity_count=per_entity,
                    max_per_entity=max_per_entity,
                    group_count=count,
                    capacity=capacity,
                )
                cursor = conn.execute(_INSERT_IMAGE, _image_row(gid, image, now))
                image_id = int(cursor.lastrowid)  # type: ignore[arg-type]
                conn.execute("INSERT INTO vectors (image_id, vec) VALUES (?, ?)", (image_id, vec.tobytes()))
                if thumbnail is not None:
                    conn.execute("INSERT INTO thumbnails (image_id, data) VALUES (?, ?)", (image_id, thumbnail))
                if features is not None:
                    conn.execute("INSERT INTO features (image_id, data) VALUES (?, ?)", (image_id, features))
                conn.execute("UPDATE groups SET pic_count = pic_count + 1 WHERE gid = ?", (gid,))
                cursor = conn.execute("INSERT INTO changes (gid, op, image_id) VALUES (?, 'add', ?)", (gid, image_id))
                self._claim([int(cursor.lastrowid)])  # type: ignore[arg-type]
            if handle.loaded:
                handle.add(image_id, vec, tags)
                if handle.ann is not None or handle.n >= self.exact_threshold:
                    self._wake.set()

    def import_images(self, rows: Sequence[tuple[ImageRecord, np.ndarray, bytes | None]]) -> int:
        """Bulk insert for migrations: one transaction per group, no entity or capacity checks.
        Names already in the group (or repeated in ``rows``) are skipped, so a re-run resumes.
        Keeps the records' times. Returns the number stored."""
        now = time.time()
        by_group: dict[str, list[tuple[ImageRecord, np.ndarray, bytes | None]]] = {}
        for record, vector, thumb in rows:  # validate every vector before writing anything
            by_group.setdefault(record.group_id, []).append((record, unit_vector(vector, self.dim), thumb))
        stored = 0
        for group_id, items in by_group.items():
            with self._writing(group_id, load=False) as handle:
                if handle is None:
                    raise no_such_group(group_id)
                with self._write() as conn:
                    gid = self._gid(conn, group_id)
                    if gid is None:
                        raise no_such_group(group_id)
                    names = list({r.pic_name for r, _, _ in items})
                    taken: set[str] = set()
                    for start in range(0, len(names), 500):
                        chunk = names[start : start + 500]
                        marks = ",".join("?" * len(chunk))
                        taken.update(
                            n for (n,) in conn.execute(
                                f"SELECT pic_name FROM images WHERE gid = ? AND pic_name IN ({marks})", (gid, *chunk)
                            )
                        )
                    new = []
                    for item in items:
                        if item[0].pic_name not in taken:
                            taken.add(item[0].pic_name)
                            new.append(item)
                    if not new:
                        continue
                    conn.executemany(_INSERT_IMAGE, [_image_row(gid, r, now) for r, _, _ in new])
                    # One writer inside one transaction: AUTOINCREMENT gave consecutive ids.
                    (last,) = conn.execute("SELECT last_insert_rowid()").fetchone()
                    ids = list(range(int(last) - len(new) + 1, int(last) + 1))
                    conn.executemany(
                        "INSERT INTO vectors (image_id, vec) VALUES (?, ?)",
                        [(i, vec.tobytes()) for i, (_, vec, _) in zip(ids, new, strict=True)],
                    )
                    conn.executemany(
                        "INSERT INTO thumbnails (image_id, data) VALUES (?, ?)",
                        [(i, thumb) for i, (_, _, thumb) in zip(ids, new, strict=True) if thumb is not None],
                    )
                    conn.execute("UPDATE groups SET pic_count = pic_count + ? WHERE gid = ?", (len(new), gid))
                    self._log(conn, group_id, "add", ids)
                if handle.loaded:
                    for i, (record, vec, _) in zip(ids, new, strict=True):
                        handle.add(i, vec, dict(record.tags))
                    if handle.ann is not None or handle.n >= self.exact_threshold:
                        self._wake.set()
                stored += len(new)
        return stored

    def iter_group(
        self, group_id: str, *, batch: int = 1000, thumbnails: bool = True
    ) -> Iterator[list[tuple[ImageRecord, np.ndarray, bytes | None]]]:
        """Oldest first, a short read per batch (no snapshot held between them): pictures added
        meanwhile may or may not appear, deleted ones may still appear in an earlier batch."""
        with self._read() as conn:
            gid = self._gid(conn, group_id)
        if gid is None:
            return
        columns = ", ".join(f"i.{c}" for c in _IMAGE_COLUMNS.split(", "))
        last = 0
        while True:
            with self._read() as conn:
                thumb, join = ("t.data", "LEFT JOIN thumbnails t ON t.image_id = i.id ") if thumbnails else ("NULL", "")
                rows = conn.execute(
                    f"SELECT {columns}, v.vec, {thumb} FROM images i JOIN vectors v ON v.image_id = i.id "
                    f"{join}WHERE i.gid = ? AND i.id > ? ORDER BY i.id LIMIT ?",
                    (gid, last, max(1, batch)),
                ).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            yield [
                (
                    _image(group_id, row[:-2]),
                    np.frombuffer(row[-2], dtype=np.float32).copy(),
                    None if row[-1] is None else bytes(row[-1]),
                )
                for row in rows
            ]

    def _where(self, group_id: str, entity_id: str, pic_name: str | None) -> tuple[str, tuple[object, ...]]:
        sql = "gid = (SELECT gid FROM groups WHERE group_id = ?) AND entity_id = ?"
        args: tuple[object, ...] = (group_id, entity_id)
        if pic_name is not None:
            sql += " AND pic_name = ?"
            args += (pic_name,)
        return sql, args

    def get_images(self, group_id: str, entity_id: str, pic_name: str | None = None) -> list[ImageRecord]:
        where, args = self._where(group_id, entity_id, pic_name)
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE {where} ORDER BY id", args).fetchall()
        return [_image(group_id, r) for r in rows]

    def get_image(self, group_id: str, pic_name: str) -> ImageRecord | None:
        """The picture called ``pic_name`` (unique in its group), whatever its entity."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE gid = (SELECT gid FROM groups WHERE group_id = ?) "
                "AND pic_name = ?",
                (group_id, pic_name),
            ).fetchone()
        return None if row is None else _image(group_id, row)

    def list_images(self, group_id: str, offset: int, limit: int) -> tuple[list[ImageRecord], int]:
        with self._read() as conn:
            conn.execute("BEGIN")
            try:
                gid = self._gid(conn, group_id)
                if gid is None:
                    return [], 0
                rows = conn.execute(
                    f"SELECT {_IMAGE_COLUMNS} FROM images WHERE gid = ? ORDER BY id DESC LIMIT ? OFFSET ?",
                    (gid, max(limit, 0), max(offset, 0)),
                ).fetchall()
                (total,) = conn.execute("SELECT pic_count FROM groups WHERE gid = ?", (gid,)).fetchone()
            finally:
                conn.execute("COMMIT")
        return [_image(group_id, r) for r in rows], int(total)

    def pic_names(self, group_id: str) -> set[str]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT pic_name FROM images WHERE gid = (SELECT gid FROM groups WHERE group_id = ?)", (group_id,)
            ).fetchall()
        return {name for (name,) in rows}

    def get_thumbnail(self, group_id: str, pic_name: str) -> bytes | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT t.data FROM thumbnails t JOIN images i ON i.id = t.image_id "
                "WHERE i.gid = (SELECT gid FROM groups WHERE group_id = ?) AND i.pic_name = ?",
                (group_id, pic_name),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def _by_name(self, table: str, column: str, group_id: str, pic_names: Sequence[str]) -> list[tuple[str, bytes]]:
        names = list(dict.fromkeys(pic_names))
        out: list[tuple[str, bytes]] = []
        with self._read() as conn:
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                marks = ",".join("?" * len(chunk))
                out += conn.execute(
                    f"SELECT i.pic_name, t.{column} FROM {table} t JOIN images i ON i.id = t.image_id "
                    f"WHERE i.gid = (SELECT gid FROM groups WHERE group_id = ?) AND i.pic_name IN ({marks})",
                    (group_id, *chunk),
                ).fetchall()
        return out

    def get_vectors(self, group_id: str, pic_names: Sequence[str]) -> dict[str, np.ndarray]:
        rows = self._by_name("vectors", "vec", group_id, pic_names)
        return {name: np.frombuffer(blob, dtype=np.float32) for name, blob in rows}

    def get_features(self, group_id: str, pic_names: Sequence[str]) -> dict[str, bytes]:
        return {name: bytes(blob) for name, blob in self._by_name("features", "data", group_id, pic_names)}

    def put_features(self, group_id: str, features: dict[str, bytes]) -> int:
        found = 0
        with self._write() as conn:
            for name, data in features.items():
                row = conn.execute(
                    "SELECT id FROM images WHERE gid = (SELECT gid FROM groups WHERE group_id = ?) AND pic_name = ?",
                    (group_id, name),
                ).fetchone()
                if row is not None:
                    conn.execute("INSERT OR REPLACE INTO features (image_id, data) VALUES (?, ?)", (row[0], data))
                    found += 1
        return found

    def update_images(
        self,
        group_id: str,
        entity_id: str,
        pic_name: str | None,
        *,
        tags: dict[str, object] | None = None,
        custom_content: str | None = None,
    ) -> int:
        where, args = self._where(group_id, entity_id, pic_name)
        new_tags = None if tags is None else dict(tags)
        sets, values = ["update_time = ?"], [time.time()]
        if new_tags is not None:
            sets.append("tags = ?")
            values.append(_tags_json(new_tags))  # type: ignore[arg-type]
        if custom_content is not None:
            sets.append("custom_content = ?")
            values.append(custom_content)  # type: ignore[arg-type]
        with self._writing(group_id) as handle:
            if handle is None:
                return 0
            with self._write() as conn:
                ids = [int(i) for (i,) in conn.execute(f"SELECT id FROM images WHERE {where}", args)]
                if ids:
                    conn.execute(f"UPDATE images SET {', '.join(sets)} WHERE {where}", (*values, *args))
                    if new_tags is not None:
                        self._log(conn, group_id, "tags", ids)
            if handle.loaded and new_tags is not None:
                for image_id in ids:
                    handle.set_tags(image_id, new_tags)
        return len(ids)

    def delete_images(self, group_id: str, entity_id: str, pic_name: str | None = None) -> int:
        where, args = self._where(group_id, entity_id, pic_name)
        with self._writing(group_id) as handle:
            if handle is None:
                return 0
            with self._write() as conn:
                ids = [int(i) for (i,) in conn.execute(f"SELECT id FROM images WHERE {where}", args)]
                if ids:
                    sub = f"SELECT id FROM images WHERE {where}"
                    conn.execute(f"DELETE FROM thumbnails WHERE image_id IN ({sub})", args)
                    conn.execute(f"DELETE FROM features WHERE image_id IN ({sub})", args)
                    conn.execute(f"DELETE FROM vectors WHERE image_id IN ({sub})", args)
                    conn.execute(f"DELETE FROM images WHERE {where}", args)
                    conn.execute(
                        "UPDATE groups SET pic_count = pic_count - ? WHERE group_id = ?", (len(ids), group_id)
                    )
                    self._log(conn, group_id, "del", ids)
            if handle.loaded:
                for image_id in ids:
                    handle.remove(image_id)
                if ids and handle.ann is not None:
                    self._wake.set()
        return len(ids)

    # ------------------------------------------------------------------ search

    def search(
        self,
        group_id: str,
        vector: np.ndarray,
        *,
        limit: int,
        offset: int = 0,
        min_cosine: float = -1.0,
        where: Expr | None = None,
    ) -> list[Hit]:
        """Exact for small groups and selective filters, HNSW re-scored exactly otherwise.

        An unknown group has no hits (the gallery checks existence for its own error).
        """
        if limit <= 0:
            return []
        q = unit_vector(vector, self.dim)
        offset = max(offset, 0)
        self._sync()
        with self._reading(group_id) as handle:
            if handle is None:
                return []
            found = handle.search(
                q, offset + limit, min_cosine=min_cosine, where=where, exact_threshold=self.exact_threshold
            )[offset:]
            if not found:
                return []
            # Under the read lock: no write can remove a row between scoring and fetching it.
            records = self._records(group_id, [i for i, _ in found])
        return [Hit(records[i], cos) for i, cos in found if i in records]

    def _records(self, group_id: str, ids: list[int]) -> dict[int, ImageRecord]:
        out: dict[int, ImageRecord] = {}
        with self._read() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id IN ({marks})", chunk):
                    out[int(row[0])] = _image(group_id, row)
        return out

    # ------------------------------------------------------------------ other processes' writes

    def _log(self, conn: sqlite3.Connection, group_id: str, op: str, ids: list[int]) -> None:
        conn.executemany(
            "INSERT INTO changes (gid, op, image_id) VALUES ((SELECT gid FROM groups WHERE group_id = ?), ?, ?)",
            [(group_id, op, i) for i in ids],
        )
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
                    handle.dead = True
                    handle.loaded = False
                    handle.ann = None
                self._forget(group_id, handle)
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
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
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
                    handle.set_tags(image_id, _tags_load(row[0]))
                else:
                    handle.add(image_id, np.frombuffer(row[1], dtype=np.float32).copy(), _tags_load(row[0]))
        self._wake.set()

    def _trim_changes(self) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - ?", (CHANGES_KEPT,))

    # ------------------------------------------------------------------ the ANN upkeep

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
            if all(ann_state(h, self.exact_threshold) in _SETTLED and not h.merging for h in handles):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._wake.set()
            with self._idle:
                self._idle.wait(0.05)

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
        try:
            self._swept_path(gid).unlink(missing_ok=True)  # the marker never outlives its file
            ann.save(self._ann_path(gid))
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

    def close(self) -> None:
        """Stops the merger, saves the indexes, closes every connection; idempotent."""
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        if self._merger is not None:
            self._merger.join()
        try:
            self.save_indexes()
        finally:
            self._closed = True
            with self._wlock:
                self._writer.close()
            with self._readers_lock:
                for conn in self._all_readers:
                    conn.close()
                self._all_readers.clear()
            self._watch.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
