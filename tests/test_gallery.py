"""Galleries: the domain service over the real store, the filter parser, and the native REST API."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image

from lookalike import errors, scores
from lookalike.config import Settings
from lookalike.engine import Engine
from lookalike.gallery import GROUP_TYPE_MODELS, GalleryService, NewImage, parse_filter
from lookalike.images import Rect
from lookalike.storage import open_store
from lookalike.storage.filters import And, Compare, Or, matches
from support import b64

COLOURS = ("red", "blue", "green")



@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(Settings(threads=2, group_qps=False))  # these searches outpace any MaxQps


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, engine, backend):
    settings = backend.make_settings(tmp_path_factory.mktemp("gallery") / "data", threads=2)
    service = GalleryService(open_store(settings), engine)
    yield service
    service.close()


@pytest.fixture(scope="module")
def pics(photos) -> list[bytes]:
    return [photos.jpeg(100 + i) for i in range(6)]


@pytest.fixture(scope="module")
def tagged(gallery, pics) -> str:
    """Group 'tagged' (sscd-small): six pictures, three entities, tags n / colour / shop."""
    gallery.create_group("tagged", "Tagged", model="sscd-small")
    news = [
        NewImage(
            f"e{i // 2}",
            f"p{i}",
            data,
            custom_content=f"content {i}",
            tags={"n": i, "colour": COLOURS[i % 3], "shop": f"s{i % 2}"},
        )
        for i, data in enumerate(pics)
    ]
    results = gallery.add_images("tagged", news)
    assert all(not isinstance(r, errors.LookalikeError) for r in results), results
    return "tagged"


# --------------------------------------------------------------------------- filter parser

VALID_FILTERS = [
    ("n=1", Compare("n", "=", 1)),
    ("n = 1.5", Compare("n", "=", 1.5)),
    ("n>-2", Compare("n", ">", -2)),
    ("colour=red", Compare("colour", "=", "red")),
    ('colour = "red"', Compare("colour", "=", "red")),
    ("colour != 'dark red'", Compare("colour", "!=", "dark red")),
    ('code = "007"', Compare("code", "=", "007")),
    ('"my key" >= 3', Compare("my key", ">=", 3)),
    ("n >= 1 AND n <= 3", And((Compare("n", ">=", 1), Compare("n", "<=", 3)))),
    ("n < 1 or n > 4", Or((Compare("n", "<", 1), Compare("n", ">", 4)))),
    ("a=1 OR b=2 AND c=3", Or((Compare("a", "=", 1), And((Compare("b", "=", 2), Compare("c", "=", 3)))))),
    ("(a=1 OR b=2) AND c=3", And((Or((Compare("a", "=", 1), Compare("b", "=", 2))), Compare("c", "=", 3)))),
    ("((n=1))", Compare("n", "=", 1)),
    ("a=1 AND (b=2 AND c=3)", And((Compare("a", "=", 1), Compare("b", "=", 2), Compare("c", "=", 3)))),
    ("名字 = 苹果", Compare("名字", "=", "苹果")),
]

INVALID_FILTERS = [
    "n",
    "n=",
    "=1",
    "n==1",
    "n=>1",
    "n ~ 1",
    "n=1 AND",
    "AND n=1",
    "n=1 n=2",
    "(n=1",
    "n=1)",
    "()",
    'n="open',
    "n=1 OR OR n=2",
    "n=1 && n=2",
    "(" * 40 + "n=1" + ")" * 40,
]


@pytest.mark.parametrize("text,expected", VALID_FILTERS)
def test_filter_parser_accepts(text, expected):
    assert parse_filter(text) == expected


@pytest.mark.parametrize("text", INVALID_FILTERS)
def test_filter_parser_refuses_with_filter_invalid(text):
    with pytest.raises(errors.FilterInvalid) as info:
        parse_filter(text)
    assert info.value.code == "InvalidParameterValue.FilterInvalid"


def test_filter_blank_is_none_and_huge_is_refused():
    assert parse_filter(None) is None and parse_filter("  ") is None
    with pytest.raises(errors.FilterSizeExceed):
        parse_filter("n=1 AND " * 200 + "n=1")


@pytest.mark.parametrize(
    "text",
    ["colour = red", "n >= 2 AND n < 5", "colour = blue OR shop = s0", "(colour = red OR colour = green) AND n != 3",
     "shop != s1", "n > 100", "missing = 1", "missing != 1", 'n = "2"'],
)
def test_search_filter_returns_exactly_the_matching_pictures(gallery, tagged, pics, text):
    hits = gallery.search(tagged, pics[0], limit=100, filter=text, min_cosine=-1.0)
    expected = {
        f"p{i}"
        for i in range(len(pics))
        if matches(parse_filter(text), {"n": i, "colour": COLOURS[i % 3], "shop": f"s{i % 2}"})
    }
    assert {h.image.pic_name for h in hits} == expected


# --------------------------------------------------------------------------- search


def test_results_are_best_first_with_integer_scores(gallery, tagged, pics):
    hits = gallery.search(tagged, pics[2], limit=100, min_cosine=-1.0)
    assert hits[0].image.pic_name == "p2" and hits[0].score == 100
    assert hits[0].image.custom_content == "content 2" and hits[0].image.tags == {
        "n": 2,
        "colour": "green",
        "shop": "s0",
    }
    assert [h.cosine for h in hits] == sorted((h.cosine for h in hits), reverse=True)
    for h in hits:
        assert isinstance(h.score, int) and 0 <= h.score <= 100
        assert h.score == round(scores.calibrated_score(h.cosine))


def test_match_threshold(gallery, tagged, pics):
    everything = gallery.search(tagged, pics[4], limit=100, min_cosine=-1.0)
    for threshold in (1, 40, 60, 75, 99):
        hits = gallery.search(tagged, pics[4], limit=100, match_threshold=threshold)
        assert [h.image.pic_name for h in hits] == [h.image.pic_name for h in everything if h.score >= threshold]
    assert [h.image.pic_name for h in gallery.search(tagged, pics[4], match_threshold=99)] == ["p4"]
    default = gallery.search(tagged, pics[4], limit=100, match_threshold=0)
    assert all(h.score >= scores.DEFAULT_MATCH_THRESHOLD for h in default)
    with pytest.raises(errors.InvalidParameterValue):
        gallery.search(tagged, pics[4], match_threshold=101)


def test_offset_and_limit_page_through_the_ranking(gallery, tagged, pics):
    full = [h.image.pic_name for h in gallery.search(tagged, pics[1], limit=100, min_cosine=-1.0)]
    assert len(full) == 6
    pages = [gallery.search(tagged, pics[1], limit=2, offset=o, min_cosine=-1.0) for o in (0, 2, 4, 6)]
    assert [h.image.pic_name for page in pages for h in page] == full
    assert pages[-1] == []
    with pytest.raises(errors.LimitExceed) as info:
        gallery.search(tagged, pics[1], limit=101)
    assert info.value.code == "InvalidParameterValue.LimitExceed"
    assert len(gallery.search(tagged, pics[1], limit=0, min_cosine=-1.0)) == 6  # 0 = the default, 10


def test_image_rect_crop_finds_the_cropped_source(gallery, photos):
    """A picture pasted into a busy scene: the scene with ImageRect around it finds the picture."""
    gallery.create_group("crops", model="sscd-small")
    sources = [photos.image(200 + i) for i in range(4)]
    gallery.add_images("crops", [NewImage(f"s{i}", f"s{i}", photos.to_bytes(img)) for i, img in enumerate(sources)])
    scene = photos.image(299, size=(640, 480))
    scene.paste(sources[2], (250, 170))
    query = photos.to_bytes(scene)
    rect = Rect(250, 170, 320, 240)
    hits = gallery.search("crops", query, rect=rect, limit=4, min_cosine=-1.0)
    assert hits[0].image.pic_name == "s2" and hits[0].score >= 95
    whole = gallery.search("crops", query, limit=4, min_cosine=-1.0)
    pasted = next(h for h in whole if h.image.pic_name == "s2")
    assert pasted.cosine < hits[0].cosine  # the crop box sharpens the vector match...
    assert (
        pasted.inliers >= scores.COPY_INLIERS and pasted.score >= 80
    )  # ...and verification finds the partial copy anyway

    # A crop of a stored picture (60% of it) still finds it first.
    part = sources[1].crop((40, 30, 232, 174))
    top = gallery.search("crops", photos.to_bytes(part), limit=1)
    assert top and top[0].image.pic_name == "s1"

    # ImageRect at ingest: the stored vector is the crop's.
    gallery.add_image("crops", NewImage("scene", "scene", query, rect=rect))
    found = gallery.search("crops", photos.to_bytes(sources[2]), limit=2)
    assert {h.image.pic_name for h in found} == {"s2", "scene"} and min(h.score for h in found) >= 95
    assert gallery.find_image("crops", "scene").rect == (250, 170, 320, 240)


def test_group_type_fixes_the_model_and_vectors_never_mix(gallery, engine, photos):
    assert GROUP_TYPE_MODELS[4] == "sscd" and GROUP_TYPE_MODELS[101] == "sscd-small"
    big = gallery.create_group("full", "Full", group_type=4)
    small = gallery.create_group("small", "Small", group_type=101)
    assert (big.model, small.model) == ("sscd", "sscd-small")
    assert gallery.create_group("by_model", model="sscd-small").group_type == 101
    with pytest.raises(errors.ImageGroupIdAlreadyExist):
        gallery.create_group("small", "again", model="sscd")
    assert gallery.get_group("small").model == "sscd-small"
    with pytest.raises(errors.InvalidParameterValue):
        gallery.create_group("nope", group_type=3000)

    data = photos.jpeg(300)
    for group in ("full", "small"):
        gallery.add_image(group, NewImage("e", "p", data))
    # Each group embeds queries with its own model: the right model's vector comes back at 1.0.
    v_full = gallery.embed_query(gallery.get_group("full"), data)
    v_small = gallery.embed_query(gallery.get_group("small"), data)
    assert np.allclose(v_full, engine.embed([data], model="sscd", query=True)[0], atol=1e-5)
    assert np.allclose(v_small, engine.embed([data], model="sscd-small", query=True)[0], atol=1e-5)
    assert float(v_full @ v_small) < 0.999
    for group, model in (("full", "sscd"), ("small", "sscd-small")):
        hit = gallery.search(group, data, limit=1)[0]
        assert hit.image.pic_name == "p" and hit.cosine > 0.98  # one query view against the mirror-averaged picture
        stored = gallery.store.get_vectors(group, ["p"])["p"]
        assert np.allclose(stored, engine.embed([data], model=model)[0], atol=1e-5)  # the group's own model


# --------------------------------------------------------------------------- images


def test_entities_append_up_to_ten_pictures(gallery, photos):
    gallery.create_group("entities", model="sscd-small")
    data = [photos.jpeg(400 + i, size=(256, 192)) for i in range(11)]
    results = gallery.add_images("entities", [NewImage("one", f"pic{i}", d) for i, d in enumerate(data[:10])])
    assert all(isinstance(r, type(results[0])) and not isinstance(r, Exception) for r in results)
    assert len(gallery.describe_images("entities", "one")) == 10
    with pytest.raises(errors.ImageEntityCountExceed) as info:
        gallery.add_image("entities", NewImage("one", "pic10", data[10]))
    assert info.value.code == "FailedOperation.ImageEntityCountExceed"
    with pytest.raises(errors.PicNameAlreadyExist):
        gallery.add_image("entities", NewImage("two", "pic3", data[10]))
    gallery.add_image("entities", NewImage("two", "pic10", data[10]))
    assert [r.pic_name for r in gallery.describe_images("entities", "two")] == ["pic10"]
    assert gallery.get_group("entities").pic_count == 11


@pytest.mark.parametrize(
    "field,value,code",
    [
        ("entity_id", "e" * 65, "InvalidParameterValue.EntityIdTooLong"),
        ("entity_id", "", "InvalidParameterValue.EntityIdEmpty"),
        ("pic_name", "p" * 65, "InvalidParameterValue.PicNameTooLong"),
        ("pic_name", "", "InvalidParameterValue.PicNameEmpty"),
        ("custom_content", "c" * 4097, "InvalidParameterValue.CustomContentTooLong"),
        ("tags", {f"k{i}": i for i in range(11)}, "InvalidParameterValue.TagsKeysExceed"),
        ("tags", {"k": [1, 2]}, "InvalidParameterValue.TagsValueIllegal"),
        ("tags", {"k": True}, "InvalidParameterValue.TagsValueIllegal"),
        ("tags", '{"k": 1%s}' % ("0" * 400), "InvalidParameterValue.TagsValueIllegal"),  # no double holds it
        ("tags", "[1, 2]", "InvalidParameterValue.TagsValueIllegal"),
        ("tags", "{not json", "InvalidParameterValue.TagsValueIllegal"),
        ("image", b"not an image at all", "ImageDecodeFailed"),
        ("image", "solid", "InvalidParameter.PictureSolidColorError"),
    ],
)
def test_bad_pictures_get_their_codes(gallery, tagged, photos, field, value, code):
    fields = {"entity_id": "bad", "pic_name": "bad", "image": photos.jpeg(500, size=(256, 192))}
    fields[field] = photos.solid() if value == "solid" else value
    with pytest.raises(errors.LookalikeError) as info:
        gallery.add_image(tagged, NewImage(**fields))
    assert info.value.code == code
    assert gallery.store.get_images(tagged, "bad") == []


def test_solid_colour_query_and_crop_are_refused(gallery, tagged, photos):
    with pytest.raises(errors.PictureSolidColorError):
        gallery.search(tagged, photos.solid((250, 250, 250)))
    half = Image.new("RGB", (400, 300), (0, 90, 0))
    half.paste(photos.image(501, size=(200, 300)), (200, 0))
    with pytest.raises(errors.PictureSolidColorError):  # the crop is flat even though the picture is not
        gallery.search(tagged, photos.to_bytes(half), rect=Rect(0, 0, 180, 300))


@pytest.mark.parametrize(
    "group_id,code",
    [("", "InvalidParameterValue.ImageGroupIdIllegal"), ("has space", "InvalidParameterValue.ImageGroupIdIllegal"),
     ("dash-ed", "InvalidParameterValue.ImageGroupIdIllegal"), ("g" * 65, "InvalidParameterValue.ImageGroupIdTooLong")],
)
def test_group_ids_are_letters_digits_underscore(gallery, group_id, code):
    with pytest.raises(errors.LookalikeError) as info:
        gallery.create_group(group_id, "name")
    assert info.value.code == code


def test_update_delete_and_unknowns(gallery, photos):
    gallery.create_group("edits", model="sscd-small")
    a, b = photos.jpeg(600), photos.jpeg(601)
    gallery.add_images("edits", [NewImage("x", "a", a, tags={"k": 1}), NewImage("x", "b", b, tags={"k": 1})])
    assert gallery.update_images("edits", "x", "a", tags='{"k": 2}', custom_content="new") == 1
    record = gallery.describe_images("edits", "x", "a")[0]
    assert (record.tags, record.custom_content) == ({"k": 2}, "new")
    assert [h.image.pic_name for h in gallery.search("edits", a, filter="k = 2", min_cosine=-1.0)] == ["a"]
    assert gallery.update_images("edits", "x", tags={"k": 3}) == 2
    assert gallery.delete_images("edits", "x", "a") == 1
    assert [h.image.pic_name for h in gallery.search("edits", a, limit=10, min_cosine=-1.0)] == ["b"]
    with pytest.raises(errors.ImageNotFound):
        gallery.describe_images("edits", "x", "a")
    with pytest.raises(errors.ImageNotFound):
        gallery.delete_images("edits", "nobody")
    with pytest.raises(errors.ImageGroupIdNotExist):
        gallery.search("no_such_group", a)
    thumb = Image.open(io.BytesIO(gallery.thumbnail("edits", "b")))
    assert thumb.format == "JPEG" and max(thumb.size) <= 256
    gallery.delete_group("edits")
    with pytest.raises(errors.ImageGroupIdNotExist):
        gallery.get_group("edits")


def test_describe_groups_pages(gallery):
    for i in range(3):
        gallery.create_group(f"page_{i}", model="sscd-small")
    first, total = gallery.describe_groups(0, 2)
    rest, total2 = gallery.describe_groups(2, 100)
    assert total == total2 == len(first) + len(rest) and len(first) == 2
    assert {g.group_id for g in first + rest} >= {"page_0", "page_1", "page_2"}
    assert gallery.describe_groups(0, 10, "page_1")[0][0].group_id == "page_1"
    assert gallery.describe_groups(0, 10, "page_none") == ([], 0)
    with pytest.raises(errors.LimitExceed):
        gallery.describe_groups(0, 101)


# --------------------------------------------------------------------------- native REST


@pytest.fixture(scope="module")
def api(server_factory, backend):
    with httpx.Client(base_url=server_factory(env=backend.env).base_url, timeout=120) as client:
        yield client


def test_native_rest_round_trip(api, photos):
    r = api.post(
        "/v1/groups", json={"group_id": "rest", "group_name": "REST", "model": "sscd-small", "max_capacity": 100}
    )
    assert r.status_code == 201, r.text
    assert r.json()["model"] == "sscd-small" and r.json()["group_type"] == 101
    assert (
        api.post("/v1/groups", json={"group_id": "rest"}).json()["error"]["code"]
        == "InvalidParameterValue.ImageGroupIdAlreadyExist"
    )
    assert "rest" in {g["group_id"] for g in api.get("/v1/groups").json()["groups"]}

    pics = [photos.jpeg(700 + i) for i in range(4)]
    one = {
        "entity_id": "e0",
        "pic_name": "a/0.jpg",
        "image": {"base64": b64(pics[0])},
        "tags": {"n": 0},
        "custom_content": "zero",
    }
    r = api.post("/v1/groups/rest/images", json=one)
    assert r.status_code == 201, r.text
    assert r.json()["pic_name"] == "a/0.jpg" and r.json()["thumbnail_url"].endswith("/thumbnail")

    batch = [
        {"entity_id": "e1", "pic_name": "1.jpg", "image": {"base64": b64(pics[1])}, "tags": {"n": 1}},
        {"entity_id": "e1", "pic_name": "bad.jpg", "image": {"base64": b64(b"nope")}},
        {
            "entity_id": "e2",
            "pic_name": "2.jpg",
            "image": {"base64": b64(pics[2])},
            "rect": {"x": 0, "y": 0, "width": 200, "height": 200},
        },
    ]
    r = api.post("/v1/groups/rest/images", json=batch)
    assert r.status_code == 207, r.text
    body = r.json()
    assert (body["created"], body["failed"]) == (2, 1)
    assert [item["ok"] for item in body["results"]] == [True, False, True]
    assert body["results"][1]["error"]["code"] == "ImageDecodeFailed"

    r = api.post(
        "/v1/groups/rest/images",
        files=[("images", ("3.png", photos.to_bytes(photos.image(703), "PNG"), "image/png"))],
        data={"tags": '{"n": 3}'},
    )
    assert r.status_code == 201, r.text
    assert r.json()["results"][0]["image"]["entity_id"] == "3"

    listed = api.get("/v1/groups/rest/images", params={"limit": 10}).json()
    assert listed["total"] == 4 and {i["pic_name"] for i in listed["images"]} == {"a/0.jpg", "1.jpg", "2.jpg", "3.png"}
    assert api.get("/v1/groups/rest/images/a/0.jpg").json()["custom_content"] == "zero"
    assert api.get("/v1/groups/rest/images/2.jpg").json()["rect"] == {"x": 0, "y": 0, "width": 200, "height": 200}

    thumb = api.get("/v1/groups/rest/images/a/0.jpg/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 256
    assert (
        api.get(
            "/v1/groups/rest/images/a/0.jpg/thumbnail", headers={"If-None-Match": thumb.headers["etag"]}
        ).status_code
        == 304
    )

    r = api.patch("/v1/groups/rest/images/1.jpg", json={"tags": {"n": 10}, "custom_content": "ten"})
    assert r.status_code == 200 and r.json()["tags"] == {"n": 10}

    r = api.post(
        "/v1/groups/rest/search", json={"image": {"base64": b64(pics[1])}, "filter": "n >= 5", "match_threshold": 1}
    )
    assert r.status_code == 200, r.text
    assert [h["pic_name"] for h in r.json()["results"]] == ["1.jpg"] and r.json()["results"][0][
        "custom_content"
    ] == "ten"

    r = api.post(
        "/v1/groups/rest/search",
        files={"image": ("q.jpg", pics[0], "image/jpeg")},
        data={"limit": "2", "match_threshold": "1"},
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["pic_name"] == "a/0.jpg" and results[0]["score"] == 100 and len(results) == 2
    assert results[0]["score"] >= results[1]["score"]

    bad = api.post("/v1/groups/rest/search", json={"image": {"base64": b64(pics[0])}, "filter": "n >"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidParameterValue.FilterInvalid"
    bad = api.post("/v1/groups/rest/search", json={"image": {"base64": b64(pics[0])}, "limit": 500})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidParameterValue.LimitExceed"

    assert api.delete("/v1/groups/rest/images/a/0.jpg").json()["deleted"] == 1
    missing = api.get("/v1/groups/rest/images/a/0.jpg")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "FailedOperation.ImageNotFoundInfo"
    assert api.delete("/v1/groups/rest").status_code == 200
    gone = api.get("/v1/groups/rest")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "InvalidParameterValue.ImageGroupIdNotExist"


def test_native_rest_refusals_use_the_native_error_format(api, photos):
    r = api.post("/v1/groups", json={"group_id": "bad id!"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidParameterValue.ImageGroupIdIllegal"
    assert "request_id" in r.json()
    r = api.post("/v1/groups", json={"group_id": "ok", "unknown": 1})
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidParameter"
    r = api.post(
        "/v1/groups/nowhere/images", json={"entity_id": "e", "pic_name": "p", "image": {"base64": b64(photos.jpeg(1))}}
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "InvalidParameterValue.ImageGroupIdNotExist"
    api.post("/v1/groups", json={"group_id": "refusals", "model": "sscd-small"})
    r = api.post(
        "/v1/groups/refusals/images", json={"entity_id": "e", "pic_name": "p", "image": {"base64": b64(photos.solid())}}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidParameter.PictureSolidColorError"
    assert "/v1/groups/{group_id}/search" in api.get("/openapi.json").json()["paths"]


# --------------------------------------------------------------------------- CLI


def lookalike(*args: str, data_dir, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOOKALIKE_DATA_DIR": str(data_dir), "LOOKALIKE_THREADS": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lookalike.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_index_is_resumable_and_reports_refusals(tmp_path, photos, backend):
    backend = backend.isolated()  # a fresh store, as a fresh data dir is
    folder, data_dir = tmp_path / "pictures", tmp_path / "data"
    (folder / "mug").mkdir(parents=True)
    for i in range(3):
        (folder / "mug" / f"view{i}.jpg").write_bytes(photos.jpeg(1100 + i, (200, 150)))
    (folder / "poster.png").write_bytes(photos.to_bytes(photos.image(1110, (200, 150)), "PNG"))
    (folder / "blank.jpg").write_bytes(photos.solid())
    (folder / "notes.txt").write_text("not a picture")

    first = lookalike(
        "index", str(folder), "--group", "cli", "--create", "--model", "sscd-small", data_dir=data_dir, env=backend.env
    )
    assert first.returncode == 1, first.stderr  # one refusal
    assert json.loads(first.stdout) == {"group": "cli", "added": 4, "skipped": 0, "refused": 1}
    assert "refused blank.jpg: InvalidParameter.PictureSolidColorError" in first.stderr

    (folder / "mug" / "view3.jpg").write_bytes(photos.jpeg(1103, (200, 150)))
    (folder / "blank.jpg").unlink()
    again = lookalike("index", str(folder), "--group", "cli", data_dir=data_dir, env=backend.env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"group": "cli", "added": 1, "skipped": 4, "refused": 0}

    found = lookalike(
        "search",
        str(folder / "mug" / "view2.jpg"),
        "--group",
        "cli",
        "--limit",
        "2",
        data_dir=data_dir,
        env=backend.env,
    )
    assert found.returncode == 0, found.stderr
    top = json.loads(found.stdout.splitlines()[0])
    assert (top["entity_id"], top["pic_name"], top["score"]) == ("mug", "mug/view2.jpg", 100)
    bad = lookalike(
        "search", str(folder / "poster.png"), "--group", "cli", "--filter", "a >", data_dir=data_dir, env=backend.env
    )
    assert bad.returncode == 2 and "InvalidParameterValue.FilterInvalid" in bad.stderr

    listed = lookalike("groups", data_dir=data_dir, env=backend.env)
    assert listed.returncode == 0 and listed.stdout.split("\t")[:3] == ["cli", "sscd-small", "5 pictures"]
    # A tenant's galleries are its own: index and groups with --tenant see only them.
    tenant = lookalike("index", str(folder / "mug"), "--group", "cli", "--create", "--model", "sscd-small",
                       "--tenant", "acme", data_dir=data_dir, env=backend.env)  # fmt: skip
    assert tenant.returncode == 0 and json.loads(tenant.stdout)["added"] == 4, tenant.stderr  # view0-3
    assert lookalike("groups", "--tenant", "acme", data_dir=data_dir, env=backend.env).stdout.split("\t")[:3] == [
        "cli",
        "sscd-small",
        "4 pictures",
    ]
    assert lookalike("groups", data_dir=data_dir, env=backend.env).stdout.split("\t")[:3] == [
        "cli",
        "sscd-small",
        "5 pictures",
    ]
    assert lookalike("groups", "--tenant", "a/b", data_dir=data_dir, env=backend.env).returncode == 2
    missing = lookalike("index", str(folder), "--group", "other", data_dir=data_dir, env=backend.env)
    assert missing.returncode == 2 and "--create" in missing.stderr
