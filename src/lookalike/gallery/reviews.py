"""Duplicate sets an operator has looked at and kept as they are ("reviewed").

A set is known by its members: the key is a digest of its sorted PicNames, so a reviewed set stays
hidden while its members are the same, and comes back when a new copy joins it (that copy was not
reviewed). The marks live in ``reviews.db`` (SQLite) in the data dir, beside the galleries,
whichever store holds the vectors: they are the operator's decisions, not picture data.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from lookalike import errors

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviewed_sets (
    group_key TEXT NOT NULL,
    set_key TEXT NOT NULL,
    members INTEGER NOT NULL,
    reviewed_at REAL NOT NULL,
    PRIMARY KEY (group_key, set_key)
);
"""


def set_key(pic_names: Iterable[str]) -> str:
    """The identity of a duplicate set: its members, in any order."""
    joined = "\n".join(sorted(set(pic_names)))
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


class ReviewStore:
    """Reviewed-set marks per group (the store's group key, tenant included). Thread-safe; the
    file is created on the first mark, so reading a data dir never writes to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _open(self, create: bool) -> sqlite3.Connection | None:
        if self._db is None:
            if not create and not self.path.exists():
                return None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def mark(self, group_key: str, pic_names: list[str]) -> str:
        """Marks the set of these pictures reviewed; returns its key. Idempotent."""
        key = set_key(pic_names)
        try:
            with self._lock:
                db = self._open(create=True)
                assert db is not None
                with db:
                    db.execute(
                        "INSERT OR REPLACE INTO reviewed_sets VALUES (?, ?, ?, ?)",
                        (group_key, key, len(set(pic_names)), time.time()),
                    )
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise errors.StorageFull(f"the data dir is full: the review was not saved ({exc})") from None
            raise
        return key

    def reviewed(self, group_key: str) -> set[str]:
        with self._lock:
            db = self._open(create=False)
            if db is None:
                return set()
            rows = db.execute("SELECT set_key FROM reviewed_sets WHERE group_key = ?", (group_key,))
            return {row[0] for row in rows}

    def forget_group(self, group_key: str) -> None:
        """A deleted group's marks go with it (a new group of the same id starts clean)."""
        with self._lock:
            db = self._open(create=False)
            if db is not None:
                with db:
                    db.execute("DELETE FROM reviewed_sets WHERE group_key = ?", (group_key,))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
