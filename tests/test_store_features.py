"""Per-picture local features and stored vectors in every store: kept with their picture, gone
with it, never handed to another picture of the same name, and carried by ``lookalike migrate``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from lookalike.models import local
from lookalike.storage import open_store
from lookalike.storage.base import GroupRecord, ImageRecord
from lookalike.storage.milvus import MilvusStore, picture_key
from lookalike.storage.sqlite import SqliteStore
from support import synthetic_image

DIM = 512  # what open_store (and the CLI) opens both stores with


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def blob(rng: np.random.Generator, keypoints: int) -> bytes:
    """Random bytes of the size of ``keypoints`` serialised keypoints (9-byte header, 132 a point)."""
    return rng.integers(0, 256, 9 + 132 * keypoints, dtype=np.uint8).tobytes()


def real_features(seed: int) -> bytes:
    return local.extract(synthetic_image(seed, (480, 360))).to_bytes()


@pytest.fixture
def store(tmp_path, backend):
    opened = open_store(backend.isolated().make_settings(tmp_path / "data"))
    yield opened
    if isinstance(opened, MilvusStore):
        opened.drop_all()
    opened.close()


def add(
    store, group: str, name: str, vec: np.ndarray, features: bytes | None = None, entity: str | None = None
) -> None:
    store.add_image(ImageRecord(group, entity or name, name), vec, max_per_entity=10, features=features)


def test_features_and_vectors_are_read_back_by_name(store) -> None:
    rng = np.random.default_rng(1)
    store.create_group(GroupRecord("g", "g"))
    vectors = unit(rng, 4)
    feats = {"a": real_features(1), "b": blob(rng, 10), "c": b""}
    assert len(feats["a"]) > 9 + 132 * 20  # SIFT found keypoints in the synthetic photo
    for (name, data), vec in zip(feats.items(), vectors[: len(feats)], strict=True):
        add(store, "g", name, 3.0 * vec, data)  # stored as the unit vector
    add(store, "g", "plain", vectors[3])  # no features

    got = store.get_features("g", ["a", "b", "c", "plain", "nobody", "a"])
    assert got == feats
    assert local.LocalFeatures.from_bytes(got["a"]).descriptors.shape[1] == 128
    assert store.get_features("g", []) == {}
    assert store.get_features("nowhere", ["a"]) == {}

    got_vecs = store.get_vectors("g", ["plain", "a", "nobody", "c"])
    assert sorted(got_vecs) == ["a", "c", "plain"]
    for name, i in (("a", 0), ("c", 2), ("plain", 3)):
        assert got_vecs[name].dtype == np.float32 and got_vecs[name].shape == (DIM,)
        assert np.allclose(got_vecs[name], vectors[i], atol=1e-6)
    assert store.get_vectors("g", []) == {} and store.get_vectors("nowhere", ["a"]) == {}


def stored_rows(store, group: str, names: list[str]) -> list[str]:
    """Milvus: the names whose features rows are still there, whatever reads would return."""
    if not isinstance(store, MilvusStore):
        return []
    keys = {picture_key(group, name): name for name in names}
    rows = store.client.get(store.features_collection, ids=list(keys), output_fields=["pk"], consistency_level="Strong")
    return sorted(keys[int(r["pk"])] for r in rows)


def test_features_go_with_their_picture(store) -> None:
    rng = np.random.default_rng(2)
    for group in ("g", "h"):
        store.create_group(GroupRecord(group, group))
    vectors = unit(rng, 8)
    add(store, "g", "p0", vectors[0], blob(rng, 5), entity="e1")
    add(store, "g", "p1", vectors[1], blob(rng, 6), entity="e1")
    add(store, "g", "p2", vectors[2], blob(rng, 7), entity="e2")
    kept = blob(rng, 8)
    add(store, "h", "p0", vectors[3], kept)  # same name, another group

    assert store.delete_images("g", "e1", "p0") == 1
    assert sorted(store.get_features("g", ["p0", "p1", "p2"])) == ["p1", "p2"]
    assert store.delete_images("g", "e1") == 1
    assert sorted(store.get_features("g", ["p0", "p1", "p2"])) == ["p2"]
    assert sorted(store.get_vectors("g", ["p0", "p1", "p2"])) == ["p2"]
    assert stored_rows(store, "g", ["p0", "p1"]) == []  # deleted, not merely hidden

    add(store, "g", "p0", vectors[4], entity="e1")  # the same name again, without features
    assert store.get_features("g", ["p0", "p1"]) == {}
    fresh = blob(rng, 9)
    add(store, "g", "p1", vectors[5], fresh, entity="e1")
    assert store.get_features("g", ["p0", "p1"]) == {"p1": fresh}

    store.delete_group("g")
    assert store.get_features("g", ["p0", "p1", "p2"]) == {}
    assert stored_rows(store, "g", ["p0", "p1", "p2"]) == []
    store.create_group(GroupRecord("g", "again"))
    for i, name in enumerate(("p0", "p1", "p2")):
        add(store, "g", name, vectors[6 + i % 2])
    assert store.get_features("g", ["p0", "p1", "p2"]) == {}
    assert store.get_features("h", ["p0"]) == {"p0": kept}
    if isinstance(store, MilvusStore):
        assert stored_rows(store, "h", ["p0"]) == ["p0"]


def test_put_features_replaces_for_existing_pictures_only(store) -> None:
    rng = np.random.default_rng(3)
    store.create_group(GroupRecord("g", "g"))
    vectors = unit(rng, 3)
    old = blob(rng, 4)
    add(store, "g", "a", vectors[0], old)
    add(store, "g", "b", vectors[1])
    add(store, "g", "c", vectors[2])
    new_a, new_b = blob(rng, 5), real_features(4)

    assert store.put_features("g", {"a": new_a, "b": new_b, "ghost": blob(rng, 3)}) == 2
    assert store.get_features("g", ["a", "b", "c", "ghost"]) == {"a": new_a, "b": new_b}
    assert store.put_features("g", {}) == 0
    assert store.put_features("nowhere", {"a": new_a}) == 0
    assert store.get_features("g", ["a"]) == {"a": new_a}

    store.delete_images("g", "b")  # put_features does not bring back a deleted picture's
    assert store.put_features("g", {"b": new_b}) == 0
    add(store, "g", "b", vectors[1])
    assert store.get_features("g", ["a", "b"]) == {"a": new_a}


def test_features_of_a_thousand_keypoints_round_trip(store) -> None:
    rng = np.random.default_rng(4)
    store.create_group(GroupRecord("g", "g"))
    vectors = unit(rng, 3)
    big = [blob(rng, 1000), blob(rng, 1000)]
    assert len(big[0]) == 132_009
    add(store, "g", "big0", vectors[0], big[0])
    add(store, "g", "small", vectors[1], blob(rng, 1))
    store.add_image(ImageRecord("g", "e", "big1"), vectors[2], max_per_entity=10)
    assert store.put_features("g", {"big1": big[1]}) == 1
    got = store.get_features("g", ["big0", "big1"])
    assert got == {"big0": big[0], "big1": big[1]}


def test_milvus_refuses_oversized_features_but_keeps_the_picture(backend, store, caplog) -> None:
    if backend.name != "milvus":
        pytest.skip("only Milvus has a size limit")
    rng = np.random.default_rng(5)
    store.create_group(GroupRecord("g", "g"))
    vectors = unit(rng, 2)
    huge = blob(rng, 4000)  # the most extract() may be asked for: ~704 KB of base64
    with caplog.at_level(logging.WARNING, logger="lookalike.storage.milvus"):
        add(store, "g", "huge", vectors[0], huge)
    assert "too large" in caplog.text
    assert store.get_image("g", "huge") is not None and store.get_features("g", ["huge"]) == {}

    small = blob(rng, 2)
    add(store, "g", "other", vectors[1], small)
    assert store.put_features("g", {"other": huge}) == 1  # found, not stored: no stale features either
    assert store.get_features("g", ["other", "huge"]) == {}


def test_milvus_never_hands_a_picture_its_predecessors_features(backend, store) -> None:
    """A features row left behind (another server's race, a crash) is ignored by the picture
    that now carries the name: it is stamped with the old picture's create_time."""
    if backend.name != "milvus":
        pytest.skip("SQLite deletes a picture and its features in one transaction")
    rng = np.random.default_rng(6)
    store.create_group(GroupRecord("g", "g"))
    vectors = unit(rng, 2)
    add(store, "g", "p", vectors[0], blob(rng, 3))
    key = picture_key("g", "p")
    collection = store._images("g")
    store._delete(collection, [key])  # the picture's row only, as a delete cut short could
    store._recent.put(key, "g", None)
    assert store.get_features("g", ["p"]) == {}
    add(store, "g", "p", vectors[1])
    assert store.get_features("g", ["p"]) == {} and sorted(store.get_vectors("g", ["p"])) == ["p"]
    assert stored_rows(store, "g", ["p"]) == ["p"]  # the stale row is there, and ignored

    store.delete_images("g", "p")  # a delete_group cut short after the group row: re-creating clears the rest
    store._upsert(store.features_collection, [store._features_row(key, ImageRecord("g", "p", "p"), b"old")])
    store._delete(store.groups_collection, ["g"])
    store._remember("g", None)
    store.create_group(GroupRecord("g", "again"))
    assert stored_rows(store, "g", ["p"]) == []


# ------------------------------------------------------------------ migrate


def migrate(to: str, data_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "migrate", "--to", to, "--data-dir", str(data_dir), "--batch", "4"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_migrate_carries_the_features_both_ways(tmp_path, milvus_uri) -> None:
    rng = np.random.default_rng(7)
    data_dir = tmp_path / "data"
    want: dict[str, bytes] = {}
    names = [f"photos/{i:02d}.jpg" for i in range(10)]
    with SqliteStore(data_dir, dim=DIM) as source:
        source.create_group(GroupRecord("acme/g", "g"))
        for i, (name, vec) in enumerate(zip(names, unit(rng, len(names)), strict=True)):
            data = None if i % 3 == 2 else real_features(i) if i % 3 else blob(rng, 1000)
            source.add_image(ImageRecord("acme/g", f"e{i}", name), vec, max_per_entity=10, features=data)
            if data is not None:
                want[name] = data
    prefix = f"feat{uuid.uuid4().hex[:10]}"
    env = {"LOOKALIKE_MILVUS_URI": milvus_uri, "LOOKALIKE_MILVUS_PREFIX": prefix}

    result = migrate("milvus", data_dir, env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["copied"] == 10
    target = MilvusStore(milvus_uri, prefix=prefix, dim=DIM, consistency="Strong")
    try:
        assert target.get_features("acme/g", names) == want
        back = tmp_path / "back"
        result = migrate("sqlite", back, env)
        assert result.returncode == 0, result.stderr
        with SqliteStore(back, dim=DIM) as restored:
            assert restored.get_features("acme/g", names) == want
    finally:
        target.drop_all()
        target.close()
