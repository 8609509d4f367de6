"""The Milvus store against a real Milvus server: filter translation, consistency, durability.

The gallery's behaviour on Milvus is covered by tests/test_gallery.py and tests/test_tencent_sdk.py
(both run on every backend); this file checks what only this backend can get wrong.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import numpy as np
import pytest

from lookalike import errors
from lookalike.gallery import parse_filter
from lookalike.storage.base import GroupRecord, ImageRecord
from lookalike.storage.milvus import MilvusStore, picture_key
from lookalike.storage.milvus_schema import reach_key

DIM = 16


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def make(milvus_uri):
    opened: list[MilvusStore] = []

    def _make(prefix: str | None = None, **kw) -> MilvusStore:
        store = MilvusStore(milvus_uri, prefix=prefix or f"s{uuid.uuid4().hex[:10]}", dim=DIM, **kw)
        opened.append(store)
        return store

    yield _make
    for store in opened:
        store.close()


def fill(store: MilvusStore, vectors: np.ndarray, tags: list[dict], group: str = "g") -> None:
    store.create_group(GroupRecord(group, group))
    for i, (vec, tag) in enumerate(zip(vectors, tags, strict=True)):
        store.add_image(ImageRecord(group, f"e{i}", f"p{i}", tags=tag), vec, max_per_entity=10)


def test_search_pages_threshold_and_selective_filters(make) -> None:
    nrng = np.random.default_rng(1)
    vectors = unit(nrng, 300)
    tags = [{"shop": f"s{i % 30}"} for i in range(300)]
    store = make()
    fill(store, vectors, tags)
    q = vectors[5]
    exact = np.argsort(-(vectors @ q), kind="stable")
    full = store.search("g", q, limit=50)
    assert [h.image.pic_name for h in full[:10]] == [f"p{i}" for i in exact[:10]]
    page = store.search("g", q, limit=10, offset=10)
    assert [h.image.pic_name for h in page] == [h.image.pic_name for h in full[10:20]]
    cut = float(vectors[exact[7]] @ q)
    above = store.search("g", q, limit=100, min_cosine=cut)
    assert {h.image.pic_name for h in above} == {f"p{i}" for i in exact[:8]}
    # A filter that keeps 10 of 300 still returns all 10, best first.
    rare = store.search("g", q, limit=10, where=parse_filter("shop = s3"))
    want = [f"p{i}" for i in exact if i % 30 == 3]
    assert [h.image.pic_name for h in rare] == want


def test_writes_are_visible_to_the_next_search_and_constraints_hold(make) -> None:
    nrng = np.random.default_rng(2)
    vectors = unit(nrng, 12)
    store = make()
    store.create_group(GroupRecord("g", "g", max_capacity=11))
    for i in range(10):  # no pause anywhere: each search follows the write at once
        store.add_image(ImageRecord("g", "e", f"p{i}", tags={"n": i}), vectors[i], max_per_entity=10)
        assert store.search("g", vectors[i], limit=1)[0].image.pic_name == f"p{i}"
    with pytest.raises(errors.ImageEntityCountExceed):
        store.add_image(ImageRecord("g", "e", "p10"), vectors[10], max_per_entity=10)
    with pytest.raises(errors.PicNameAlreadyExist):
        store.add_image(ImageRecord("g", "other", "p3"), vectors[10], max_per_entity=10)
    store.add_image(ImageRecord("g", "f", "p10"), vectors[10], max_per_entity=10)
    with pytest.raises(errors.ImageNumExceed):
        store.add_image(ImageRecord("g", "f", "p11"), vectors[11], max_per_entity=10)
    assert store.update_images("g", "e", "p4", tags={"n": 99}, custom_content="new") == 1
    hits = store.search("g", vectors[4], limit=5, where=parse_filter("n = 99"))
    assert [(h.image.pic_name, h.image.custom_content) for h in hits] == [("p4", "new")]
    assert store.delete_images("g", "e", "p4") == 1
    assert "p4" not in {h.image.pic_name for h in store.search("g", vectors[4], limit=20)}
    assert store.get_group("g").pic_count == 10
    assert store.pic_names("g") == {f"p{i}" for i in range(11) if i != 4} and store.pic_names("nope") == set()
    store.add_image(ImageRecord("g", "f", "p11"), vectors[11], max_per_entity=10)  # room again
    store.delete_group("g")
    assert store.get_group("g") is None and store.search("g", vectors[0], limit=3) == []
    store.create_group(GroupRecord("g", "g"))  # a new group of the same name starts empty
    assert store.search("g", vectors[0], limit=3) == [] and store.get_group("g").pic_count == 0


def test_two_servers_on_one_milvus(make, monkeypatch) -> None:
    """Strong consistency: another process's acknowledged write is seen by the next search. And a
    PicName added by two processes at once stays one picture (its key is a hash of the name).

    The race is scheduled, not timed: b's add of p1 lands between a's constraint check (which
    found no p1) and a's insert. Adding from a after b had finished, as this test once did, only
    raced while a's Bounded-staleness read was younger than Milvus' window (5 s); on a loaded
    machine a saw p1 and refused it (PicNameAlreadyExist), which tested nothing."""
    nrng = np.random.default_rng(3)
    vectors = unit(nrng, 4)
    a = make()
    b = make(a.prefix, consistency="Strong")
    a.create_group(GroupRecord("g", "g"))
    a.add_image(ImageRecord("g", "e", "p0"), vectors[0], max_per_entity=10)
    assert [h.image.pic_name for h in b.search("g", vectors[0], limit=1)] == ["p0"]
    insert = a._insert

    def b_lands_first(collection: str, rows: list[dict]) -> None:
        b.add_image(ImageRecord("g", "e", "p1"), vectors[1], max_per_entity=10)  # b's check sees no p1 either
        insert(collection, rows)

    monkeypatch.setattr(a, "_insert", b_lands_first)
    a.add_image(ImageRecord("g", "e", "p1"), vectors[2], max_per_entity=10)  # both were told "added"
    monkeypatch.undo()
    rows = b.client.query(a._images("g"), filter='pic_name == "p1"', output_fields=["pk"], consistency_level="Strong")
    assert [r["pk"] for r in rows] == [picture_key("g", "p1")]


def families(n: int, size: int, noise: float, seed: int) -> np.ndarray:
    """``n`` unit vectors in families of ``size`` near-copies (cosine ~0.999 at noise 0.05)."""
    nrng = np.random.default_rng(seed)
    centres = unit(nrng, -(-n // size))
    vectors = np.repeat(centres, size, axis=0)[:n] + noise / np.sqrt(DIM) * nrng.normal(size=(n, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def indexed(store: MilvusStore, group: str, n: int, timeout: float = 300) -> None:
    """Until every row of the group is in a sealed segment with its HNSW index, and visible to
    a Bounded read: every search goes through the graph from then on."""
    from pymilvus import utility

    collection = store._images(group)
    store.client.flush(collection)
    deadline = time.monotonic() + timeout
    while True:
        segments = utility.get_query_segment_info(collection, using=store.client._using)
        if sum(s.num_rows for s in segments) >= n and all(s.state == 3 and s.index_name for s in segments):
            break
        assert time.monotonic() < deadline, f"Milvus did not index {n} rows in {timeout} s: {segments}"
        time.sleep(1)
    time.sleep(6)  # past Bounded staleness (5 s)


def test_every_picture_is_found_by_its_own_vector_even_where_the_graph_cannot_reach_it(make) -> None:
    """Issue 18's island, made common: an HNSW graph built with too few links (M 4, build breadth
    8, search breadth 10) over families of near-copies loses many pictures, and in a real
    20k-picture group the default graph lost 2. The store's reach-key lookup must still return
    every picture first from its own vector, and keep the tag filter."""
    n = 1500
    vectors = families(n, 8, 0.05, seed=7)
    store = make(consistency="Bounded", hnsw_m=4, hnsw_ef_construction=8, hnsw_ef=10, thumbnails=False)
    store.create_group(GroupRecord("g", "g"))
    tags = [{"half": "even" if i % 2 == 0 else "odd"} for i in range(n)]
    store.import_images([(ImageRecord("g", f"e{i}", f"p{i}", tags=tags[i]), vectors[i], None) for i in range(n)])
    indexed(store, "g", n)
    collection = store._images("g")
    graph = store.client.search(
        collection, data=vectors.tolist(), filter='group_id == "g"', limit=1, output_fields=["pic_name"],
        search_params={"metric_type": "IP", "params": {"ef": 10}}, consistency_level="Bounded",
    )
    lost = [i for i, found in enumerate(graph) if not found or found[0]["entity"]["pic_name"] != f"p{i}"]
    assert len(lost) > n // 20, "the weak graph no longer loses pictures: this test would prove nothing"
    for i in range(n):
        hits = store.search("g", vectors[i], limit=3)
        assert hits[0].image.pic_name == f"p{i}" and hits[0].cosine > 0.9999, (i, hits[:3])
    keys = [reach_key(v) for v in vectors]
    checked = 0
    for i in lost[:50]:  # the lookup keeps the filter, and adds the near-copies it may
        other = "even" if tags[i]["half"] == "odd" else "odd"
        hits = store.search("g", vectors[i], limit=10, where=parse_filter(f"half = {other}"))
        assert all(h.image.tags["half"] == other for h in hits)
        # Siblings passing the filter with the same key: found whatever Milvus' filtered walk
        # over this weak graph returns (sometimes nothing), and nearer than any other row.
        siblings = {
            f"p{j}" for j in range(n)
            if keys[j] == keys[i] and tags[j]["half"] == other and float(vectors[j] @ vectors[i]) > 0.99
        }
        assert siblings <= {h.image.pic_name for h in hits}
        checked += len(siblings)
        assert store.search("g", vectors[i], limit=10, min_cosine=1.5) == []
    assert checked > 0


def test_a_collection_made_before_reach_keys_still_works(make, caplog) -> None:
    """Milvus 2.3 cannot add a field to a collection: one made before reach keys must keep
    serving (adds, updates, searches) without them, and say how to get them."""

    class Before(MilvusStore):
        def _images_schema(self):
            schema, index = super()._images_schema()
            schema._fields = [f for f in schema.fields if f.name != "reach_key"]
            return schema, index

    nrng = np.random.default_rng(4)
    vectors = unit(nrng, 3)
    old = Before(make().uri, prefix=f"s{uuid.uuid4().hex[:10]}", dim=DIM)
    old.create_group(GroupRecord("g", "g"))
    old.add_image(ImageRecord("g", "e", "p0"), vectors[0], max_per_entity=10)
    old.close()
    with caplog.at_level("WARNING", logger="lookalike.storage.milvus"):
        store = make(old.prefix, consistency="Strong")
        store.add_image(ImageRecord("g", "e", "p1"), vectors[1], max_per_entity=10)
        assert store.update_images("g", "e", "p0", tags={"k": "v"}) == 1
        assert [h.image.pic_name for h in store.search("g", vectors[2], limit=5)] == sorted(
            ["p0", "p1"], key=lambda name: -float(vectors[int(name[1])] @ vectors[2])
        )
    assert "predates reach keys" in caplog.text and "LOOKALIKE_MILVUS_PREFIX" in caplog.text
    fresh = make()
    fresh.create_group(GroupRecord("g", "g"))
    fields = {f["name"] for f in fresh.client.describe_collection(fresh._images("g"))["fields"]}
    assert "reach_key" in fields


def test_milvus_down_is_store_unavailable_and_a_crash_loses_no_acknowledged_write(tmp_path) -> None:
    from milvus_server import MilvusProcess

    server = MilvusProcess(tmp_path / "milvus")
    server.start()
    try:
        store = MilvusStore(server.uri, dim=DIM, timeout=10)
        vectors = unit(np.random.default_rng(4), 50)
        store.create_group(GroupRecord("g", "g"))
        for i in range(50):
            store.add_image(ImageRecord("g", f"e{i // 10}", f"p{i}"), vectors[i], max_per_entity=10)
        server.kill()  # SIGKILL right after the last acknowledged insert
        started = time.monotonic()
        with pytest.raises(errors.StoreUnavailable):
            store.search("g", vectors[0], limit=3)
        assert time.monotonic() - started < 60
        store.close()
        server.start()
        after = MilvusStore(server.uri, dim=DIM, consistency="Strong")
        assert after.get_group("g").pic_count == 50
        assert [h.image.pic_name for h in after.search("g", vectors[49], limit=1)] == ["p49"]
        after.close()
    finally:
        server.stop()


def test_a_frozen_milvus_is_store_unavailable_within_the_timeout(tmp_path) -> None:
    """A Milvus that accepts connections but answers nothing (SIGSTOP: a stalled or overloaded
    server) is StoreUnavailable after ``timeout``, also where pymilvus lets gRPC's own
    DEADLINE_EXCEEDED through (creating the collections), never a raw gRPC error."""
    from milvus_server import MilvusProcess

    server = MilvusProcess(tmp_path / "milvus")
    server.start()
    try:
        MilvusStore(server.uri, dim=DIM, timeout=60).close()  # the server works
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        try:
            with pytest.raises(errors.StoreUnavailable):
                MilvusStore(server.uri, prefix="frozen", dim=DIM, timeout=2)
        finally:
            os.kill(server.pid, signal.SIGCONT)
    finally:
        server.stop()


def test_the_server_on_milvus_answers_503_when_milvus_is_gone(tmp_path, server_factory, photos) -> None:
    from milvus_server import MilvusProcess

    milvus = MilvusProcess(tmp_path / "milvus")
    milvus.start()
    try:
        server = server_factory(env={"LOOKALIKE_MILVUS_URI": milvus.uri})
        with httpx.Client(base_url=server.base_url, timeout=120) as api:
            assert api.post("/v1/groups", json={"group_id": "g", "model": "sscd-small"}).status_code == 201
            milvus.kill()
            r = api.get("/v1/groups")
            assert r.status_code == 503 and r.json()["error"]["code"] == "StoreUnavailable", r.text
            tc = api.post(
                "/", json={"GroupId": "g"}, headers={"X-TC-Action": "DescribeGroups", "X-TC-Version": "2019-05-29"}
            )
            assert tc.status_code == 200 and tc.json()["Response"]["Error"]["Code"] == "FailedOperation.InnerError", (
                tc.text
            )
        server.stop()
    finally:
        milvus.stop()
