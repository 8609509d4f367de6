"""The embedded store against real SQLite files: constraints, filters, search paths, durability."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from filter_cases import random_filter, random_tags
from lookalike import errors
from lookalike.storage.base import GroupRecord, ImageRecord
from lookalike.storage.filters import Compare, matches
from lookalike.storage.sqlite import SqliteStore
from support import small_tmpfs, take_space

DIM = 32
SRC = str(Path(__file__).resolve().parent.parent / "src")


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, dim: int = DIM, clusters: int = 40) -> np.ndarray:
    centres = unit(rng, clusters, dim)
    x = centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def image(i: int, group: str = "g", *, entity: str | None = None, tags: dict[str, object] | None = None) -> ImageRecord:
    return ImageRecord(group_id=group, entity_id=entity or f"e{i}", pic_name=f"p{i}", tags=tags or {})


@pytest.fixture
def make(tmp_path: Path):
    opened: list[SqliteStore] = []

    def _make(path: Path | None = None, **kw: object) -> SqliteStore:
        kw.setdefault("dim", DIM)
        store = SqliteStore(path or tmp_path / "data", **kw)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield _make
    for store in opened:
        store.close()


def fill(store: SqliteStore, vectors: np.ndarray, group: str = "g", tags=None) -> None:
    if store.get_group(group) is None:
        store.create_group(GroupRecord(group, group))
    for i, v in enumerate(vectors):
        store.add_image(image(i, group, tags=tags(i) if tags else None), v, max_per_entity=5)


def exact_top(vectors: np.ndarray, q: np.ndarray, allowed: list[int] | None = None) -> list[int]:
    idx = np.arange(len(vectors)) if allowed is None else np.asarray(allowed, dtype=np.int64)
    scores = vectors[idx] @ (q / np.linalg.norm(q))
    return [int(i) for i in idx[np.lexsort((idx, -scores))]]


def ann_ready(store: SqliteStore, group: str = "g") -> bool:
    """The group is searched through its HNSW index, which holds every row but the few its graph
    could not reach (those are scanned exactly, see ``test_storage_islands.py``)."""
    handle = store._handles[group]
    stranded = len(handle.stranded)
    return (
        handle.ann is not None
        and handle.n_pending == stranded <= max(8, handle.n // 100)
        and len(handle.ann) == handle.n - stranded
    )


def names(hits) -> list[int]:
    return [int(h.image.pic_name[1:]) for h in hits]


# ---------------------------------------------------------------------------- groups and records


def test_groups_are_persisted_listed_and_deleted(make) -> None:
    store = make()
    store.create_group(GroupRecord("a", "A", brief="b", max_capacity=7, max_qps=3, group_type=2, model="m"))
    store.create_group(GroupRecord("b", "B"))
    with pytest.raises(errors.ImageGroupIdAlreadyExist):
        store.create_group(GroupRecord("a", "again"))
    got = store.get_group("a")
    assert got is not None
    assert (got.group_name, got.brief, got.max_capacity, got.max_qps, got.group_type, got.model) == (
        "A", "b", 7, 3, 2, "m"
    )
    assert got.create_time > 0 and got.pic_count == 0
    page, total = store.list_groups(1, 10)
    assert [g.group_id for g in page] == ["b"] and total == 2
    store.add_image(image(1, "a"), np.ones(DIM), max_per_entity=5, thumbnail=b"jpeg")
    store.delete_group("a")
    assert store.get_group("a") is None and store.get_thumbnail("a", "p1") is None
    assert store.search("a", np.ones(DIM), limit=5) == []
    with pytest.raises(errors.ImageGroupIdNotExist):
        store.delete_group("a")
    store.create_group(GroupRecord("a", "A2"))  # a re-created group starts empty
    assert store.list_images("a", 0, 10) == ([], 0)
    assert store.search("a", np.ones(DIM), limit=5) == []


def test_add_image_constraints_are_checked(make) -> None:
    store = make()
    v = np.ones(DIM)
    with pytest.raises(errors.ImageGroupIdNotExist):
        store.add_image(image(0), v, max_per_entity=5)
    store.create_group(GroupRecord("g", "G", max_capacity=4))
    store.add_image(image(0, entity="x"), v, max_per_entity=2)
    with pytest.raises(errors.PicNameAlreadyExist):
        store.add_image(image(0, entity="y"), v, max_per_entity=2)
    store.add_image(image(1, entity="x"), v, max_per_entity=2)
    with pytest.raises(errors.ImageEntityCountExceed):
        store.add_image(image(2, entity="x"), v, max_per_entity=2)
    store.add_image(image(2), v, max_per_entity=2)
    store.add_image(image(3), v, max_per_entity=2)
    with pytest.raises(errors.ImageNumExceed):
        store.add_image(image(4), v, max_per_entity=2)
    assert store.get_group("g").pic_count == 4  # type: ignore[union-attr]
    assert store.delete_images("g", "x") == 2
    assert store.get_group("g").pic_count == 2  # type: ignore[union-attr]
    store.add_image(image(4), v, max_per_entity=2)  # room again
    with pytest.raises(errors.InvalidParameterValue):
        store.add_image(image(5), np.zeros(DIM), max_per_entity=2)
    with pytest.raises(errors.InvalidParameterValue):
        store.add_image(image(6), np.ones(DIM + 1), max_per_entity=2)


def test_records_round_trip(make) -> None:
    store = make()
    store.create_group(GroupRecord("g", "G"))
    rec = ImageRecord("g", "ent", "pic", custom_content="cc", tags={"a": 1, "b": "x", "c": [1, 2]}, rect=(1, 2, 3, 4))
    store.add_image(rec, np.ones(DIM), max_per_entity=5, thumbnail=b"\x00thumb")
    store.add_image(ImageRecord("g", "ent", "pic2"), np.ones(DIM), max_per_entity=5)
    got = store.get_images("g", "ent", "pic")
    assert len(got) == 1 and got[0].tags == rec.tags and got[0].rect == (1, 2, 3, 4) and got[0].custom_content == "cc"
    assert [r.pic_name for r in store.get_images("g", "ent")] == ["pic", "pic2"]
    assert store.get_images("g", "nobody") == [] and store.get_images("nope", "ent") == []
    assert store.get_image("g", "pic2") is not None and store.get_image("g", "zzz") is None
    assert store.get_thumbnail("g", "pic") == b"\x00thumb" and store.get_thumbnail("g", "pic2") is None
    page, total = store.list_images("g", 0, 1)
    assert [r.pic_name for r in page] == ["pic2"] and total == 2  # newest first
    assert store.update_images("g", "ent", None, custom_content="new") == 2
    assert store.update_images("g", "ent", "pic", tags={"z": 9}) == 1
    assert store.get_image("g", "pic").tags == {"z": 9}  # type: ignore[union-attr]
    assert store.get_image("g", "pic2").custom_content == "new"  # type: ignore[union-attr]
    assert store.update_images("g", "nobody", None, tags={}) == 0
    assert store.delete_images("g", "ent", "pic") == 1 and store.delete_images("g", "ent", "pic") == 0
    assert store.delete_images("nope", "ent") == 0


# ---------------------------------------------------------------------------- filters


# The rules and the mask-versus-reference check live in tests/test_filter_semantics.py; here the
# same generated cases go through the whole store (index, exact scan, changes between searches).


@pytest.mark.parametrize("threshold", [50, 100_000])
def test_filtered_search_agrees_with_reference_through_changes(make, threshold: int) -> None:
    rng = random.Random(3)
    nrng = np.random.default_rng(3)
    store = make(exact_threshold=threshold)
    vectors = unit(nrng, 300)
    model: dict[int, dict[str, object]] = {}
    store.create_group(GroupRecord("g", "G"))
    for i in range(300):
        model[i] = random_tags(rng)
        store.add_image(image(i, tags=model[i]), vectors[i], max_per_entity=5)
    assert store.wait_for_index(30)
    assert ann_ready(store) == (threshold == 50)
    q = unit(nrng, 1)[0]
    for round_ in range(30):
        expr = random_filter(rng)
        hits = store.search("g", q, limit=400, where=expr)
        expected = exact_top(vectors, q, [i for i, t in model.items() if matches(expr, t)])
        assert names(hits) == expected, (round_, expr)
        # change things between searches: every change is visible to the next search
        victim = rng.choice(list(model))
        store.delete_images("g", f"e{victim}")
        del model[victim]
        target = rng.choice(list(model))
        model[target] = random_tags(rng)
        store.update_images("g", f"e{target}", None, tags=model[target])


# ---------------------------------------------------------------------------- search paths


@pytest.mark.parametrize("threshold", [100, 1000, 100_000])
def test_selective_filter_still_returns_limit(make, threshold: int) -> None:
    nrng = np.random.default_rng(11)
    vectors = clustered(nrng, 5000)
    chosen = set(nrng.choice(5000, 30, replace=False).tolist())
    store = make(exact_threshold=threshold)
    fill(store, vectors, tags=lambda i: {"kind": "rare" if i in chosen else "common", "n": i})
    assert store.wait_for_index(60)
    assert ann_ready(store) == (threshold < 5000)
    for q in clustered(nrng, 5):
        hits = store.search("g", q, limit=20, where=Compare("kind", "=", "rare"))
        assert len(hits) == 20 and all(h.image.tags["kind"] == "rare" for h in hits)
        assert names(hits) == exact_top(vectors, q, sorted(chosen))[:20]
        # a broad filter (above the exact threshold) on the ANN path: limit reached, order exact
        hits = store.search("g", q, limit=50, where=Compare("n", "<", 2500))
        got = names(hits)
        assert len(got) == 50 and all(i < 2500 for i in got)
        cos = [h.cosine for h in hits]
        assert cos == sorted(cos, reverse=True)
        assert np.allclose(cos, vectors[got] @ q, atol=1e-5)


def test_offset_pages_follow_the_exact_order_with_ties(make) -> None:
    nrng = np.random.default_rng(5)
    vectors = unit(nrng, 400)
    vectors[100:110] = vectors[7]  # duplicates: equal cosines, broken by id
    store = make()
    fill(store, vectors)
    q = vectors[7] + 0.01 * unit(nrng, 1)[0]
    full = exact_top(vectors, q)
    pages = [names(store.search("g", q, limit=7, offset=off)) for off in range(0, 70, 7)]
    assert sum(pages, []) == full[:70]
    assert store.search("g", q, limit=5, offset=1000) == []


def test_min_cosine_is_respected_and_complete(make, tmp_path: Path) -> None:
    nrng = np.random.default_rng(8)
    vectors = clustered(nrng, 3000)
    q = vectors[0]
    scores = vectors @ q
    ordered = np.sort(scores)
    cut = float(ordered[-40] + ordered[-41]) / 2  # exactly 40 images pass
    for threshold in (200, 100_000):  # the ANN path and the exact one
        store = make(tmp_path / str(threshold), exact_threshold=threshold)
        fill(store, vectors)
        assert store.wait_for_index(60)
        assert ann_ready(store) == (threshold < 3000)
        hits = store.search("g", q, limit=100, min_cosine=cut)
        assert all(h.cosine >= cut for h in hits)
        if threshold > len(vectors):  # exact: complete, in order, pages included
            assert names(hits) == exact_top(vectors, q)[:40]
            assert len(store.search("g", q, limit=10, offset=35, min_cosine=cut)) == 5
        else:  # HNSW: approximate (an unfound neighbour is missed), but never an image below the cut
            assert set(names(hits)) <= set(exact_top(vectors, q)[:40]) and len(hits) >= 38
        assert store.search("g", q, limit=10, min_cosine=0.9999)[0].image.pic_name == "p0"


def test_changes_are_visible_to_the_next_search_on_the_ann_path(make) -> None:
    nrng = np.random.default_rng(9)
    vectors = clustered(nrng, 2000)
    store = make(exact_threshold=300)
    fill(store, vectors, tags=lambda i: {"n": i})
    assert store.wait_for_index(60) and ann_ready(store)
    q = vectors[42]
    assert names(store.search("g", q, limit=1)) == [42]
    store.delete_images("g", "e42")
    assert 42 not in names(store.search("g", q, limit=10))
    store.update_images("g", "e43", None, tags={"n": -1})
    hits = store.search("g", vectors[43], limit=3, where=Compare("n", "<", 0))
    assert names(hits) == [43]
    store.add_image(image(5000), q, max_per_entity=5)  # searchable before the index has it
    assert names(store.search("g", q, limit=1)) == [5000]


def test_reopen_keeps_everything(make, tmp_path: Path) -> None:
    nrng = np.random.default_rng(1)
    vectors = clustered(nrng, 1500)
    path = tmp_path / "keep"
    store = SqliteStore(path, dim=DIM, exact_threshold=500)
    fill(store, vectors, tags=lambda i: {"n": i % 7})
    store.add_image(image(9999, entity="t"), vectors[0], max_per_entity=5, thumbnail=b"png")
    assert store.wait_for_index(60)
    store.close()
    store.close()  # idempotent
    assert (path / "ann").glob("*.usearch")
    again = make(path, exact_threshold=500)
    assert again.get_group("g").pic_count == 1501  # type: ignore[union-attr]
    assert again.get_thumbnail("g", "p9999") == b"png"
    for i in (3, 700, 1499):
        hits = again.search("g", vectors[i], limit=2, where=Compare("n", "=", i % 7))
        assert names(hits)[0] == i


def test_a_stale_index_file_is_reconciled_on_open(make, tmp_path: Path) -> None:
    nrng = np.random.default_rng(2)
    vectors = clustered(nrng, 1200)
    path = tmp_path / "stale"
    first = SqliteStore(path, dim=DIM, exact_threshold=400)
    fill(first, vectors)
    assert first.wait_for_index(60)
    first.save_indexes()
    (saved,) = (path / "ann").glob("*.usearch")
    old = saved.read_bytes()
    for i in range(0, 100):
        first.delete_images("g", f"e{i}")
    extra = clustered(nrng, 50)
    for j, v in enumerate(extra):
        first.add_image(image(2000 + j), v, max_per_entity=5)
    first.close()
    saved.write_bytes(old)  # as if the process died before saving the index again
    second = make(path, exact_threshold=400)
    for i in (0, 50, 99):
        assert i not in names(second.search("g", vectors[i], limit=5))
    for j in (0, 25, 49):
        assert names(second.search("g", extra[j], limit=1)) == [2000 + j]
    assert second.wait_for_index(60)
    handle = second._handles["g"]
    indexed = sorted(set(handle.ids[: handle.n].tolist()) - handle.stranded)
    assert handle.ann is not None and sorted(handle.ann.keys().tolist()) == indexed


def test_two_stores_on_one_directory_see_each_others_writes(make, tmp_path: Path) -> None:
    """As the CLI beside a running server: each applies the other's changes before searching."""
    nrng = np.random.default_rng(12)
    vectors = clustered(nrng, 800)
    path = tmp_path / "shared"
    server = make(path, exact_threshold=300)
    fill(server, vectors[:600], tags=lambda i: {"n": i})
    assert server.wait_for_index(60) and ann_ready(server)
    cli = make(path, exact_threshold=300)
    for i in range(600, 800):
        cli.add_image(image(i, tags={"n": i}), vectors[i], max_per_entity=5)
    cli.delete_images("g", "e5")
    cli.update_images("g", "e6", None, tags={"n": -6})
    assert names(server.search("g", vectors[700], limit=1)) == [700]
    assert 5 not in names(server.search("g", vectors[5], limit=5))
    assert names(server.search("g", vectors[6], limit=5, where=Compare("n", "<", 0))) == [6]
    assert server.wait_for_index(60) and ann_ready(server)
    assert server.get_group("g").pic_count == 799  # type: ignore[union-attr]
    server.add_image(image(900), vectors[0], max_per_entity=5)
    assert names(cli.search("g", vectors[0], limit=2)) == [0, 900]
    cli.delete_group("g")
    assert server.search("g", vectors[0], limit=2) == [] and server.get_group("g") is None
    server.create_group(GroupRecord("g", "again"))
    server.add_image(image(1), vectors[1], max_per_entity=5)
    assert names(cli.search("g", vectors[1], limit=5)) == [1]


CRASH_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {src!r})
    import numpy as np
    from pathlib import Path
    from lookalike.storage.base import GroupRecord, ImageRecord
    from lookalike.storage.sqlite import SqliteStore
    store = SqliteStore(Path({path!r}), dim={dim}, exact_threshold=200)
    store.create_group(GroupRecord("g", "G"))
    for i in range(100000):
        v = np.random.default_rng(i).standard_normal({dim})
        store.add_image(ImageRecord("g", "e%d" % i, "p%d" % i, tags={{"i": i}}), v, max_per_entity=5, thumbnail=b"t")
        print(i, flush=True)
    """
)


def test_acknowledged_writes_survive_kill_9(make, tmp_path: Path) -> None:
    path = tmp_path / "crash"
    code = CRASH_CHILD.format(src=SRC, path=str(path), dim=DIM)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked = -1
    assert child.stdout is not None
    deadline = time.monotonic() + 30
    for line in child.stdout:
        acked = int(line)
        if acked >= 400 or time.monotonic() > deadline:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert acked >= 0
    store = make(path, exact_threshold=200)
    count = store.get_group("g").pic_count  # type: ignore[union-attr]
    assert count >= acked + 1
    assert store.list_images("g", 0, 1)[1] == count
    for i in list(range(0, acked + 1, 37)) + [acked]:
        v = np.random.default_rng(i).standard_normal(DIM)
        hits = store.search("g", v, limit=1)
        assert names(hits) == [i] and hits[0].cosine > 0.999
        assert store.search("g", v, limit=1, where=Compare("i", "=", i))[0].image.tags == {"i": i}
    store.add_image(image(10**6), np.ones(DIM), max_per_entity=5)  # and it is writable


def test_ann_recall_against_exact(make) -> None:
    nrng = np.random.default_rng(4)
    dim = 64
    vectors = clustered(nrng, 4000, dim, clusters=50)
    store = make(dim=dim, exact_threshold=500)
    fill(store, vectors)
    assert store.wait_for_index(120)
    assert ann_ready(store)
    queries = clustered(nrng, 50, dim, clusters=50)
    recall = np.mean(
        [len(set(names(store.search("g", q, limit=10))) & set(exact_top(vectors, q)[:10])) / 10 for q in queries]
    )
    assert recall >= 0.95, recall


def test_concurrent_searches_and_writes(make) -> None:
    nrng = np.random.default_rng(6)
    vectors = clustered(nrng, 1500)
    store = make(exact_threshold=500)
    fill(store, vectors, tags=lambda i: {"n": i % 10})
    failures: list[BaseException] = []
    stop = threading.Event()

    def writer(offset: int) -> None:
        rng = np.random.default_rng(offset)
        try:
            i = 0
            while not stop.is_set():
                n = 10_000 + offset + i
                store.add_image(image(n, tags={"n": i % 10}), unit(rng, 1)[0], max_per_entity=5)
                if i % 3 == 0:
                    store.delete_images("g", f"e{rng.integers(0, 1500)}")
                if i % 5 == 0:
                    store.update_images("g", f"e{rng.integers(0, 1500)}", None, tags={"n": 3})
                i += 1
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                where = Compare("n", "=", 3) if rng.random() < 0.5 else None
                hits = store.search("g", unit(rng, 1)[0], limit=20, where=where)
                got = names(hits)
                assert len(got) == 20 and len(set(got)) == 20
                assert [h.cosine for h in hits] == sorted((h.cosine for h in hits), reverse=True)
                if where is not None:
                    assert all(h.image.tags["n"] == 3 for h in hits)
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(k * 100_000,)) for k in range(2)]
    threads += [threading.Thread(target=searcher, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(30)
    assert not failures, failures[:3]
    assert store.wait_for_index(60)


# ---------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs: a real file system that runs out of space. Skips where mounting is refused."""
    with small_tmpfs(tmp_path / "small", "1m") as mnt:
        yield mnt


def test_a_full_disk_is_storage_full_and_memory_follows_the_tables(small_disk: Path, make) -> None:
    rng = np.random.default_rng(21)
    vectors = unit(rng, 400)
    a = make(small_disk / "data", exact_threshold=5, background=False)
    b = make(small_disk / "data", exact_threshold=5, background=False)  # another process, say the CLI
    a.create_group(GroupRecord("g", "g"))
    take_space(small_disk, leave=650_000)  # room to free later: the WAL alone could fill the disk
    stored, refused = [], []
    for i in range(400):
        try:
            a.add_image(image(i), vectors[i], max_per_entity=5, thumbnail=os.urandom(2000))
            stored.append(i)
        except errors.StorageFull as exc:
            assert exc.code == "StorageFull" and exc.status == 507 and "out of space" in exc.message
            refused.append(i)
            if len(refused) == 3:
                break
    assert len(stored) >= 6 and len(refused) == 3, "the disk must fill up"
    a.wait_for_index()
    take_space(small_disk)  # not a page left: deletes fail too, once the WAL's spare tail is used
    deleted, kept = [], None
    for i in stored:  # a write that fits where a failed one had already written may still commit
        try:
            a.delete_images("g", f"e{i}")
            deleted.append(i)
        except errors.StorageFull:
            kept = i
            break
    assert kept is not None and len(deleted) < 3
    present = sorted(set(stored) - set(deleted))
    # memory agrees with the tables: what was stored and not deleted, nothing else
    for store in (a, b):
        assert store.get_group("g").pic_count == len(present)  # type: ignore[union-attr]
        assert sorted(names(store.search("g", vectors[0], limit=1000))) == present
        for i in stored[:4] + refused:
            hits = store.search("g", vectors[i], limit=1)
            assert (names(hits) == [i]) == (i in present), i
    assert [r.pic_name for r in a.get_images("g", f"e{kept}")] == [f"p{kept}"]
    a.close()  # a dirty HNSW index cannot be saved: logged, not raised, no partial file left
    assert not list((small_disk / "data" / "ann").glob("*.tmp"))

    for ballast in small_disk.glob("ballast*"):
        ballast.unlink()
    # b (same directory) writes next; the change-log number a's failed write had taken is b's
    # now, and a reopened store still applies it rather than skipping it as its own
    b.add_image(image(2000), vectors[refused[0]], max_per_entity=5)
    a2 = make(small_disk / "data", exact_threshold=5, background=False)
    assert names(a2.search("g", vectors[refused[0]], limit=1)) == [2000]
    assert a2.delete_images("g", f"e{kept}") == 1  # writable again, not stuck in a transaction
    assert names(b.search("g", vectors[kept], limit=1)) != [kept]
    with sqlite3.connect(small_disk / "data" / "gallery.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_failed_write_does_not_hide_another_process_s_next_write(small_disk: Path, make) -> None:
    rng = np.random.default_rng(22)
    vectors = unit(rng, 3)
    a = make(small_disk / "data")
    b = make(small_disk / "data")
    a.create_group(GroupRecord("g", "g"))
    a.add_image(image(0), vectors[0], max_per_entity=5)
    assert names(a.search("g", vectors[0], limit=1)) == [0]  # a holds the group in memory
    ballast = take_space(small_disk)
    with pytest.raises(errors.StorageFull):
        a.add_image(image(1), vectors[1], max_per_entity=5, thumbnail=os.urandom(20_000))
    ballast.unlink()
    b.add_image(image(2), vectors[2], max_per_entity=5)  # takes the change-log number a gave back
    assert names(a.search("g", vectors[2], limit=1)) == [2]
    a.add_image(image(1), vectors[1], max_per_entity=5)
    assert names(b.search("g", vectors[1], limit=1)) == [1]


def test_ann_save_on_a_full_disk_keeps_the_previous_file(small_disk: Path) -> None:
    from lookalike.storage.ann import AnnIndex

    rng = np.random.default_rng(23)
    vectors = unit(rng, 3000, 64)
    path = small_disk / "g1.usearch"
    index = AnnIndex(64)
    index.add(np.arange(500), vectors[:500])
    index.save(path)
    take_space(small_disk, leave=100_000)
    index.add(np.arange(500, 3000), vectors[500:])  # ~0.5 MB saved: does not fit
    with pytest.raises(errors.StorageFull, match="no space"):
        index.save(path)
    assert sorted(p.name for p in small_disk.iterdir() if not p.name.startswith("ballast")) == ["g1.usearch"]
    old = AnnIndex.load(path, 64)
    assert old is not None and len(old) == 500
    assert old.search(vectors[7], 1)[0].tolist() == [7]
    for ballast in small_disk.glob("ballast*"):
        ballast.unlink()
    index.save(path)
    again = AnnIndex.load(path, 64)
    assert again is not None and len(again) == 3000


# ---------------------------------------------------------------------------- bulk copy (migration)


def test_iter_group_returns_every_picture_with_its_vector_and_thumbnail(make) -> None:
    store = make()
    vectors = unit(np.random.default_rng(30), 25)
    store.create_group(GroupRecord("g", "G"))
    for i, v in enumerate(vectors):
        rec = ImageRecord("g", f"e{i % 4}", f"p{i}", custom_content=f"c{i}", tags={"n": i, "s": "x"}, rect=(i, 1, 2, 3))
        store.add_image(rec, v * 3, max_per_entity=100, thumbnail=b"t%d" % i if i % 2 else None)
    assert list(store.iter_group("nope")) == []
    batches = list(store.iter_group("g", batch=10))
    assert [len(b) for b in batches] == [10, 10, 5]
    rows = [row for b in batches for row in b]
    assert [r.pic_name for r, _, _ in rows] == [f"p{i}" for i in range(25)]
    for i, (record, vec, thumb) in enumerate(rows):
        assert record == store.get_image("g", f"p{i}")
        assert (record.entity_id, record.custom_content, record.tags, record.rect) == (
            f"e{i % 4}", f"c{i}", {"n": i, "s": "x"}, (i, 1, 2, 3)
        )
        assert vec.dtype == np.float32 and np.allclose(vec, vectors[i], atol=1e-6)
        assert thumb == (b"t%d" % i if i % 2 else None)
    assert store.pic_names("g") == {f"p{i}" for i in range(25)} and store.pic_names("nope") == set()


def test_import_images_keeps_times_skips_existing_names_and_is_searchable(make) -> None:
    store = make()
    vectors = unit(np.random.default_rng(31), 40)
    store.create_group(GroupRecord("g", "G", max_capacity=5))  # capacity and per-entity limits are not checked
    assert names(store.search("g", vectors[0], limit=1)) == []  # the group's rows are in memory from now on
    store.add_image(image(0), vectors[0], max_per_entity=5)
    rows = [
        (ImageRecord("g", "same", f"p{i}", tags={"n": i}, create_time=1000.0 + i, update_time=2000.0 + i), vectors[i],
         b"thumb" if i == 3 else None)
        for i in range(40)
    ]
    assert store.import_images(rows[:20] + rows[:3]) == 19  # p0 exists; repeats in one call count once
    assert store.import_images(rows) == 20
    assert store.import_images(rows) == 0
    assert store.get_group("g").pic_count == 40  # type: ignore[union-attr]
    got = store.get_image("g", "p7")
    assert got is not None
    assert (got.entity_id, got.tags, got.create_time, got.update_time) == ("same", {"n": 7}, 1007.0, 2007.0)
    assert store.get_image("g", "p0").entity_id == "e0"  # type: ignore[union-attr]  # not overwritten
    assert store.get_thumbnail("g", "p3") == b"thumb"
    for i in (5, 25, 39):
        assert names(store.search("g", vectors[i], limit=1)) == [i]
    assert names(store.search("g", vectors[9], limit=5, where=Compare("n", "=", 9))) == [9]
    with pytest.raises(errors.ImageGroupIdNotExist):
        store.import_images([(ImageRecord("nope", "e", "p"), vectors[0], None)])
    with pytest.raises(errors.InvalidParameterValue):
        store.import_images([(ImageRecord("g", "e", "zero"), np.zeros(DIM), None)])
    assert store.get_image("g", "zero") is None


def test_imported_pictures_reach_another_store_and_the_ann_index(make, tmp_path: Path) -> None:
    vectors = clustered(np.random.default_rng(32), 1500)
    path = tmp_path / "shared"
    server = make(path, exact_threshold=500)
    server.create_group(GroupRecord("g", "G"))
    assert server.search("g", vectors[0], limit=1) == []  # loaded and empty
    cli = make(path, exact_threshold=500)
    rows = [(image(i, tags={"n": i}), v, None) for i, v in enumerate(vectors)]
    for start in range(0, len(rows), 400):
        assert cli.import_images(rows[start : start + 400]) == len(rows[start : start + 400])
    assert names(server.search("g", vectors[1234], limit=1)) == [1234]
    assert server.wait_for_index(60) and ann_ready(server)
    assert server.get_group("g").pic_count == 1500  # type: ignore[union-attr]
    assert names(server.search("g", vectors[42], limit=1)) == [42]
    cli.close()
    reopened = make(path, exact_threshold=500)
    assert reopened.get_group("g").pic_count == 1500  # type: ignore[union-attr]
    assert sum(len(b) for b in reopened.iter_group("g", batch=333)) == 1500
    assert names(reopened.search("g", vectors[77], limit=1)) == [77]
