"""The embedded store: SQLite (the source of truth) plus derived in-memory search structures.

Layout of ``data_dir``: ``gallery.db`` (groups, images, vectors, thumbnails; WAL mode) and
``ann/g<N>.usearch`` (saved HNSW indexes, an optimisation only: reconciled on load, rebuilt
when missing or unreadable).

Durability: ``synchronous=NORMAL`` in WAL mode. A commit has written its WAL frames to the
operating system when ``COMMIT`` returns, so an acknowledged write survives the process being
killed (kill -9, a crash); only an operating-system crash or power loss can roll back the
last transactions. ``synchronous="FULL"`` (an fsync per commit) closes that gap as well, at
the cost of one disk flush per added image.

The store is built in layers, one module each, small enough to hold in mind:
:mod:`~lookalike.storage.sqlite_tables` (schema, rows and records),
:mod:`~lookalike.storage.sqlite_core` (connections, transactions, group handles and their locks),
:mod:`~lookalike.storage.changelog` (other processes' writes, applied before searches),
:mod:`~lookalike.storage.merger` (the background HNSW upkeep, by :mod:`~lookalike.storage.lifecycle`
state), and this module: the store's operations. The gallery rules (wording, namespace, stamps,
the constraint checks) live in :mod:`~lookalike.storage.rules`; this backend supplies their facts
inside its one write transaction.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from lookalike.storage.base import GroupRecord, Hit, ImageRecord, unit_vector
from lookalike.storage.filters import Expr
from lookalike.storage.merger import IndexMerger
from lookalike.storage.rules import check_new_picture, group_exists, stamps
from lookalike.storage.sqlite_tables import (
    EXACT_THRESHOLD,
    GROUP_COLUMNS,
    IMAGE_COLUMNS,
    INSERT_IMAGE,
    PICTURE_TABLES,
    group_record,
    image_record,
    image_row,
    in_batches,
    storage_full,
    tags_json,
)

log = logging.getLogger(__name__)

__all__ = ["EXACT_THRESHOLD", "SqliteStore", "storage_full"]


class SqliteStore(IndexMerger):
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
        super().__init__(data_dir, dim=dim, exact_threshold=exact_threshold, synchronous=synchronous)
        if background:
            self._merger = threading.Thread(target=self._merge_loop, name="lookalike-ann-merger", daemon=True)
            self._merger.start()

    def create_group(self, group: GroupRecord) -> None:
        now = time.time()
        with self._write() as conn:
            if self._gid(conn, group.group_id) is not None:
                raise group_exists(group.group_id)
            conn.execute(
                f"INSERT INTO groups ({GROUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
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
            row = conn.execute(f"SELECT {GROUP_COLUMNS} FROM groups WHERE group_id = ?", (group_id,)).fetchone()
        return None if row is None else group_record(row)

    def list_groups(self, offset: int, limit: int, *, namespace: str | None = "") -> tuple[list[GroupRecord], int]:
        where = "in_namespace(group_id, ?)"  # the one Python rule, registered with each connection
        args: tuple[object, ...] = (namespace,)
        with self._read() as conn:
            conn.execute("BEGIN")  # one snapshot for the page and the total
            try:
                rows = conn.execute(
                    f"SELECT {GROUP_COLUMNS} FROM groups WHERE {where} ORDER BY gid LIMIT ? OFFSET ?",
                    (*args, max(limit, 0), max(offset, 0)),
                ).fetchall()
                (total,) = conn.execute(f"SELECT COUNT(*) FROM groups WHERE {where}", args).fetchone()
            finally:
                conn.execute("COMMIT")
        return [group_record(r) for r in rows], int(total)

    def delete_group(self, group_id: str) -> None:
        with self._group_write(group_id) as write:
            conn, gid = write.conn, write.gid
            self._delete_pictures(conn, "gid = ?", (gid,))
            conn.execute("DELETE FROM groups WHERE gid = ?", (gid,))
            cursor = conn.execute("INSERT INTO changes (gid, op) VALUES (?, 'drop')", (gid,))
            self._claim([int(cursor.lastrowid)])  # type: ignore[arg-type]
            write.commit()
            self._bury(group_id, write.handle)
            self._unlink_index(gid)

    def _counted(self, conn: sqlite3.Connection, gid: int, op: str, ids: list[int]) -> None:
        """Pictures ``ids`` were added ('add') or deleted ('del') in the open transaction: the
        group's PicCount follows, and the change log says so to the other processes."""
        change = len(ids) if op == "add" else -len(ids)
        conn.execute("UPDATE groups SET pic_count = pic_count + ? WHERE gid = ?", (change, gid))
        self._log(conn, gid, op, ids)

    @staticmethod
    def _delete_pictures(conn: sqlite3.Connection, where: str, args: tuple[object, ...]) -> None:
        """Delete the pictures of ``images`` that match ``where``, with every row that is theirs."""
        for table in PICTURE_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE image_id IN (SELECT id FROM images WHERE {where})", args)
        conn.execute(f"DELETE FROM images WHERE {where}", args)

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
        with self._group_write(image.group_id) as write:
            conn, gid, handle = write.conn, write.gid, write.handle
            capacity, count, taken, per_entity = conn.execute(
                "SELECT max_capacity, pic_count, "
                "EXISTS (SELECT 1 FROM images WHERE gid = g.gid AND pic_name = ?), "
                "(SELECT COUNT(*) FROM images WHERE gid = g.gid AND entity_id = ?) "
                "FROM groups g WHERE gid = ?",
                (image.pic_name, image.entity_id, gid),
            ).fetchone()
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
            cursor = conn.execute(INSERT_IMAGE, image_row(gid, image, now))
            image_id = int(cursor.lastrowid)  # type: ignore[arg-type]
            conn.execute("INSERT INTO vectors (image_id, vec) VALUES (?, ?)", (image_id, vec.tobytes()))
            if thumbnail is not None:
                conn.execute("INSERT INTO thumbnails (image_id, data) VALUES (?, ?)", (image_id, thumbnail))
            if features is not None:
                conn.execute("INSERT INTO features (image_id, data) VALUES (?, ?)", (image_id, features))
            self._counted(conn, gid, "add", [image_id])
            write.commit()
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
            with self._group_write(group_id, load=False) as write:
                conn, gid, handle = write.conn, write.gid, write.handle
                names = list({r.pic_name for r, _, _ in items})
                taken: set[str] = set()
                for chunk, marks in in_batches(names):
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
                    continue  # leaves the block: the empty transaction commits
                conn.executemany(INSERT_IMAGE, [image_row(gid, r, now) for r, _, _ in new])
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
                self._counted(conn, gid, "add", ids)
                write.commit()
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
        columns = ", ".join(f"i.{c}" for c in IMAGE_COLUMNS.split(", "))
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
                    image_record(group_id, row[:-2]),
                    np.frombuffer(row[-2], dtype=np.float32).copy(),
                    None if row[-1] is None else bytes(row[-1]),
                )
                for row in rows
            ]

    @staticmethod
    def _pictures(gid: int, entity_id: str, pic_name: str | None) -> tuple[str, tuple[object, ...]]:
        """The WHERE clause (and its arguments) of an entity's pictures, or of its one ``pic_name``."""
        sql = "gid = ? AND entity_id = ?"
        args: tuple[object, ...] = (gid, entity_id)
        if pic_name is not None:
            sql += " AND pic_name = ?"
            args += (pic_name,)
        return sql, args

    def get_images(self, group_id: str, entity_id: str, pic_name: str | None = None) -> list[ImageRecord]:
        with self._read() as conn:
            gid = self._gid(conn, group_id)
            if gid is None:
                return []
            where, args = self._pictures(gid, entity_id, pic_name)
            rows = conn.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE {where} ORDER BY id", args).fetchall()
        return [image_record(group_id, r) for r in rows]

    def get_image(self, group_id: str, pic_name: str) -> ImageRecord | None:
        """The picture called ``pic_name`` (unique in its group), whatever its entity."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {IMAGE_COLUMNS} FROM images WHERE gid = (SELECT gid FROM groups WHERE group_id = ?) "
                "AND pic_name = ?",
                (group_id, pic_name),
            ).fetchone()
        return None if row is None else image_record(group_id, row)

    def list_images(self, group_id: str, offset: int, limit: int) -> tuple[list[ImageRecord], int]:
        with self._read() as conn:
            conn.execute("BEGIN")
            try:
                gid = self._gid(conn, group_id)
                if gid is None:
                    return [], 0
                rows = conn.execute(
                    f"SELECT {IMAGE_COLUMNS} FROM images WHERE gid = ? ORDER BY id DESC LIMIT ? OFFSET ?",
                    (gid, max(limit, 0), max(offset, 0)),
                ).fetchall()
                (total,) = conn.execute("SELECT pic_count FROM groups WHERE gid = ?", (gid,)).fetchone()
            finally:
                conn.execute("COMMIT")
        return [image_record(group_id, r) for r in rows], int(total)

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
            for chunk, marks in in_batches(names):
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
        new_tags = None if tags is None else dict(tags)
        sets, values = ["update_time = ?"], [time.time()]
        if new_tags is not None:
            sets.append("tags = ?")
            values.append(tags_json(new_tags))  # type: ignore[arg-type]
        if custom_content is not None:
            sets.append("custom_content = ?")
            values.append(custom_content)  # type: ignore[arg-type]
        with self._group_write_if_any(group_id) as write:
            if write is None:
                return 0
            where, args = self._pictures(write.gid, entity_id, pic_name)
            ids = [int(i) for (i,) in write.conn.execute(f"SELECT id FROM images WHERE {where}", args)]
            if ids:
                write.conn.execute(f"UPDATE images SET {', '.join(sets)} WHERE {where}", (*values, *args))
                if new_tags is not None:
                    self._log(write.conn, write.gid, "tags", ids)
            write.commit()
            if write.handle.loaded and new_tags is not None:
                for image_id in ids:
                    write.handle.set_tags(image_id, new_tags)
        return len(ids)

    def delete_images(self, group_id: str, entity_id: str, pic_name: str | None = None) -> int:
        with self._group_write_if_any(group_id) as write:
            if write is None:
                return 0
            conn, gid, handle = write.conn, write.gid, write.handle
            where, args = self._pictures(gid, entity_id, pic_name)
            ids = [int(i) for (i,) in conn.execute(f"SELECT id FROM images WHERE {where}", args)]
            if ids:
                self._delete_pictures(conn, where, args)
                self._counted(conn, gid, "del", ids)
            write.commit()
            if handle.loaded:
                for image_id in ids:
                    handle.remove(image_id)
                if ids and handle.ann is not None:
                    self._wake.set()
        return len(ids)

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
            for chunk, marks in in_batches(ids):
                for row in conn.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE id IN ({marks})", chunk):
                    out[int(row[0])] = image_record(group_id, row)
        return out

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
