"""`lookalike migrate`, run as a user runs it, between a real data dir and a real Milvus server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from lookalike.storage.base import GroupRecord, ImageRecord
from lookalike.storage.filters import Compare
from lookalike.storage.milvus import MilvusStore
from lookalike.storage.sqlite import SqliteStore
from support import unit

DIM = 512  # what the CLI opens both stores with

GROUPS = [
    GroupRecord("plain", "No tenant", create_time=1_600_000_000.5, update_time=1_600_000_100.25),
    GroupRecord("acme/shoes", "Acme shoes", brief="trainers, boots", max_capacity=500, max_qps=3, group_type=2,
                model="sscd-small", create_time=1_600_000_001.0, update_time=1_600_000_002.0),
    GroupRecord("acme/empty", "Nothing yet", create_time=1_600_000_003.0, update_time=1_600_000_003.0),
    GroupRecord("beta/shoes", "Beta's own shoes", create_time=1_600_000_004.0, update_time=1_600_000_005.0),
]
SIZES = {"plain": 30, "acme/shoes": 45, "acme/empty": 0, "beta/shoes": 25}


def fill(data_dir: Path, seed: int = 0) -> dict[str, dict[str, tuple[ImageRecord, np.ndarray, bytes | None]]]:
    """Groups of two tenants and of none; random unit vectors (no model makes these)."""
    rng = np.random.default_rng(seed)
    want: dict[str, dict[str, tuple[ImageRecord, np.ndarray, bytes | None]]] = {}
    with SqliteStore(data_dir, dim=DIM) as store:
        for group in GROUPS:
            store.create_group(group)
            want[group.group_id] = {}
            for i, vec in enumerate(unit(rng, SIZES[group.group_id], DIM)):
                record = ImageRecord(
                    group.group_id,
                    entity_id=f"item-{i % 6}",
                    pic_name=f"photos/{i:03d}.jpg",
                    custom_content=f"no. {i} — «ünïcode»" if i % 3 else "",
                    tags={"n": i, "colour": ["red", "blue"][i % 2], "price": i / 4} if i % 5 else {},
                    rect=(i, 2 * i, 100, 80) if i % 4 == 0 else None,
                    create_time=1_650_000_000.0 + i + 0.125,
                    update_time=1_650_000_500.0 + i,
                )
                thumb = bytes(rng.integers(0, 256, 200 + i, dtype=np.uint8)) if i % 2 else None
                store.add_image(record, vec, max_per_entity=100, thumbnail=thumb)
                want[group.group_id][record.pic_name] = (record, vec, thumb)
    return want


def migrate(to: str, data_dir: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "migrate", "--to", to, "--data-dir", str(data_dir), *extra],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=600,
    )


def summary(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def milvus(milvus_uri):
    """Settings of a Milvus of its own (a fresh collection prefix), and a store to inspect it."""
    prefix = f"mig{uuid.uuid4().hex[:10]}"
    store = MilvusStore(milvus_uri, prefix=prefix, dim=DIM, consistency="Strong")
    yield {"LOOKALIKE_MILVUS_URI": milvus_uri, "LOOKALIKE_MILVUS_PREFIX": prefix}, store
    store.drop_all()
    store.close()


def contents(store) -> dict[str, dict[str, tuple[ImageRecord, np.ndarray, bytes | None]]]:
    groups, total = store.list_groups(0, 100, namespace=None)
    assert total == len(groups)
    out = {}
    for group in groups:
        rows = [row for batch in store.iter_group(group.group_id, batch=16) for row in batch]
        out[group.group_id] = {record.pic_name: (record, vec, thumb) for record, vec, thumb in rows}
        assert len(out[group.group_id]) == len(rows) == group.pic_count  # no duplicates
    return out


def assert_same(got, want) -> None:
    assert sorted(got) == sorted(want)
    for group_id, pictures in want.items():
        assert sorted(got[group_id]) == sorted(pictures), group_id
        for name, (record, vec, thumb) in pictures.items():
            g_record, g_vec, g_thumb = got[group_id][name]
            assert g_record == record
            assert g_vec.shape == (DIM,) and np.allclose(g_vec, vec, atol=1e-6)
            assert g_thumb == thumb


def assert_same_groups(a, b) -> None:
    for group in GROUPS:
        assert a.get_group(group.group_id) == b.get_group(group.group_id), group.group_id


def test_migrate_to_milvus_and_back_copies_everything(tmp_path: Path, milvus) -> None:
    env, target = milvus
    data_dir = tmp_path / "data"
    want = fill(data_dir)

    dry = migrate("milvus", data_dir, env, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (
        "acme/shoes: would be created (model sscd-small); 45 in the source, 0 in the target; would copy 45"
        in dry.stdout
    )
    assert summary(dry) == {
        "groups": 4,
        "would_create": 4,
        "would_copy": 100,
        "present": 0,
        "refused": 0,
        "dry_run": True,
    }
    assert target.list_groups(0, 10, namespace=None) == ([], 0)

    result = migrate("milvus", data_dir, env)
    assert result.returncode == 0, result.stderr
    assert summary(result) == {"groups": 4, "created": 4, "copied": 100, "skipped": 0, "refused": 0, "mismatched": 0}
    assert "100/100 pictures" in result.stderr  # progress lines, stderr not being a terminal
    assert_same(contents(target), want)

    with SqliteStore(data_dir, dim=DIM) as source:
        assert_same_groups(source, target)
        assert [g.group_id for g in target.list_groups(0, 10, namespace="acme/")[0]] == ["acme/shoes", "acme/empty"]
        rng = np.random.default_rng(7)
        for group_id, pictures in want.items():
            vectors = [vec for _, vec, _ in pictures.values()][:3]
            queries = [v + 0.3 * q for v, q in zip(vectors, unit(rng, len(vectors), DIM), strict=True)] + list(
                unit(rng, 1, DIM)
            )
            for q in queries:
                for where in (None, Compare("colour", "=", "red")):
                    a = source.search(group_id, q, limit=5, where=where)
                    b = target.search(group_id, q, limit=5, where=where)
                    assert [h.image for h in a] == [h.image for h in b]
                    assert np.allclose([h.cosine for h in a], [h.cosine for h in b], atol=1e-5)

    back = tmp_path / "back"
    result = migrate("sqlite", back, env)
    assert result.returncode == 0, result.stderr
    assert summary(result)["copied"] == 100 and summary(result)["mismatched"] == 0
    with SqliteStore(back, dim=DIM) as restored, SqliteStore(data_dir, dim=DIM) as source:
        assert_same(contents(restored), want)
        assert_same_groups(restored, source)
        q = want["beta/shoes"]["photos/004.jpg"][1]
        assert [h.image.pic_name for h in restored.search("beta/shoes", q, limit=3)] == [
            h.image.pic_name for h in source.search("beta/shoes", q, limit=3)
        ]


def test_an_interrupted_migration_is_finished_by_running_it_again(tmp_path: Path, milvus) -> None:
    env, target = milvus
    data_dir = tmp_path / "data"
    want = fill(data_dir, seed=1)
    # What a run cut short leaves behind: one group created and partly copied.
    partial = list(want["acme/shoes"].values())[:20]
    target.create_group(GROUPS[1])
    assert target.import_images(partial) == 20

    dry = migrate("milvus", data_dir, env, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "acme/shoes: exists; 45 in the source, 20 in the target; would copy 25" in dry.stdout

    result = migrate("milvus", data_dir, env, "--batch", "8")
    assert result.returncode == 0, result.stderr
    assert summary(result) == {"groups": 4, "created": 3, "copied": 80, "skipped": 20, "refused": 0, "mismatched": 0}
    assert_same(contents(target), want)

    target.delete_images("plain", "item-1")  # lost from the target: copied again
    target.delete_images("acme/shoes", "item-2", "photos/008.jpg")
    result = migrate("milvus", data_dir, env)
    assert result.returncode == 0, result.stderr
    assert summary(result)["copied"] == 5 + 1 and summary(result)["skipped"] == 100 - 6
    assert_same(contents(target), want)

    again = migrate("milvus", data_dir, env)
    assert again.returncode == 0 and summary(again)["copied"] == 0, again.stderr

    back = tmp_path / "back"  # the other way, also in two goes
    with SqliteStore(back, dim=DIM) as early:
        early.create_group(GROUPS[3])
        early.import_images(list(want["beta/shoes"].values())[5:15])
    result = migrate("sqlite", back, env)
    assert result.returncode == 0, result.stderr
    assert summary(result)["copied"] == 90 and summary(result)["skipped"] == 10
    with SqliteStore(back, dim=DIM) as restored:
        assert_same(contents(restored), want)


def test_differing_counts_and_models_fail_with_the_groups_named(tmp_path: Path, milvus) -> None:
    env, target = milvus
    data_dir = tmp_path / "data"
    want = fill(data_dir, seed=2)
    target.create_group(GroupRecord("beta/shoes", "other model", model="sscd-small"))
    target.create_group(GroupRecord("plain", "No tenant"))
    extra = ImageRecord("plain", "only-here", "extra.jpg")
    target.add_image(extra, unit(np.random.default_rng(3), 1, DIM)[0], max_per_entity=10)

    result = migrate("milvus", data_dir, env)
    assert result.returncode == 1
    assert summary(result)["refused"] == 1 and summary(result)["mismatched"] == 1
    assert "lookalike: migrate: beta/shoes: model 'sscd-small' in the target, 'sscd' in the source" in result.stderr
    assert "lookalike: migrate: plain: 30 pictures in the source, 31 in the target" in result.stderr
    got = contents(target)
    assert sorted(got["acme/shoes"]) == sorted(want["acme/shoes"]) and got["beta/shoes"] == {}

    missing = migrate("milvus", tmp_path / "nothing", env)
    assert missing.returncode == 2 and "no galleries" in missing.stderr
    assert not (tmp_path / "nothing" / "gallery.db").exists()
