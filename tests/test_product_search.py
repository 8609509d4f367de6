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
    done = subprocess.run([sys.executable, "-m", "lookalike.cli", "models", "install", "detector"], capture_output=True, text=True)
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

    native = httpx.post(f"{base_url}/v1/groups/shop/search", json={"image": {"base64": b64(query)}, "category_id": 3}, timeout=120)
    assert native.status_code == 200, native.text
    subject = native.json()["object"]
    assert subject["requested"] == 3 and subject["honoured"] is False and subject["category"] != 3
    native = httpx.post(f"{base_url}/v1/groups/shop/search", json={"image": {"base64": b64(query)}, "category_id": 4}, timeout=120)
    subject = native.json()["object"]
    assert subject["honoured"] is True and subject["label"] == "Footwear" and set(subject["box"]) == {"x", "y", "width", "height"}


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
    create_image(client, "no_detector", "e", "p", jpeg(scene((640, 480))), EnableDetect=False)  # without detection: fine
    native = httpx.post(f"{url}/v1/groups/no_detector/search", json={"image": {"base64": b64(jpeg(scene((640, 480))))}}, timeout=120)
    assert native.status_code == 503 and native.json()["error"]["code"] == "ModelUnavailable"
