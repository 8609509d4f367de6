"""Product groups (GroupType 5, 7, 8): the subject is found, stored and searched (issue 17).

A real server, Tencent's own SDK and the real detector, installed by the same command as a user
runs (``lookalike models install detector``; scripts/test runs it first). The pictures are
UKBench objects the detector knows (a shoe, a cat) and others it does not, pasted into Holidays
scenes at known places: read from ../shared/eval, never copied into the repository.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import httpx
import pytest
from PIL import Image
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.tiia.v20190529 import models

from support import EVAL_DIR
from test_tencent_sdk import make_client, request

pytestmark = pytest.mark.filterwarnings("ignore:datetime.datetime.utcfromtimestamp:DeprecationWarning")

SHOE, CAT = "ukbench00100.jpg", "ukbench00484.jpg"
"""Object 25 (a shoe: the detector's Footwear, 0.78-0.84) and object 121 (a cat, 0.79-0.84)."""
OTHERS = [f"ukbench{4 * i:05d}.jpg" for i in (0, 1, 2, 3, 5, 7, 9, 11)]
"""First views of objects the detector does not know (CDs, boxes, toys)."""


def ukbench(name: str) -> Image.Image:
    path = EVAL_DIR / "ukbench1000" / "images" / name
    if not path.is_file():
        pytest.skip(f"UKBench is not available ({path} is absent)")
    return Image.open(path).convert("RGB")


def scene(size: tuple[int, int] = (1000, 750)) -> Image.Image:
    path = EVAL_DIR / "holidays811" / "images" / "100000.jpg"
    if not path.is_file():
        pytest.skip(f"Holidays is not available ({path} is absent)")
    return Image.open(path).convert("RGB").resize(size, Image.BICUBIC)


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def paste(background: Image.Image, obj: Image.Image, x: int, y: int, width: int) -> tuple[int, int, int, int]:
    """Pastes ``obj`` scaled to ``width`` at (x, y); returns its box."""
    small = obj.resize((width, round(obj.height * width / obj.width)), Image.BICUBIC)
    background.paste(small, (x, y))
    return (x, y, small.width, small.height)


def iou(rect, box: tuple[int, int, int, int]) -> float:
    x0, y0 = max(rect.X, box[0]), max(rect.Y, box[1])
    x1, y1 = min(rect.X + rect.Width, box[0] + box[2]), min(rect.Y + rect.Height, box[1] + box[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (rect.Width * rect.Height + box[2] * box[3] - inter)


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory):
    """The detector, as ``lookalike models install detector`` installs it (into the default
    LOOKALIKE_DETECTOR_DIR, where scripts/test already put it: then this is a no-op)."""
    command = [sys.executable, "-m", "lookalike.cli", "models", "install", "detector"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().rsplit(" ", 1)[-1].rsplit("/", 1)[0]


@pytest.fixture(scope="module")
def base_url(server_factory, detector_dir) -> str:
    return server_factory(env={"LOOKALIKE_DETECTOR_DIR": detector_dir}).base_url


@pytest.fixture(scope="module")
def client(base_url):
    return make_client(base_url)


def sdk_error(call) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as info:
        call()
    return info.value


def create_group(client, group_id: str, group_type: int) -> None:
    client.CreateGroup(request(models.CreateGroupRequest, GroupId=group_id, GroupName=group_id, GroupType=group_type))


def create_image(client, group_id: str, entity: str, pic: str, data: bytes, **extra):
    return client.CreateImage(request(models.CreateImageRequest, GroupId=group_id, EntityId=entity, PicName=pic,
                                      ImageBase64=b64(data), **extra))


def search(client, group_id: str, data: bytes, **extra):
    return client.SearchImage(request(models.SearchImageRequest, GroupId=group_id, ImageBase64=b64(data),
                                      MatchThreshold=1, **extra))


@pytest.fixture(scope="module")
def catalogue(client):
    """A product group (GroupType 5) and a general one (4), each holding the other views
    (2, 3, 4) of the shoe, the cat and eight objects the detector does not know."""
    firsts = [SHOE, CAT, *OTHERS]
    for group, gtype in (("shop", 5), ("general", 4)):
        create_group(client, group, gtype)
        for first in firsts:
            number = int(first[7:12])
            for view in (1, 2, 3):
                name = f"ukbench{number + view:05d}.jpg"
                create_image(client, group, first, name, jpeg(ukbench(name)))
    return firsts


def test_the_stored_picture_is_its_subject(client, catalogue):
    """CreateImage in a product group answers the subject it stored: the shoe the detector saw."""
    background = scene()
    box = paste(background, ukbench(SHOE), 420, 320, 550)
    create_group(client, "shop_v3", 8)
    answer = create_image(client, "shop_v3", "placed_shoe", "placed_shoe.jpg", jpeg(background))
    found = answer.Object
    assert found is not None and found.Box is not None
    assert found.CategoryId == 4 and found.Box.CategoryId == 4
    assert 0.4 <= found.Box.Score <= 1.0
    assert iou(found.Box.Rect, box) >= 0.5  # the whole picture's would be 0.30
    assert found.AllBox and any(b.CategoryId == 4 for b in found.AllBox)
    assert found.Colors == [] and found.Attributes == []


def test_a_cluttered_query_finds_its_object_and_says_where(client, catalogue):
    """An object the detector does not know, pasted into a scene: the product group finds it
    (the class-agnostic windows) and answers its place; the general group answers no Object."""
    background = scene()
    box = paste(background, ukbench(OTHERS[2]), 90, 330, 380)
    query = jpeg(background)
    product = search(client, "shop", query)
    assert product.ImageInfos[0].EntityId == OTHERS[2]
    assert product.Object is not None and product.Object.Box.Rect.Width < background.width
    assert iou(product.Object.Box.Rect, box) >= 0.3
    general = search(client, "general", query, EnableDetect=True, CategoryId=3)
    assert general.Object is None


def test_image_rect_wins_over_detection(client, catalogue):
    background = scene()
    box = paste(background, ukbench(OTHERS[4]), 500, 80, 360)
    rect = models.ImageRect()
    rect.X, rect.Y, rect.Width, rect.Height = box
    answer = search(client, "shop", jpeg(background), ImageRect=rect)
    assert answer.ImageInfos[0].EntityId == OTHERS[4]
    r = answer.Object.Box.Rect
    assert (r.X, r.Y, r.Width, r.Height) == box and answer.Object.Box.Score == 1.0


def test_category_picks_the_subject_of_that_kind(client, catalogue, base_url):
    """A shoe and a cat in one photo: CategoryId 4 (shoes) searches the shoe; 3 (bags) cannot be
    honoured (the detector knows no bag): the answer's CategoryId says it is not a bag."""
    background = scene()
    shoe = paste(background, ukbench(SHOE), 10, 330, 480)
    paste(background, ukbench(CAT), 510, 30, 480)
    query = jpeg(background)
    shoes = search(client, "shop", query, CategoryId=4)
    assert shoes.Object.CategoryId == 4 and iou(shoes.Object.Box.Rect, shoe) >= 0.5
    assert shoes.ImageInfos[0].EntityId == SHOE
    assert {b.CategoryId for b in shoes.Object.AllBox} >= {4, -1}  # the shoe, and the cat (none of the six)
    bags = search(client, "shop", query, CategoryId=3)
    assert bags.Object.CategoryId != 3

    url = f"{base_url}/v1/groups/shop/search"
    native = httpx.post(url, json={"image": {"base64": b64(query)}, "category_id": 3}, timeout=120)
    assert native.status_code == 200, native.text
    subject = native.json()["object"]
    assert subject["requested"] == 3 and subject["honoured"] is False and subject["category"] != 3
    native = httpx.post(url, json={"image": {"base64": b64(query)}, "category_id": 4}, timeout=120)
    subject = native.json()["object"]
    assert subject["honoured"] is True and subject["label"] == "Footwear"
    assert set(subject["box"]) == {"x", "y", "width", "height"}


def test_detection_off_searches_the_whole_picture(client, catalogue):
    answer = search(client, "shop", jpeg(ukbench(OTHERS[0])), EnableDetect=False)
    assert answer.Object is None and answer.ImageInfos[0].EntityId == OTHERS[0]


def test_clean_photos_search_as_in_a_general_group(client, catalogue):
    for first in catalogue:
        photo = jpeg(ukbench(first))
        product, general = search(client, "shop", photo), search(client, "general", photo)
        assert product.ImageInfos[0].EntityId == general.ImageInfos[0].EntityId == first


def test_detection_limits_and_category_use_tencents_codes(client, catalogue):
    err = sdk_error(lambda: search(client, "shop", jpeg(scene((2100, 1500)))))
    assert err.code == "FailedOperation.ImageResolutionExceed" and "2000" in err.message
    assert search(client, "shop", jpeg(scene((2100, 1500))), EnableDetect=False).Object is None
    err = sdk_error(lambda: search(client, "shop", jpeg(scene((1500, 140)))))
    assert err.code == "FailedOperation.ImageUnQualified"
    err = sdk_error(lambda: search(client, "shop", jpeg(ukbench(OTHERS[0])), CategoryId=6))
    assert err.code == "InvalidParameter.InvalidParameter"
    err = sdk_error(lambda: create_image(client, "shop", "big", "big.jpg", jpeg(scene((2100, 1500)))))
    assert err.code == "FailedOperation.ImageResolutionExceed"
    # a general group takes the same picture, and ignores CategoryId as before
    assert search(client, "general", jpeg(scene((2100, 1500))), CategoryId=6).Object is None


def test_a_missing_detector_names_the_install_command(server_factory, tmp_path):
    url = server_factory(env={"LOOKALIKE_DETECTOR_DIR": str(tmp_path / "nothing")}).base_url
    client = make_client(url)
    create_group(client, "no_detector", 7)
    err = sdk_error(lambda: create_image(client, "no_detector", "e", "p", jpeg(scene((640, 480)))))
    assert err.code == "FailedOperation.InnerError" and "lookalike models install detector" in err.message
    create_image(client, "no_detector", "e", "p", jpeg(scene((640, 480))), EnableDetect=False)  # no detection: fine
    body = {"image": {"base64": b64(jpeg(scene((640, 480))))}}
    native = httpx.post(f"{url}/v1/groups/no_detector/search", json=body, timeout=120)
    assert native.status_code == 503 and native.json()["error"]["code"] == "ModelUnavailable"


# ---------------------------------------------------------------- the query's region (in process)
# The window search of lookalike.gallery.windows on a score whose landscape is known, then the
# whole query path (real detector, real region model, real SSCD vectors of the stored views).


def _overlap(cells, other) -> int:
    width = max(0, min(cells[2], other[2]) - max(cells[0], other[0]))
    height = max(0, min(cells[3], other[3]) - max(cells[1], other[1]))
    return width * height


def _area(cells) -> int:
    return (cells[2] - cells[0]) * (cells[3] - cells[1])


SUBJECT, PART = (5, 3, 13, 9), (9, 4, 12, 7)
"""On a 16 x 12 map: the subject, and its most distinctive part (what pooled windows score best)."""


def subject_like_score(cells_list):
    """Highest on PART (its IoU with the window), a little lower anywhere inside SUBJECT, falling
    fast with the share of the window outside SUBJECT: the landscape the clutter set measured
    (the best window is a distinctive part of the subject, about half of it)."""
    import numpy as np

    out = []
    for cells in cells_list:
        part = _overlap(cells, PART) / (_area(cells) + _area(PART) - _overlap(cells, PART))
        outside = 1 - _overlap(cells, SUBJECT) / _area(cells)
        out.append(0.36 + 0.04 * part - 0.3 * outside)
    return np.asarray(out)


def test_window_search_finds_the_part_then_grows_to_the_subject():
    from lookalike.gallery import windows

    start = (0, 0, 8, 6)
    found, found_score = windows.refine(subject_like_score, start, float(subject_like_score([start])[0]), 16, 12)
    assert found == PART and found_score == pytest.approx(subject_like_score([PART])[0])
    grown = windows.grow(subject_like_score, found, found_score, 16, 12)
    assert grown == SUBJECT  # outwards while within GROW_MARGIN of the part's score, never past the subject
    assert windows.grow(subject_like_score, found, found_score, 16, 12, margin=0.0) == PART
    cells, score = windows.best_window(subject_like_score, 16, 12)
    assert cells == SUBJECT and score == pytest.approx(found_score)


def test_window_grid_covers_the_map_without_duplicates():
    from lookalike.gallery import windows

    found = windows.coarse(16, 12)
    assert found[0] == (0, 0, 16, 12) and len(found) == len(set(found)) == 1 + 3 * 25
    assert all(0 <= x0 < x1 <= 16 and 0 <= y0 < y1 <= 12 for x0, y0, x1, y1 in found)
    tiny = windows.coarse(2, 1)
    assert len(tiny) == len(set(tiny)) and all(x1 <= 2 and y1 <= 1 for _, _, x1, y1 in tiny)


@pytest.fixture(scope="module")
def finder(detector_dir):
    from lookalike.config import Settings
    from lookalike.gallery.subject import SubjectFinder

    return SubjectFinder(Settings(detector_dir=detector_dir, threads=2))


def stored_views(first: str):
    """The SSCD vectors of an object's other three views, as a product group stores them."""
    from lookalike.engine import Engine

    engine = Engine()
    number = int(first[7:12])
    views = [ukbench(f"ukbench{number + view:05d}.jpg") for view in (1, 2, 3)]
    return engine.vectors(views, engine.pipeline())


@pytest.mark.parametrize("first, place", [(OTHERS[2], (90, 330, 380)), (OTHERS[5], (520, 60, 330))])
def test_the_query_region_lands_on_a_pasted_object(finder, first, place):
    """An object no detector knows, pasted into a scene: the region map's best window, refined
    and grown, overlaps the pasted box by half or more; without the growth it is only a part."""
    import numpy as np

    from lookalike.gallery import windows

    background = scene()
    box = paste(background, ukbench(first), *place)
    stored = stored_views(first)
    asked: list[int] = []

    def neighbours(vectors):
        asked.append(len(vectors))
        return stored

    found = finder.for_query(background, None, neighbours)
    assert found.label == "region" and 0.0 < found.score <= 1.0
    rect = models.ImageRect()
    rect.X, rect.Y, rect.Width, rect.Height = found.box.x, found.box.y, found.box.width, found.box.height
    assert iou(rect, box) >= 0.5
    assert len(asked) == 1  # the stored neighbours are looked up once, for the seed windows

    region_map = finder.regions.map(background, finder.settings.subject_side)
    score = lambda cells: (region_map.vectors(np.asarray(cells)) @ stored.T).max(axis=1)  # noqa: E731
    part, _ = windows.best_window(score, region_map.columns, region_map.rows, margin=0.0)
    assert _area(region_map.to_cells(found.box)) > _area(part)


def test_a_clean_photo_is_searched_whole(finder):
    found = finder.for_query(ukbench(OTHERS[3]), None, lambda vectors: stored_views(OTHERS[3]))
    assert found.label == "image" and found.score >= 0.4


def test_an_empty_group_searches_the_whole_picture(finder):
    import numpy as np

    found = finder.for_query(scene(), None, lambda vectors: np.zeros((0, 512), np.float32))
    assert found.label == "image" and found.box.width == 1000


def test_a_missing_region_model_names_the_install_command(server_factory, tmp_path, detector_dir):
    """A detector installed before the region model existed: a product search says what to run."""
    from pathlib import Path

    from lookalike.models.detector import LABELS_FILE, MODEL_FILE

    partial = tmp_path / "detector_only"
    partial.mkdir()
    for name in (MODEL_FILE, LABELS_FILE):
        (partial / name).symlink_to(Path(detector_dir) / name)
    client = make_client(server_factory(env={"LOOKALIKE_DETECTOR_DIR": str(partial)}).base_url)
    create_group(client, "no_regions", 5)
    create_image(client, "no_regions", "e", "p", jpeg(ukbench(OTHERS[0])))  # storing needs the detector only
    err = sdk_error(lambda: search(client, "no_regions", jpeg(scene((640, 480)))))
    assert err.code == "FailedOperation.InnerError" and "lookalike models install detector" in err.message
