"""The library modules behind the CLI and the native dialect, called directly (no server, no CLI):
folder ingest (``lookalike.gallery.ingest``), store-to-store migration (``lookalike.gallery.migrate``)
and GalleryService's upload / update / delete by PicName. Embedded SQLite stores on temporary data
dirs; the real model where pictures are embedded. Milvus and the CLI's wording are covered by
test_migrate.py, test_gallery.py and test_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike import errors
from lookalike.config import Settings
from lookalike.engine import Engine
from lookalike.gallery import GalleryService, ingest
from lookalike.gallery.migrate import all_groups, migrate
from lookalike.gallery.service import batch_status
from lookalike.storage import open_store
from lookalike.storage.base import GroupRecord, ImageRecord
from lookalike.storage.sqlite import SqliteStore

DIM = 64


def _fill(store: SqliteStore, group: GroupRecord, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store.create_group(group)
    for i in range(count):
        vec = rng.standard_normal(DIM).astype(np.float32)
        record = ImageRecord(group.group_id, f"e{i % 3}", f"p{i:03d}", tags={"n": i}, create_time=1.0 + i)
        store.add_image(record, vec / np.linalg.norm(vec), max_per_entity=100, thumbnail=bytes([i]) if i % 2 else None)


def _pictures(store: SqliteStore) -> dict[str, set[str]]:
    return {g.group_id: store.pic_names(g.group_id) for g in all_groups(store)}


def test_migrate_copies_every_tenant_and_a_rerun_copies_nothing(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "a", dim=DIM) as source, SqliteStore(tmp_path / "b", dim=DIM) as target:
        _fill(source, GroupRecord("plain", "plain"), 7, 1)
        _fill(source, GroupRecord("acme/shoes", "shoes", model="sscd-small"), 5, 2)
        source.create_group(GroupRecord("acme/empty", "empty"))

        dry = migrate(source, None, dry_run=True)
        assert (dry.created, dry.copied, dry.skipped) == (3, 12, 0)
        assert all_groups(target) == []  # a dry run changes nothing

        first = migrate(source, target, batch=4)
        assert (first.created, first.copied, first.skipped, first.ok) == (3, 12, 0, True)
        assert _pictures(target) == _pictures(source)
        copied = target.get_image("acme/shoes", "p003")
        assert copied == source.get_image("acme/shoes", "p003")
        assert target.get_thumbnail("acme/shoes", "p003") == bytes([3])

        again = migrate(source, target, batch=4)
        assert (again.created, again.copied, again.skipped, again.ok) == (0, 0, 12, True)


def test_migrate_refuses_a_group_of_another_model_and_names_it(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "a", dim=DIM) as source, SqliteStore(tmp_path / "b", dim=DIM) as target:
        _fill(source, GroupRecord("g", "g", model="sscd"), 3, 1)
        target.create_group(GroupRecord("g", "g", model="sscd-small"))
        report = migrate(source, target)
        assert not report.ok
        assert list(report.refused) == ["g"] and "sscd-small" in report.refused["g"]
        assert target.pic_names("g") == set()


def test_batch_status_is_201_207_or_the_shared_error_status() -> None:
    stored = ImageRecord("g", "e", "p")
    full, busy = errors.LookalikeError("full", code="Full", status=507), errors.InvalidParameter("bad")
    assert batch_status([stored, stored]) == 201
    assert batch_status([stored, busy]) == 207
    assert batch_status([full, full]) == 507
    assert batch_status([full, busy]) == 400


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(Settings(threads=2, group_qps=False))


@pytest.fixture
def gallery(tmp_path: Path, engine: Engine):
    service = GalleryService(open_store(Settings(data_dir=tmp_path / "data", threads=2)), engine)
    yield service
    service.close()


def test_ingest_folder_names_by_path_and_resumes(tmp_path: Path, gallery: GalleryService, photos) -> None:
    folder = tmp_path / "pictures"
    (folder / "mug").mkdir(parents=True)
    for i in range(2):
        (folder / "mug" / f"view{i}.jpg").write_bytes(photos.jpeg(300 + i, (200, 150)))
    (folder / "poster.jpg").write_bytes(photos.jpeg(310, (200, 150)))
    (folder / "blank.jpg").write_bytes(photos.solid())
    (folder / "notes.txt").write_text("not a picture")

    with pytest.raises(errors.ImageGroupIdNotExist):
        ingest.target_group(gallery, "shelf", create=False, model=None)
    group = ingest.target_group(gallery, "shelf", create=True, model="sscd-small")
    with pytest.raises(errors.InvalidParameterValue):
        ingest.target_group(gallery, "shelf", create=False, model="sscd")

    seen: list[int] = []
    report = ingest.ingest_folder(gallery, group, folder, gallery.engine.settings, batch=2, progress=seen.append)
    assert (report.added, report.skipped) == (3, 0)
    assert [name for name, _ in report.refused] == ["blank.jpg"]
    assert sum(seen) == 4 and max(seen) <= 2
    assert {(r.entity_id, r.pic_name) for r in gallery.iter_images("shelf")} == {
        ("mug", "mug/view0.jpg"),
        ("mug", "mug/view1.jpg"),
        ("poster", "poster.jpg"),
    }

    (folder / "blank.jpg").unlink()
    again = ingest.ingest_folder(gallery, group, folder, gallery.engine.settings)
    assert (again.added, again.skipped, again.refused) == (0, 3, [])


def test_uploads_default_names_from_files_and_update_delete_by_pic_name(gallery: GalleryService, photos) -> None:
    gallery.create_group("up", model="sscd-small")
    uploads = [("red mug.jpg", photos.jpeg(320)), ("blue.cup.png", photos.jpeg(321))]
    with pytest.raises(errors.InvalidParameter):
        gallery.add_uploads("up", uploads, pic_name="one")  # one name for two files
    stored = gallery.add_uploads("up", uploads, tags={"shop": "a"})
    assert [(r.entity_id, r.pic_name, r.tags) for r in stored if isinstance(r, ImageRecord)] == [
        ("red mug", "red mug.jpg", {"shop": "a"}),
        ("blue.cup", "blue.cup.png", {"shop": "a"}),
    ]

    updated = gallery.update_image("up", "blue.cup.png", custom_content="shelf 2")
    assert (updated.custom_content, updated.tags) == ("shelf 2", {"shop": "a"})
    assert gallery.update_image("up", "blue.cup.png") == updated  # nothing to change: as it is
    assert gallery.delete_image("up", "red mug.jpg") == 1
    with pytest.raises(errors.ImageNotFound):
        gallery.delete_image("up", "red mug.jpg")
