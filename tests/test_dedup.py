"""Dedup: the pair finder (exact and ANN paths), the folder scan with its cache and actions, the
CLI verb, and the gallery's duplicates (service on each backend, and the native route)."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps

from lookalike import scores
from lookalike.config import Settings
from lookalike.dedup import Match, actions, find_duplicates, matching, similar_pairs
from lookalike.dedup.cache import CACHE_FILE
from lookalike.engine import Engine
from lookalike.gallery import GalleryService, NewImage
from lookalike.storage import open_store
from support import distinct_photos, encode

# --------------------------------------------------------------------------- pairs


def _families(count: int, size: int, noise: float, seed: int = 0) -> np.ndarray:
    """``count`` random centres, each with ``size`` noisy copies: rows i*size..(i+1)*size-1."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(count, 64)).astype(np.float32)
    rows = np.repeat(centres, size, axis=0) + noise * rng.normal(size=(count * size, 64)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("path", ["exact", "ann"])
def test_similar_pairs_finds_each_family_and_nothing_else(path, monkeypatch):
    if path == "ann":
        monkeypatch.setattr(matching, "EXACT_LIMIT", 0)
    vectors = _families(400, 4, noise=0.25)
    family = np.arange(len(vectors)) // 4
    expected = 400 * 6  # every pair within every family (4 choose 2)
    # HNSW's threaded build differs run to run, and a tight family can end up on an island of
    # the graph (a third of builds lost one before the exact fallback): several builds, all whole
    for _ in range(8 if path == "ann" else 1):
        pairs = similar_pairs(vectors, 0.8, threads=2)
        assert len(pairs) and np.all(pairs.left < pairs.right)
        assert np.all(family[pairs.left] == family[pairs.right])  # no pair across families
        # HNSW is approximate: a pair may be missed, never invented; the groups still join up
        assert len(pairs) == expected if path == "exact" else len(pairs) >= 0.995 * expected
        exact = np.einsum("ij,ij->i", vectors[pairs.left], vectors[pairs.right])
        np.testing.assert_allclose(pairs.cosine, exact, atol=1e-5)  # re-scored exactly, not int8
        groups = matching.group_pairs(len(vectors), pairs)
        assert len(groups) == 400 and all(len(g) == 4 and family[g[0]] == family[g[-1]] for g in groups)


def test_similar_pairs_bounds_candidates_but_still_joins_a_crowd():
    """A thousand copies of one image: n x k pairs, not n x n, and still one group."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=64)
    crowd = base + 0.01 * rng.normal(size=(1000, 64))
    crowd /= np.linalg.norm(crowd, axis=1, keepdims=True)
    pairs = similar_pairs(crowd.astype(np.float32), 0.9, neighbours=8)
    assert len(pairs) <= 1000 * 8
    assert [len(g) for g in matching.group_pairs(1000, pairs)] == [1000]


def test_similar_pairs_of_too_few_vectors():
    assert len(similar_pairs(np.ones((1, 8), dtype=np.float32), 0.5)) == 0
    assert len(similar_pairs(np.empty((0, 8), dtype=np.float32), 0.5)) == 0


# --------------------------------------------------------------------------- a folder


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(Settings(threads=2))


def _save(image: Image.Image, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    """Five different photos; copies of photo 0 (bytes, PNG = same pixels, a crop, a mirror
    image, in a sub-folder, resized); of photo 1 (bytes); noise: a damaged JPEG, a text file
    named .png, a symlink and a hidden folder (both left out)."""
    root = tmp_path / "photos"
    photos = distinct_photos(5)
    for i, photo in enumerate(photos):
        _save(photo, root / f"photo{i}.jpg", quality=92)
    original = photos[0]
    (root / "photo0 copy.jpg").write_bytes((root / "photo0.jpg").read_bytes())
    _save(Image.open(root / "photo0.jpg"), root / "photo0.png")  # same pixels as photo0.jpg
    w, h = original.size
    _save(original.crop((w // 10, h // 10, w - w // 8, h - h // 8)), root / "edits" / "crop.jpg", quality=85)
    _save(ImageOps.mirror(original), root / "edits" / "mirror.jpg", quality=80)
    _save(original.resize((w // 2, h // 2)), root / "edits" / "small.jpg", quality=75)
    (root / "more").mkdir()
    (root / "more" / "photo1.jpg").write_bytes((root / "photo1.jpg").read_bytes())
    (root / "damaged.jpg").write_bytes((root / "photo2.jpg").read_bytes()[:300])
    (root / "notes.png").write_text("not an image")
    (root / "link.jpg").symlink_to(root / "photo3.jpg")
    (root / ".thumbs").mkdir()
    (root / ".thumbs" / "photo4.jpg").write_bytes((root / "photo4.jpg").read_bytes())
    return root


def _settings(tmp_path: Path, **extra) -> Settings:
    return Settings(data_dir=tmp_path / "data", threads=2, **extra)


def _groups(report) -> dict[str, dict[str, Match]]:
    return {g.keep.path: {d.path: d.match for d in g.duplicates} for g in report.groups}


def test_exact_finds_bytes_and_pixels_without_the_model(folder, tmp_path):
    # A model that does not exist: the exact level must never load one.
    report = find_duplicates(folder, "exact", settings=_settings(tmp_path, model="no-such-model"))
    assert report.model is None and report.embedded == 0
    groups = _groups(report)
    # "largest": equal pixels, so the bigger file (the PNG) is kept
    assert groups == {
        "photo0.png": {"photo0 copy.jpg": Match.PIXELS, "photo0.jpg": Match.PIXELS},
        "photo1.jpg": {"more/photo1.jpg": Match.BYTES},
    }
    assert report.files == 13  # 5 photos, copy, png, 3 edits, more/photo1, damaged, notes: no link, no hidden
    import sqlite3

    with sqlite3.connect(tmp_path / "data" / CACHE_FILE) as db:  # pixel digests kept for the next run
        assert db.execute("SELECT count(*) FROM contents WHERE pixels IS NOT NULL").fetchone()[0] >= 2
    assert {s.path for s in report.skipped} == {"damaged.jpg", "notes.png"}


def test_near_groups_copies_and_edits_and_labels_them(folder, tmp_path, engine):
    report = find_duplicates(folder, "near", settings=_settings(tmp_path), engine=engine)
    groups = _groups(report)
    assert len(groups) == 2
    keep0 = next(k for k in groups if k.startswith("photo0"))
    assert set(groups[keep0]) | {keep0} == {
        "photo0.jpg", "photo0 copy.jpg", "photo0.png", "edits/crop.jpg", "edits/mirror.jpg", "edits/small.jpg"
    }
    assert keep0 == "photo0.png"  # largest: equal pixels, the PNG is the bigger file
    dups = {d.path: d for g in report.groups for d in g.duplicates}
    assert dups["photo0.jpg"].match is Match.PIXELS
    assert dups["photo0 copy.jpg"].match is Match.PIXELS
    for edit in ("edits/crop.jpg", "edits/mirror.jpg", "edits/small.jpg"):
        assert dups[edit].match is Match.NEAR and scores.NEAR_DUPLICATE_COSINE <= dups[edit].cosine < 0.999
    assert groups["photo1.jpg"] == {"more/photo1.jpg": Match.BYTES}
    # one embedding per distinct content: 5 photos + 3 edits (photo0.png decodes to photo0.jpg's
    # pixels but is other bytes, so it is embedded too); the byte copies are not
    assert report.embedded == 9 and report.cached == 0
    assert report.reclaimable == sum(d.size for d in dups.values())


def test_a_stricter_threshold_leaves_only_the_closest(folder, tmp_path, engine):
    report = find_duplicates(folder, "near", min_cosine=0.995, settings=_settings(tmp_path), engine=engine)
    members = {d.path for g in report.groups for d in g.duplicates} | {g.keep.path for g in report.groups}
    assert "edits/crop.jpg" not in members and "edits/mirror.jpg" not in members
    assert {"photo0.jpg", "photo0.png", "more/photo1.jpg"} <= members


def test_a_file_whose_pixels_fail_to_decode_is_skipped_with_its_copies(folder, tmp_path, engine):
    """A header that reads but data that does not decode: found by the model step, not the scan."""
    data = (folder / "photo2.jpg").read_bytes()
    broken = data[: len(data) // 3]  # header intact, scans cut
    (folder / "cut.jpg").write_bytes(broken)
    (folder / "cut copy.jpg").write_bytes(broken)
    exact = find_duplicates(folder, "exact", settings=_settings(tmp_path))
    assert "cut.jpg" not in {s.path for s in exact.skipped}  # the header alone reads fine
    report = find_duplicates(folder, "near", settings=_settings(tmp_path), engine=engine)
    skipped = {s.path: s.code for s in report.skipped}
    assert skipped.get("cut.jpg") == skipped.get("cut copy.jpg") == "ImageDecodeFailed"
    assert not any("cut" in p for g in report.groups for p in [g.keep.path, *(d.path for d in g.duplicates)])


def test_keep_policies(folder, tmp_path, engine):
    os.utime(folder / "edits" / "small.jpg", ns=(1, 1))  # the oldest file of the photo0 family
    oldest = find_duplicates(folder, "near", keep="oldest", settings=_settings(tmp_path), engine=engine)
    assert any(g.keep.path == "edits/small.jpg" for g in oldest.groups)
    first = find_duplicates(folder, "near", keep="first", settings=_settings(tmp_path), engine=engine)
    assert any(g.keep.path == "edits/crop.jpg" for g in first.groups)  # first by path


def test_the_cache_embeds_only_new_or_changed_files(folder, tmp_path, engine):
    settings = _settings(tmp_path)
    first = find_duplicates(folder, "near", settings=settings, engine=engine)
    assert first.embedded == 9 and (tmp_path / "data" / CACHE_FILE).is_file()
    again = find_duplicates(folder, "near", settings=settings, engine=engine)
    assert again.embedded == 0 and again.cached == 9
    assert _groups(again) == _groups(first)
    _save(distinct_photos(6)[5], folder / "new" / "photo5.jpg")
    _save(ImageOps.flip(distinct_photos(2)[1]), folder / "photo1.jpg", quality=90)  # changed in place
    grown = find_duplicates(folder, "near", settings=settings, engine=engine)
    # two new contents; photo1's old content lives on in more/photo1.jpg, from the cache
    assert grown.embedded == 2 and grown.cached == 9
    assert "photo1.jpg" not in _groups(grown)  # no longer the same bytes as more/photo1.jpg
    # a scene-level run reuses the vectors: nothing to embed
    assert find_duplicates(folder, "scene", settings=settings, engine=engine).embedded == 0


def test_a_damaged_cache_costs_time_not_results(folder, tmp_path, engine):
    settings = _settings(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / CACHE_FILE).write_bytes(b"this is not a database" * 100)
    report = find_duplicates(folder, "near", settings=settings, engine=engine)
    assert report.embedded == 9 and len(report.groups) == 2
    assert find_duplicates(folder, "near", settings=settings, engine=engine).embedded == 0


def test_camera_sized_photos_pass_where_the_api_would_refuse_them(tmp_path, engine):
    """The API caps images at 4096 px; a folder holds the user's own photos, and a 24 MP photo
    (6000x4000) is ordinary. The engine passed in keeps its API limits: the folder's apply."""
    assert engine.settings.max_image_side < 6000
    big = distinct_photos(1)[0].resize((6000, 4000))
    root = tmp_path / "camera"
    _save(big, root / "DSC0001.jpg", quality=85)
    _save(big.resize((1500, 1000)), root / "DSC0001-small.jpg", quality=85)
    report = find_duplicates(root, "near", settings=_settings(tmp_path), engine=engine)
    assert not report.skipped
    assert _groups(report) == {"DSC0001.jpg": {"DSC0001-small.jpg": Match.NEAR}}
    assert report.groups[0].keep.width == 6000


def test_the_python_api(folder, tmp_path, monkeypatch):
    import lookalike

    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(tmp_path / "data"))
    report = lookalike.find_duplicates(folder, "exact", cache=False)
    assert {g.keep.path for g in report.groups} == {"photo0.png", "photo1.jpg"}
    assert not (tmp_path / "data").exists()  # cache=False writes nothing


def test_bad_arguments(tmp_path):
    with pytest.raises(Exception, match="not a folder"):
        find_duplicates(tmp_path / "missing")
    with pytest.raises(Exception, match="level must be"):
        find_duplicates(tmp_path, "similar")
    with pytest.raises(Exception, match="keep must be"):
        find_duplicates(tmp_path, keep="best")  # type: ignore[arg-type]  # an unknown choice on purpose


# --------------------------------------------------------------------------- actions


def test_move_keeps_the_kept_files_and_a_rerun_finds_nothing(folder, tmp_path, engine):
    settings = _settings(tmp_path)
    report = find_duplicates(folder, "near", settings=settings, engine=engine)
    before = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    dry = actions.move_duplicates(report, folder / "_dups", dry_run=True)
    assert len(dry.done) == report.duplicates and not (folder / "_dups").exists()
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == before

    done = actions.move_duplicates(report, folder / "_dups")
    assert len(done.done) == report.duplicates and not done.refused
    for group in report.groups:
        assert (folder / group.keep.path).is_file()
        for d in group.duplicates:
            assert not (folder / d.path).exists() and (folder / "_dups" / d.path).is_file()
    with open(folder / "_dups" / actions.MANIFEST) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == report.duplicates and all(Path(r["moved_to"]).is_file() for r in rows)
    rerun = find_duplicates(folder, "near", settings=settings, engine=engine, exclude=[folder / "_dups"])
    assert rerun.groups == []


def test_actions_leave_alone_what_changed_since_the_scan(folder, tmp_path, engine):
    report = find_duplicates(folder, "near", settings=_settings(tmp_path), engine=engine)
    group0 = next(g for g in report.groups if g.keep.path.startswith("photo0"))
    (folder / "edits" / "crop.jpg").write_bytes(b"changed")  # a duplicate changed
    (folder / "photo1.jpg").unlink()  # the kept file of the other group vanished
    result = actions.delete_duplicates(report)
    refused = dict(result.refused)
    assert refused["edits/crop.jpg"] == "changed since the scan"
    assert "no longer there" in refused["more/photo1.jpg"]
    assert (folder / "more" / "photo1.jpg").is_file()  # its only copy is not deleted
    assert (folder / "edits" / "crop.jpg").is_file()
    deleted = {p for p, _ in result.done}
    assert deleted == {d.path for d in group0.duplicates} - {"edits/crop.jpg"}
    assert all(not (folder / p).exists() for p in deleted) and (folder / group0.keep.path).is_file()


def test_link_makes_a_review_folder_and_refuses_a_full_one(folder, tmp_path, engine):
    report = find_duplicates(folder, "near", settings=_settings(tmp_path), engine=engine)
    review = tmp_path / "review"
    actions.link_groups(report, review)
    links = sorted(p for p in review.rglob("*") if p.is_symlink())
    assert len(links) == report.duplicates + len(report.groups)
    assert all(p.resolve().is_file() for p in links)
    assert sum(p.name.startswith("keep - ") for p in links) == len(report.groups)
    with pytest.raises(Exception, match="not empty"):
        actions.link_groups(report, review)


# --------------------------------------------------------------------------- the CLI


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOOKALIKE_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "lookalike.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_cli_json_csv_and_summary(folder, tmp_path):
    data = str(tmp_path / "data")
    out = _cli("dedup", str(folder), "--format", "json", "--data-dir", data, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["level"] == "near" and report["model"] == "sscd" and report["cosine"] == scores.NEAR_DUPLICATE_COSINE
    assert report["files"] == 13 and report["duplicates"] == 6 and len(report["groups"]) == 2
    assert {s["path"] for s in report["skipped"]} == {"damaged.jpg", "notes.png"}
    assert all(s["code"] == "ImageDecodeFailed" for s in report["skipped"])
    members = [d for g in report["groups"] for d in g["duplicates"]]
    assert {d["match"] for d in members} == {"pixels", "bytes", "near"}

    out = _cli("dedup", str(folder), "--format", "csv", "--data-dir", data, "--out", "report.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report.csv").read_text())))
    assert sum(r["role"] == "keep" for r in rows) == 2 and sum(r["role"] == "duplicate" for r in rows) == 6
    assert {r["path"] for r in rows if r["role"] == "duplicate"} == {d["path"] for d in members}

    out = _cli("dedup", str(folder), "--data-dir", data, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "6 duplicates in 2 groups" in out.stdout and "from cache 9" in out.stdout


def test_cli_deletes_only_when_told_to(folder, tmp_path):
    data = str(tmp_path / "data")
    files = sorted(folder.rglob("*"))
    for extra in ([], ["--format", "json"], ["--level", "scene"]):
        assert _cli("dedup", str(folder), "--data-dir", data, *extra, cwd=tmp_path).returncode == 0
    assert sorted(folder.rglob("*")) == files  # reporting changes nothing

    dry = _cli("dedup", str(folder), "--data-dir", data, "--delete", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "6 duplicates would be deleted" in dry.stderr
    assert sorted(folder.rglob("*")) == files

    done = _cli("dedup", str(folder), "--data-dir", data, "--delete", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for group in report["groups"]:
        assert (folder / group["keep"]["path"]).is_file()
        assert not any((folder / d["path"]).exists() for d in group["duplicates"])
    assert "6 duplicates deleted" in done.stderr


def test_cli_move_excludes_its_destination_and_refuses_bad_combinations(folder, tmp_path):
    data = str(tmp_path / "data")
    moved = _cli("dedup", str(folder), "--data-dir", data, "--move", str(folder / "dups"), cwd=tmp_path)
    assert moved.returncode == 0 and "6 duplicates moved" in moved.stderr
    again = _cli(
        "dedup", str(folder), "--data-dir", data, "--move", str(folder / "dups"), "--format", "json", cwd=tmp_path
    )
    assert json.loads(again.stdout)["groups"] == []  # the moved files inside the folder are not scanned

    both = _cli("dedup", str(folder), "--move", "x", "--delete", cwd=tmp_path)
    assert both.returncode == 2 and "InvalidParameterValue" in both.stderr
    dry = _cli("dedup", str(folder), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 2 and "--dry-run goes with" in dry.stderr
    missing = _cli("dedup", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
    level = _cli("dedup", str(folder), "--level", "similar", cwd=tmp_path)
    assert level.returncode == 2 and "invalid choice" in level.stderr


# --------------------------------------------------------------------------- galleries


def _jpeg(image: Image.Image) -> bytes:
    return encode(image, quality=90)


def _family_pictures() -> list[tuple[str, bytes]]:
    """An original, three copies of it (added in this order), and four other photos."""
    photos = distinct_photos(5)
    original = photos[0]
    w, h = original.size
    return [
        ("original", _jpeg(original)),
        ("crop", _jpeg(original.crop((w // 10, h // 10, w - w // 10, h - h // 10)))),
        ("mirror", _jpeg(ImageOps.mirror(original))),
        ("small", encode(original.resize((w // 2, h // 2)), quality=70)),
        *[(f"other{i}", _jpeg(p)) for i, p in enumerate(photos[1:])],
    ]


def test_gallery_duplicates_on_each_backend(tmp_path, engine, backend):
    service = GalleryService(open_store(backend.make_settings(tmp_path / "data", threads=2)), engine)
    try:
        service.create_group("dups")
        pictures = _family_pictures()
        service.add_image("dups", NewImage(*pictures[0][:1] * 2, pictures[0][1]))  # first, on its own
        results = service.add_images("dups", [NewImage(name, name, data) for name, data in pictures[1:]])
        assert not [r for r in results if isinstance(r, Exception)]
        found = service.duplicates("dups")
        assert found.pictures == 8 and found.min_cosine == scores.NEAR_DUPLICATE_COSINE
        assert len(found.sets) == 1
        only = found.sets[0]
        assert only.keep.pic_name == "original"  # the first added
        assert {h.image.pic_name for h in only.duplicates} == {"crop", "mirror", "small"}
        assert [h.cosine for h in only.duplicates] == sorted((h.cosine for h in only.duplicates), reverse=True)
        assert all(h.score == round(scores.calibrated_score(h.cosine)) for h in only.duplicates)
        key = service.store.list_groups(0, 10)[0][0].group_id  # the stored group's key
        with_thumbs = [t for b in service.store.iter_group(key) for _, _, t in b]
        without = [t for b in service.store.iter_group(key, thumbnails=False) for _, _, t in b]
        assert len(without) == 8 and all(t is None for t in without) and all(t for t in with_thumbs)
        strict = service.duplicates("dups", match_threshold=99.9)
        # Stored vectors average the mirror view (LOOKALIKE_INDEX_FLIP): only the mirror stays.
        assert strict.min_cosine > 0.99
        assert [[h.image.pic_name for h in d.duplicates] for d in strict.sets] == [["mirror"]]
        with pytest.raises(Exception, match="level must be"):
            service.duplicates("dups", "exact")
    finally:
        service.close()


def test_native_duplicates_route(server):
    with httpx.Client(base_url=server, timeout=120) as http:
        assert http.post("/v1/groups", json={"group_id": "dedup_route"}).status_code == 201
        images = [{"entity_id": n, "pic_name": n, "image": {"base64": base64.b64encode(d).decode()}}
                  for n, d in _family_pictures()]
        for batch in (images[:1], images[1:]):  # the original first: the one each set keeps
            added = http.post("/v1/groups/dedup_route/images", json=batch)
            assert added.status_code in (200, 201, 207) and added.json()["created"] == len(batch), added.text
        body = http.post("/v1/groups/dedup_route/duplicates", json={}).json()
        assert body["pictures"] == 8 and body["total"] == 1 and body["duplicates"] == 3
        (only,) = body["sets"]
        assert only["keep"]["pic_name"] == "original"
        assert {d["pic_name"] for d in only["duplicates"]} == {"crop", "mirror", "small"}
        assert all(d["thumbnail_url"].startswith("/v1/groups/dedup_route/images/") for d in only["duplicates"])
        assert body["request_id"]

        scene = http.post("/v1/groups/dedup_route/duplicates", json={"level": "scene"}).json()
        assert scene["min_cosine"] < body["min_cosine"] and scene["duplicates"] >= 3
        paged = http.post("/v1/groups/dedup_route/duplicates", json={"offset": 1}).json()
        assert paged["sets"] == [] and paged["total"] == 1

        bad = http.post("/v1/groups/dedup_route/duplicates", json={"level": "exact"})
        assert bad.status_code == 400 and bad.json()["error"]["code"].startswith("InvalidParameter")
        bad = http.post("/v1/groups/dedup_route/duplicates", json={"match_threshold": 101})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidParameterValue"
        missing = http.post("/v1/groups/no_such_group/duplicates", json={})
        assert (
            missing.status_code == 404
            and missing.json()["error"]["code"] == "InvalidParameterValue.ImageGroupIdNotExist"
        )

    from lookalike.client import ApiError, Client

    with Client(server) as client:
        assert client.duplicates("dedup_route")["sets"] == body["sets"]
        strict = client.duplicates("dedup_route", match_threshold=99.9)  # only the mirror: flip-averaged vectors
        assert strict["total"] == 1 and [d["pic_name"] for d in strict["sets"][0]["duplicates"]] == ["mirror"]
        with pytest.raises(ApiError) as caught:
            client.duplicates("no_such_group")
        assert caught.value.status == 404
