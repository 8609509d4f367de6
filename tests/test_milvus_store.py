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
