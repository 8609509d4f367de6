"""What earlier runs learnt about files, so a re-run on a grown folder only embeds the new ones.

Three facts, kept in one SQLite file in the data directory:

- a file's content digest, by (path, size, mtime): an unchanged file is not even read again;
- per content digest: its size in pixels, its pixel digest once computed, or why it was refused;
- per content digest and model: its vector (a renamed or copied file is found by its content).

The cache only ever saves work: a missing or damaged cache file means a slower run, never a
wrong one, and each batch is committed as it is done, so an interrupted run keeps its progress.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_FILE = "dedup-cache.sqlite"
_CHUNK = 500  # SQLite bound parameters per IN (...)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, digest BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS contents (
    digest BLOB PRIMARY KEY, width INTEGER, height INTEGER, pixels BLOB, error_code TEXT, error TEXT
);
CREATE TABLE IF NOT EXISTS vectors (
    digest BLOB NOT NULL, model TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (digest, model)
);
"""


@dataclass
class Content:
    """What is known of one content digest."""

    width: int = 0
    height: int = 0
    pixels: bytes | None = None
    error_code: str | None = None
    error: str | None = None


class DedupCache:
    """Thread-safe; ``path=None`` keeps everything in memory (``--no-cache``)."""

    def __init__(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = self._open(path)
        except sqlite3.DatabaseError:  # not a database (damaged, or some other file): start afresh
            assert path is not None
            path.replace(path.with_name(path.name + ".damaged"))
            self._db = self._open(path)

    @staticmethod
    def _open(path: Path | None) -> sqlite3.Connection:
        db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
        try:
            if path is not None:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _select(self, sql: str, keys: Sequence, *extra) -> list[tuple]:
        rows: list[tuple] = []
        with self._lock:
            for start in range(0, len(keys), _CHUNK):
                chunk = list(keys[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                rows.extend(self._db.execute(sql.format(marks=marks), (*extra, *chunk)).fetchall())
        return rows

    def _write(self, sql: str, rows: Iterable[tuple]) -> None:
        with self._lock, self._db:
            self._db.executemany(sql, rows)

    # ------------------------------------------------------------------ files

    def digests(self, files: Sequence[tuple[str, int, int]]) -> dict[str, bytes]:
        """Digest of each (path, size, mtime_ns) seen unchanged before."""
        wanted = {path: (size, mtime) for path, size, mtime in files}
        rows = self._select("SELECT path, size, mtime_ns, digest FROM files WHERE path IN ({marks})", list(wanted))
        return {path: bytes(digest) for path, size, mtime, digest in rows if wanted.get(path) == (size, mtime)}

    def put_digests(self, rows: Iterable[tuple[str, int, int, bytes]]) -> None:
        self._write("INSERT OR REPLACE INTO files (path, size, mtime_ns, digest) VALUES (?, ?, ?, ?)", rows)

    # ------------------------------------------------------------------ contents

    def contents(self, digests: Sequence[bytes]) -> dict[bytes, Content]:
        rows = self._select(
            "SELECT digest, width, height, pixels, error_code, error FROM contents WHERE digest IN ({marks})", digests
        )
        return {
            bytes(d): Content(w or 0, h or 0, bytes(p) if p is not None else None, code, error)
            for d, w, h, p, code, error in rows
        }

    def put_contents(self, rows: Iterable[tuple[bytes, Content]]) -> None:
        self._write(
            "INSERT OR REPLACE INTO contents (digest, width, height, pixels, error_code, error)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            ((d, c.width, c.height, c.pixels, c.error_code, c.error) for d, c in rows),
        )

    # ------------------------------------------------------------------ vectors

    def fill_vectors(self, digests: Sequence[bytes], model: str, out: np.ndarray) -> np.ndarray:
        """Copies the cached vector of ``digests[i]`` into ``out[i]``; returns which rows were
        filled. Read a chunk at a time, so memory holds the matrix, not every row twice."""
        row_of = {d: i for i, d in enumerate(digests)}
        filled = np.zeros(len(digests), dtype=bool)
        sql = "SELECT digest, vector FROM vectors WHERE model = ? AND digest IN ({marks})"
        for start in range(0, len(digests), _CHUNK):
            for digest, blob in self._select(sql, digests[start : start + _CHUNK], model):
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.shape == (out.shape[1],):  # anything else is damage: embed again
                    row = row_of[bytes(digest)]
                    out[row] = vector
                    filled[row] = True
        return filled

    def put_vectors(self, model: str, rows: Iterable[tuple[bytes, np.ndarray]]) -> None:
        self._write(
            "INSERT OR REPLACE INTO vectors (digest, model, vector) VALUES (?, ?, ?)",
            ((d, model, np.asarray(v, dtype=np.float32).tobytes()) for d, v in rows),
        )
