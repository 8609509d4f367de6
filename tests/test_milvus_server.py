"""tests/milvus_server.py: a real Milvus standalone server on loopback, as the Milvus tests use it."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest
from pymilvus import DataType, MilvusClient

from milvus_server import MilvusProcess

DIM = 4


def make_collection(client: MilvusClient, name: str) -> None:
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("label", DataType.VARCHAR, max_length=64)
    index = client.prepare_index_params()
    index.add_index(field_name="vec", index_type="FLAT", metric_type="IP")
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")


def rows(n: int, tag: str) -> list[dict]:
    return [{"id": i, "vec": [float(i), 1.0, 0.0, -1.0], "label": f"{tag}{i}"} for i in range(n)]


def labels(client: MilvusClient, name: str) -> dict[int, str]:
    got = client.query(name, filter="id >= 0", output_fields=["id", "label"], consistency_level="Strong")
    return {row["id"]: row["label"] for row in got}


def assert_on_loopback(uri: str) -> None:
    parts = urlsplit(uri)
    assert parts.scheme == "http" and parts.hostname == "127.0.0.1", uri
    with socket.create_connection(("127.0.0.1", parts.port), timeout=5):
        pass


def test_session_server_answers(milvus_uri):
    assert_on_loopback(milvus_uri)
    client = MilvusClient(uri=milvus_uri)
    try:
        name = "smoke_session"
        if client.has_collection(name):
            client.drop_collection(name)
        make_collection(client, name)
        assert client.insert(name, rows(5, "a"))["insert_count"] == 5
        assert labels(client, name) == {i: f"a{i}" for i in range(5)}  # Strong: sees the insert at once
        hits = client.search(name, data=[[4.0, 1.0, 0.0, -1.0]], limit=1, output_fields=["label"])
        assert hits[0][0]["entity"]["label"] == "a4"
        client.drop_collection(name)
        assert name not in client.list_collections()
    finally:
        client.close()


def test_restart_keeps_data(tmp_path):
    """stop() then start() on one base dir, then kill() (SIGKILL) then start(): the collection and
    its rows are there each time, loaded, and a Strong query answers at once (start() returns
    only when the earlier run's sessions no longer hold up time ticks)."""
    server = MilvusProcess(tmp_path / "milvus")
    try:
        with server:
            assert_on_loopback(server.uri)
            first_uri = server.uri
            client = MilvusClient(uri=server.uri)
            make_collection(client, "durable")
            client.insert("durable", rows(3, "kept"))
            assert len(labels(client, "durable")) == 3
            client.close()
        assert not server.alive()

        server.start()  # the same base dir: the same ports when free, the data still there
        assert server.uri == first_uri
        client = MilvusClient(uri=server.uri)
        assert "durable" in client.list_collections()
        started = time.monotonic()
        assert labels(client, "durable") == {i: f"kept{i}" for i in range(3)}
        assert time.monotonic() - started < 5
        client.insert("durable", [{"id": 9, "vec": [9.0, 1.0, 0.0, -1.0], "label": "late"}])
        client.close()

        server.kill()
        assert not server.alive()
        server.start()
        client = MilvusClient(uri=server.uri)
        started = time.monotonic()
        assert labels(client, "durable") == {**{i: f"kept{i}" for i in range(3)}, 9: "late"}
        assert time.monotonic() - started < 5
        client.close()
        server.stop()
    finally:
        server.kill()
    assert not server.alive()
    with pytest.raises(OSError):  # nothing listens there any more
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
