"""The compare section's explanation, end to end: ``explain`` on ``POST /v1/compare`` over real
HTTP, and the page drawing the matched keypoints between the two pictures in a real headless
Chromium (as in test_web.py) against a real server. Screenshots land in
test-artifacts/web-explain-*.png."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from PIL import Image

import test_web
from support import EVAL_DIR, distinct_photos
from test_web import REFUSED_URL, open_page, shot, upload

# test_web.py's fixtures: the browser, and a page that fails on JS errors or outside requests.
browser, page = test_web.browser, test_web.page

MAX_MATCHES = 300


def central_crop(image: Image.Image, keep: float = 0.6, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """The central ``keep`` of ``image`` (each side), resized to ``size``."""
    w, h = image.size
    m = (1 - keep) / 2
    return image.crop((round(w * m), round(h * m), round(w * (1 - m)), round(h * (1 - m)))).resize(
        size, Image.Resampling.LANCZOS
    )


@pytest.fixture(scope="module")
def explain_pictures(photos):
    """A large photo-like picture, the central 60% of it smaller, and an unrelated flat picture."""
    source = photos.image(7102, (1200, 900))
    return {
        "source.jpg": photos.to_bytes(source),
        "crop.jpg": photos.to_bytes(central_crop(source)),
        "flat.jpg": photos.solid((200, 170, 90), (480, 360)),
    }


def compare(server: str, a: bytes, b: bytes, **extra) -> httpx.Response:
    return httpx.post(f"{server}/v1/compare", files={"a": a, "b": b}, data=extra, timeout=120)


# ------------------------------------------------------------------------------ the API


def assert_native_error(r: httpx.Response, code: str = "InvalidParameter") -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"error", "request_id"} and body["request_id"]
    assert body["error"]["code"] == code and "explain" in body["error"]["message"]


def test_explain_returns_the_inlier_matches_as_fractions_of_each_image(server, photos, explain_pictures):
    source, crop = explain_pictures["source.jpg"], explain_pictures["crop.jpg"]
    def b64(data: bytes) -> dict[str, str]:
        return {"base64": base64.b64encode(data).decode()}

    r = httpx.post(f"{server}/v1/compare", json={"a": b64(source), "b": b64(crop), "explain": True}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    inliers, matches = body["inliers"], body["matches"]
    assert inliers >= 10 and body["verified"] and body["verdict"] in ("same image", "near copy")
    assert len(matches) == min(inliers, MAX_MATCHES)
    assert all(len(m) == 4 and all(0 <= v <= 1 for v in m) for m in matches)
    # image b is the central 60% of image a: a point at xa in a lies at (xa - 0.2) / 0.6 in b
    errors = sorted(max(abs((xa - 0.2) / 0.6 - xb), abs((ya - 0.2) / 0.6 - yb)) for xa, ya, xb, yb in matches)
    assert errors[len(errors) // 2] < 0.01 and errors[-1] < 0.05, errors[-5:]

    # the same through a multipart form
    form = compare(server, source, crop, explain="true")
    assert form.status_code == 200, form.text
    assert len(form.json()["matches"]) == min(form.json()["inliers"], MAX_MATCHES) > 0

    # a real photo and its crop (when ../shared/eval is there) may pass the cap of 300
    if (EVAL_DIR / "ukbench1000" / "images").is_dir():
        real = distinct_photos(1)[0]
        body = compare(server, photos.to_bytes(real), photos.to_bytes(central_crop(real)), explain="1").json()
        assert len(body["matches"]) == min(body["inliers"], MAX_MATCHES)


def test_without_explain_no_matches_and_a_non_boolean_explain_is_refused(server, explain_pictures):
    source, crop = explain_pictures["source.jpg"], explain_pictures["crop.jpg"]
    for r in (compare(server, source, crop), compare(server, source, crop, explain="false")):
        assert r.status_code == 200, r.text
        assert r.json().get("matches") is None and r.json()["inliers"] >= 10

    a = {"url": "https://example.invalid/a.jpg"}  # refused before anything is fetched
    for value in ("maybe", 2, [True], {"on": True}, None):
        r = httpx.post(f"{server}/v1/compare", json={"a": a, "b": a, "explain": value}, timeout=30)
        assert_native_error(r)
    assert_native_error(compare(server, source, crop, explain="maybe"))


# ------------------------------------------------------------------------------ the page


def compare_on_page(page, a: tuple[str, bytes], b: tuple[str, bytes]) -> dict:
    """Picks the two files; returns the server's answer once the page has drawn it."""
    with page.expect_response(lambda r: r.url.endswith("/v1/compare")) as answer:
        upload(page, "#file-a", *a)
        upload(page, "#file-b", *b)
    page.wait_for_selector("#explain[data-ready=true]")
    return answer.value.json()


def drawing(page) -> dict:
    """Where the page drew the two pictures and each dot, in CSS pixels."""
    return page.evaluate(
        """() => {
            const rect = (e) => {
                const r = e.getBoundingClientRect();
                return { x: r.x, y: r.y, w: r.width, h: r.height };
            };
            const svg = document.querySelector('#explain-svg');
            return {
                svg: rect(svg),
                lines: Number(svg.dataset.lines),
                a: rect(svg.querySelector('image[data-slot=a]')),
                b: rect(svg.querySelector('image[data-slot=b]')),
                dots: [...svg.querySelectorAll('circle')].map((c) => {
                    const r = rect(c);
                    return [r.x + r.w / 2, r.y + r.h / 2];
                }),
            };
        }"""
    )


def assert_dots_on_matches(d: dict, matches: list[list[float]]) -> None:
    """Each match's two dots sit at its fractions of each picture as drawn (so at any scale)."""
    assert len(d["dots"]) == 2 * len(matches)
    for i, (xa, ya, xb, yb) in enumerate(matches):
        (pxa, pya), (pxb, pyb) = d["dots"][2 * i], d["dots"][2 * i + 1]
        assert abs(pxa - (d["a"]["x"] + xa * d["a"]["w"])) < 1 and abs(pya - (d["a"]["y"] + ya * d["a"]["h"])) < 1
        assert abs(pxb - (d["b"]["x"] + xb * d["b"]["w"])) < 1 and abs(pyb - (d["b"]["y"] + yb * d["b"]["h"])) < 1


def test_page_draws_the_matched_keypoints_of_a_crop_at_any_size(page, explain_pictures):
    open_page(page, "compare")
    r = compare_on_page(
        page, ("source.jpg", explain_pictures["source.jpg"]), ("crop.jpg", explain_pictures["crop.jpg"])
    )
    assert r["inliers"] >= 10 and len(r["matches"]) == min(r["inliers"], MAX_MATCHES)
    text = page.inner_text("#explain-text")
    assert text.startswith(f"{r['inliers']} matching keypoints agree on one geometric transform"), text
    assert page.get_attribute("#explain", "data-inliers") == str(r["inliers"])
    # the existing result is all there
    assert page.inner_text("#verdict") == r["verdict"] and float(page.inner_text("#r-score")) == pytest.approx(
        r["score"], abs=0.1
    )

    # as many lines as matches, both pictures at their own aspect ratio, side by side and
    # smaller than their natural size (1200 x 900 and 640 x 480 at one height: 2400 px wide)
    assert page.locator("#explain-svg line").count() == len(r["matches"])
    d = drawing(page)
    assert d["lines"] == len(r["matches"])
    assert d["a"]["w"] < 1200 and d["svg"]["w"] <= page.locator("#explain").bounding_box()["width"] + 0.5
    assert d["a"]["w"] / d["a"]["h"] == pytest.approx(4 / 3, rel=0.01) and d["b"]["w"] / d["b"]["h"] == pytest.approx(
        4 / 3, rel=0.01
    )
    assert d["a"]["h"] == pytest.approx(d["b"]["h"], abs=0.5) and d["b"]["x"] > d["a"]["x"] + d["a"]["w"]
    assert_dots_on_matches(d, r["matches"])
    shot(page, "explain")

    # a phone-sized window: one above the other, redrawn to the new width
    page.set_viewport_size({"width": 420, "height": 860})
    page.wait_for_function(
        """() => { const im = (s) => document.querySelector(`#explain-svg image[data-slot=${s}]`)
                                              .getBoundingClientRect();
                   return im('b').top > im('a').bottom; }"""
    )
    d = drawing(page)
    assert d["svg"]["w"] <= 420 and d["lines"] == len(r["matches"])
    assert d["a"]["w"] == pytest.approx(d["b"]["w"], abs=0.5)
    assert_dots_on_matches(d, r["matches"])
    shot(page, "explain-narrow")


def test_page_says_no_geometric_match_for_unrelated_images(page, explain_pictures):
    open_page(page, "compare")
    r = compare_on_page(
        page, ("source.jpg", explain_pictures["source.jpg"]), ("flat.jpg", explain_pictures["flat.jpg"])
    )
    assert r["inliers"] == 0 and r["matches"] == []
    assert page.inner_text("#explain-text") == "no geometric match"
    assert page.locator("#explain-svg").is_visible()  # the two pictures, no line between them
    assert page.locator("#explain-svg image").count() == 2 and page.locator("#explain-svg line").count() == 0
    assert page.get_attribute("#explain-svg", "data-lines") == "0"
    assert page.inner_text("#verdict") == "different"
    shot(page, "explain-none")


def test_page_handles_few_null_and_undrawable_matches(page, explain_pictures):
    """Answers the server gives in other setups, played back to the page: a few chance inliers,
    local features off (inliers and matches null), and a picture the page cannot show."""
    answer: dict = {}
    sent: list = []

    def reply(route):
        json_body = "json" in (route.request.headers.get("content-type") or "")
        sent.append(route.request.post_data_json if json_body else route.request.post_data_buffer)
        body = {
            "model": "sscd", "cosine": 0.2, "similarity": 0.6, "score": 36.4, "l2_distance": 1.26,
            "verdict": "different", "elapsed_ms": 5.0, "request_id": "test", **answer,
        }  # fmt: skip
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route("**/v1/compare", reply)
    open_page(page, "compare")

    answer.update(inliers=5, verified=False, matches=[[0.1 * i, 0.5, 1 - 0.1 * i, 0.5] for i in range(5)])
    upload(page, "#file-a", "source.jpg", explain_pictures["source.jpg"])
    upload(page, "#file-b", "flat.jpg", explain_pictures["flat.jpg"])
    page.wait_for_selector("#explain[data-ready=true]")
    assert b'name="explain"\r\n\r\ntrue\r\n' in sent[-1]  # multipart, with explain=true
    assert page.inner_text("#explain-text").startswith("no geometric match (only 5 keypoint pairs agree")
    assert page.locator("#explain-svg line").count() == 5 and page.locator("#explain-svg g.weak").count() == 1
    assert_dots_on_matches(drawing(page), answer["matches"])

    answer.update(inliers=None, verified=None, matches=None)
    page.click("#compare-go")
    page.wait_for_selector("#explain[data-ready=true][data-inliers='']")
    assert page.inner_text("#explain-text") == "no geometric verification (local features are off on this server)"
    assert page.locator("#explain-svg line").count() == 0 and page.locator("#explain-svg image").count() == 2
    assert page.inner_text("#verdict") == "different" and page.locator("#error").is_hidden()

    # image B as a URL (JSON body, explain: true) that does not load here: words, no drawing
    answer.update(inliers=25, verified=True, matches=[[0.5, 0.5, 0.5, 0.5]] * 25)
    page.fill("#url-b", REFUSED_URL)
    page.dispatch_event("#url-b", "change")
    page.wait_for_selector("#explain[data-ready=true][data-inliers='25']")
    assert sent[-1]["explain"] is True and sent[-1]["b"] == {"url": REFUSED_URL}
    assert page.inner_text("#explain-text") == "25 matching keypoints agree on one geometric transform"
    assert page.locator("#explain-svg").is_hidden() and page.get_attribute("#explain-svg", "data-lines") == "0"
    assert page.locator("#error").is_hidden() and page.locator("#compare-result").is_visible()
