"""The embedded store's cross-process change log under concurrency: a write committed by another
process (here: another store on the same directory) is visible to every search that starts
after it, whichever thread of the reading store happens to apply the log."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from lookalike.storage.base import GroupRecord, ImageRecord
from lookalike.storage.sqlite import SqliteStore

DIM = 32
THREADS = 6
ROUNDS = 400


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def switch_often():
    """Threads switch every microsecond instead of every 5 ms, so that the searches of one round
    really overlap (the race needs one thread inside another's ``_sync``)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_every_search_after_another_process_s_write_sees_it(tmp_path: Path, switch_often: None) -> None:
    """Each round, the writer store adds a picture; then several threads of the reading store
    search for it at once. Only one of them applies the change log; the others must wait for it
    to finish, not return early and search memory that does not hold the picture yet (the
    ``_sync`` race of issue 18: the log was read under the lock and applied after releasing it)."""
    rng = np.random.default_rng(3)
    vectors = _unit(rng, ROUNDS + 50)
    reader = SqliteStore(tmp_path / "d", dim=DIM, background=False)
    writer = SqliteStore(tmp_path / "d", dim=DIM, background=False)
    try:
        writer.create_group(GroupRecord("g", "g"))
        for i in range(50):  # a loaded group of some size: applying a change takes a while
            writer.add_image(ImageRecord("g", f"e{i}", f"p{i}"), vectors[i], max_per_entity=5)
        assert len(reader.search("g", vectors[0], limit=1)) == 1  # the reader loads the group
        missed: list[tuple[int, int]] = []
        for i in range(50, 50 + ROUNDS):
            writer.add_image(ImageRecord("g", f"e{i}", f"p{i}"), vectors[i], max_per_entity=5)
            barrier = threading.Barrier(THREADS)

            def search(thread: int, i: int = i, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                hits = reader.search("g", vectors[i], limit=1)
                if not hits or hits[0].image.pic_name != f"p{i}":
                    missed.append((i, thread))

            threads = [threading.Thread(target=search, args=(t,)) for t in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert missed == []
    finally:
        writer.close()
        reader.close()
