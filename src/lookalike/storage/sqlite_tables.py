"""The embedded store's tables: the schema, rows to records and back, and SQLite's full disk.

``images`` ids are AUTOINCREMENT, never reused, so an id in a saved ANN file can never name a
newer picture (reconciling an index file by id set is then complete). ``changes`` is the
cross-process change log (:mod:`lookalike.storage.changelog`).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from lookalike import errors
from lookalike.storage.base import GroupRecord, ImageRecord
from lookalike.storage.rules import stamps

EXACT_THRESHOLD = 10_000
"""Groups with fewer vectors are searched exactly (no HNSW index is built for them). Measured
crossover and reasoning: docs/benchmarks.md, "Vector search"."""

SCHEMA_VERSION = 1
CHANGES_KEPT = 200_000
"""Log entries kept for other processes; one that fell further behind reloads its groups."""

SCHEMA = """
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

IMAGE_COLUMNS = "id, entity_id, pic_name, custom_content, tags, rect, create_time, update_time"
GROUP_COLUMNS = (
    "group_id, group_name, brief, max_capacity, max_qps, group_type, model, pic_count, create_time, update_time"
)
EMPTY_TAGS: dict[str, object] = {}

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


def tags_json(tags: dict[str, object]) -> str:
    return json.dumps(tags, ensure_ascii=False, separators=(",", ":"))


def tags_load(text: str) -> dict[str, object]:
    return EMPTY_TAGS if text == "{}" else json.loads(text)


PARAMETERS_PER_QUERY = 500
"""Values bound in one ``IN (...)``: well under SQLite's host parameter limit (999 in old builds)."""


def in_batches[T](values: Sequence[T]) -> Iterator[tuple[list[T], str]]:
    """``values`` a batch at a time, each with its ``?, ?, ...`` placeholders for ``IN (...)``."""
    for start in range(0, len(values), PARAMETERS_PER_QUERY):
        batch = list(values[start : start + PARAMETERS_PER_QUERY])
        yield batch, ",".join("?" * len(batch))


PICTURE_TABLES = ("thumbnails", "features", "vectors")
"""The tables whose rows belong to one picture (keyed by ``image_id``): they go with it."""


INSERT_IMAGE = (
    "INSERT INTO images (gid, entity_id, pic_name, custom_content, tags, rect, create_time, update_time) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def image_row(gid: int, image: ImageRecord, now: float) -> tuple[object, ...]:
    """The ``images`` row of a new picture; a record without times gets ``now``."""
    return (
        gid,
        image.entity_id,
        image.pic_name,
        image.custom_content,
        tags_json(image.tags),
        None if image.rect is None else json.dumps(list(image.rect)),
        *stamps(image.create_time, image.update_time, now),
    )


def group_record(row: Sequence[object]) -> GroupRecord:
    return GroupRecord(*row)  # type: ignore[arg-type]


def image_record(group_id: str, row: Sequence[object]) -> ImageRecord:
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
