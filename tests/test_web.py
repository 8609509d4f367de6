"""The web page at /ui, end to end: a real headless Chromium (Debian's, driven by Playwright)
against a real server. Screenshots of each page land in test-artifacts/web-*.png."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from support import REPO

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (scripts/test installs it)")

CHROMIUM = os.environ.get("LOOKALIKE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = REPO / "test-artifacts"
REFUSED_URL = "http://127.0.0.1:9/photo.jpg"  # loopback: the server refuses it; the page previews it


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}: scripts/test installs Debian's chromium when run as root or with sudo")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except sync_api.Error as exc:
            pytest.skip(f"chromium at {CHROMIUM} did not start: {str(exc).splitlines()[0]}")
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    """A fresh browser context on the server; fails the test on any JS error or any request
    leaving the server (the page must work air-gapped)."""
    context = browser.new_context(base_url=server, viewport={"width": 1200, "height": 900})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on(
        "request",
        lambda r: (
            r.url.startswith((server, "data:", "blob:", REFUSED_URL)) or problems.append(f"external request: {r.url}")
        ),
    )
    yield pg
    context.close()
    assert not problems


@pytest.fixture(scope="module")
def pictures(photos):
    """Three distinct photos, a re-encoded smaller copy of the first, and a file that is no image."""
    first = photos.image(7101)
    return {
        "alpha.jpg": photos.to_bytes(first),
        "bravo.jpg": photos.jpeg(7202),
        "charlie.jpg": photos.jpeg(7303),
        "alpha-copy.jpg": photos.to_bytes(first.resize((240, 180)), quality=70),
        "broken.jpg": b"this is a text file, not a JPEG",
    }


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=True)


def upload(page, selector: str, name: str, data: bytes) -> None:
    page.set_input_files(selector, files=[{"name": name, "mimeType": "image/jpeg", "buffer": data}])


def drop(page, selector: str, files: dict[str, bytes]) -> None:
    """A real drop event carrying File objects, as a drag from the desktop delivers them."""
    payload = [{"name": n, "b64": base64.b64encode(d).decode()} for n, d in files.items()]
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) {
                const bin = atob(f.b64);
                const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], f.name, { type: 'image/jpeg' }));
            }
            return dt;
        }""",
        payload,
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def open_page(page, tab: str) -> None:
    page.goto(f"/ui#{tab}")
    page.wait_for_selector("body[data-ready]")


def hit_names(page) -> list[str]:
    return page.locator("#s-results .hit .field:has-text('PicName') code").all_inner_texts()


def set_range(page, selector: str, value: int) -> None:
    page.eval_on_selector(
        selector,
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); el.dispatchEvent(new Event('change')); }",
        value,
    )


# ------------------------------------------------------------------------------ serving


def test_assets_come_from_the_package_small_cached_and_gzipped(server):
    with httpx.Client(base_url=server) as c:
        page = c.get("/ui")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        links = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page.text)
        assert len(links) == 2 and all("?v=" in link for link in links)
        assert not re.search(r"(?:src|href)=\"https?:", page.text), "the page must not load anything from elsewhere"
        total = len(page.content)
        for link in links:
            asset = c.get(link)
            assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
            assert asset.headers["content-encoding"] == "gzip"
            assert "http://" not in asset.text and "https://" not in asset.text
            again = c.get(link, headers={"If-None-Match": asset.headers["etag"]})
            assert again.status_code == 304
            total += len(asset.content)
        assert total < 60_000
        assert c.get("/ui/static/nope.js").status_code == 404
        assert c.get("/ui/", follow_redirects=False).headers["location"] == "/ui"


# ------------------------------------------------------------------------------ compare


def test_compare_two_images_shows_both_scales_verdict_and_time(page, pictures):
    open_page(page, "compare")
    upload(page, "#file-a", "alpha.jpg", pictures["alpha.jpg"])
    upload(page, "#file-b", "alpha-copy.jpg", pictures["alpha-copy.jpg"])
    result = page.locator("#compare-result")
    result.wait_for(state="visible")
    assert page.locator("#drop-a img").is_visible() and page.locator("#drop-b img").is_visible()
    assert page.inner_text("#verdict") in ("same image", "near copy")
    similarity = float(page.inner_text("#r-similarity"))
    score = float(page.inner_text("#r-score"))
    assert 0.6 < similarity <= 1 and 80 <= score <= 100
    assert re.match(r"\d+ ms in the browser \([\d.]+ ms on the server", page.inner_text("#r-time"))
    shot(page, "compare")

    # another image in slot B: a new result, on both scales lower
    previous = result.get_attribute("data-ms")
    drop(page, "#drop-b", {"bravo.jpg": pictures["bravo.jpg"]})
    page.wait_for_function("(ms) => document.querySelector('#compare-result').dataset.ms !== ms", arg=previous)
    page.wait_for_function("() => !document.querySelector('#compare-result').classList.contains('busy')")
    assert float(page.inner_text("#r-score")) < score - 10 and float(page.inner_text("#r-similarity")) < similarity
    assert page.inner_text("#verdict") != "same image"


def test_a_bad_image_gives_a_readable_error(page, pictures):
    open_page(page, "compare")
    upload(page, "#file-a", "alpha.jpg", pictures["alpha.jpg"])
    upload(page, "#file-b", "broken.jpg", pictures["broken.jpg"])
    alert = page.locator("#error")
    alert.wait_for(state="visible")
    assert re.match(r"ImageDecodeFailed: .{10,}", alert.inner_text())
    assert page.locator("#compare-result").is_hidden()
    assert page.locator("#tab-compare h1").is_visible()  # the page is still there
    shot(page, "compare-error")

    # a URL the server refuses to fetch (loopback): the page sends JSON (file A as base64)
    page.click("#error-close")
    page.fill("#url-b", REFUSED_URL)
    page.dispatch_event("#url-b", "change")
    alert.wait_for(state="visible")
    assert re.match(r"UrlIllegal: .{10,}", alert.inner_text())


# ------------------------------------------------------------------------------ galleries and search


def test_gallery_create_upload_search_filter_and_delete(page, server, pictures):
    group = "web_" + uuid.uuid4().hex[:8]
    page.on("dialog", lambda d: d.accept())
    open_page(page, "galleries")

    # create a group through the form: it is listed, and opened for browsing
    page.fill("#g-id", group)
    page.fill("#g-name", "Web test")
    page.click("#g-create button")
    page.wait_for_selector(f"#g-rows tr[data-group={group}]")
    page.wait_for_selector("#g-browse:not([hidden])")
    assert page.inner_text("#b-name") == group

    # three images at once by drag and drop: counter, then three thumbnails
    three = {name: pictures[name] for name in ("alpha.jpg", "bravo.jpg", "charlie.jpg")}
    drop(page, "#b-drop", three)
    page.wait_for_selector("#b-progress[data-done]")
    assert page.inner_text("#b-counter") == "3 / 3 uploaded"
    page.wait_for_function("() => document.querySelectorAll('#b-images .card').length === 3")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#b-images img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator(f"#g-rows tr[data-group={group}] td.num").inner_text() == "3"
    shot(page, "galleries")

    # a file that is no image, through the file input: listed with its error, nothing added
    upload(page, "#b-files", "broken.jpg", pictures["broken.jpg"])
    page.wait_for_selector("#b-failures li")
    assert re.match(r"broken\.jpg: ImageDecodeFailed: ", page.inner_text("#b-failures li"))
    assert page.inner_text("#b-counter") == "0 / 1 uploaded, 1 failed"

    # tags through the native API (the page shows them, it does not edit them)
    tags = {
        "alpha.jpg": {"color": "red", "size": 5},
        "bravo.jpg": {"color": "red", "size": 2},
        "charlie.jpg": {"color": "blue", "size": 9},
    }
    for name, value in tags.items():
        r = httpx.patch(f"{server}/v1/groups/{group}/images/{quote(name)}", json={"tags": value})
        assert r.status_code == 200, r.text

    # search with one of them: it is the top hit, with its score, names and tags
    open_page(page, "search")
    page.wait_for_selector(f"#s-group option[value={group}]", state="attached")
    page.select_option("#s-group", group)
    set_range(page, "#s-threshold", 1)  # every picture with a positive score
    assert page.inner_text("#s-threshold-out") == "1"
    upload(page, "#s-file", "query.jpg", pictures["bravo.jpg"])
    page.wait_for_selector("#s-results .hit")
    first = page.locator("#s-results .hit").first
    assert hit_names(page)[0] == "bravo.jpg"
    assert first.locator(".score").inner_text() == "Score 100"
    assert "EntityId bravo" in first.inner_text() and 'color="red"' in first.inner_text()
    unfiltered = hit_names(page)
    assert len(unfiltered) >= 1
    shot(page, "search")

    # a tag filter changes the grid
    page.fill("#s-filter", 'color="blue" AND size>3')
    page.press("#s-filter", "Enter")
    page.wait_for_function("() => !document.querySelector('#s-go').disabled")
    filtered = hit_names(page)
    assert "bravo.jpg" not in filtered and set(filtered) <= {"charlie.jpg"}
    assert filtered != unfiltered
    page.fill("#s-filter", 'color="red"')
    page.click("#s-go")
    page.wait_for_function("() => !document.querySelector('#s-go').disabled")
    assert hit_names(page)[0] == "bravo.jpg" and set(hit_names(page)) <= {"alpha.jpg", "bravo.jpg"}
    shot(page, "search-filtered")

    # paging: offset 1 drops the top hit
    if len(hit_names(page)) == 2:
        page.fill("#s-offset", "1")
        page.click("#s-go")
        page.wait_for_function("() => document.querySelector('#s-status').textContent.includes('offset 1')")
        assert hit_names(page) == ["alpha.jpg"]
        page.click("#s-prev")
        page.wait_for_function("() => document.querySelector('#s-status').textContent.includes('offset 0')")
        assert hit_names(page)[0] == "bravo.jpg"

    # a crop box drawn on the query image -> an ImageRect in the original image's pixels
    box = page.locator("#s-img").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6, steps=4)
    page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.75, steps=4)
    page.mouse.up()
    rect = page.inner_text("#s-rect-text")
    x, y, w, h = map(int, re.findall(r"\d+", rect))  # the picture is 320 x 240
    assert abs(x - 80) <= 3 and abs(y - 60) <= 3 and abs(w - 160) <= 4 and abs(h - 120) <= 4, rect
    page.click("#s-go")
    page.wait_for_function("() => !document.querySelector('#s-go').disabled")
    assert page.locator("#error").is_hidden()
    assert hit_names(page)[0] == "bravo.jpg"
    shot(page, "search-crop")

    # delete one image, then a whole entity, from the browse grid
    open_page(page, "galleries")
    page.click(f"#g-rows tr[data-group={group}] a")
    page.wait_for_function("() => document.querySelectorAll('#b-images .card').length === 3")
    page.locator("#b-images .card", has_text="charlie.jpg").get_by_role("button", name="Delete image").click()
    page.wait_for_function("() => document.querySelectorAll('#b-images .card').length === 2")
    page.locator("#b-images .card", has_text="alpha.jpg").get_by_role("button", name="Delete entity").click()
    page.wait_for_function("() => document.querySelectorAll('#b-images .card').length === 1")
    left = httpx.get(f"{server}/v1/groups/{group}/images").json()
    assert [im["pic_name"] for im in left["images"]] == ["bravo.jpg"]


def test_a_product_group_search_draws_its_subject_and_a_drawn_box_replaces_it(page, server, pictures):
    """Product groups (GroupType 5) answer the region they searched: drawn on the query, dashed;
    a box the user draws replaces it and goes as ImageRect."""
    done = subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "models", "install", "detector"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    group = "web_shop_" + uuid.uuid4().hex[:8]
    assert httpx.post(f"{server}/v1/groups", json={"group_id": group, "group_type": 5}).status_code == 201
    for name in ("alpha.jpg", "bravo.jpg"):
        body = {"entity_id": name, "pic_name": name, "image": {"base64": base64.b64encode(pictures[name]).decode()}}
        assert httpx.post(f"{server}/v1/groups/{group}/images", json=body, timeout=120).status_code == 201
    open_page(page, "search")
    page.wait_for_selector(f"#s-group option[value={group}]", state="attached")
    page.select_option("#s-group", group)
    upload(page, "#s-file", "query.jpg", pictures["bravo.jpg"])
    page.wait_for_selector("#s-results .hit")
    page.wait_for_function("() => document.querySelector('#s-rect-text').textContent.startsWith('Subject searched')")
    assert hit_names(page)[0] == "bravo.jpg"
    assert page.locator("#s-box.found").is_visible()
    shot(page, "search-subject")
    box = page.locator("#s-img").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.9, steps=4)
    page.mouse.up()
    assert page.inner_text("#s-rect-text").startswith("ImageRect:")
    assert page.locator("#s-box.found").count() == 0

    # the browse grid says which region of each stored picture its thumbnail (and vector) is
    open_page(page, "galleries")
    page.click(f"#g-rows tr[data-group={group}] a")
    page.wait_for_function("() => document.querySelectorAll('#b-images .card').length === 2")
    assert "Region x=0, y=0, 320×240" in page.locator("#b-images .card").first.inner_text()


@pytest.fixture(scope="module")
def keyed_server(server_factory, tmp_path_factory, pictures):
    """A server with LOOKALIKE_AUTH=keys, a key of tenant "web", and one group with a picture."""
    from lookalike.auth import KeyStore

    data_dir = tmp_path_factory.mktemp("web-keys") / "data"
    store = KeyStore(data_dir)
    key = store.create("web").secret["api_key"]
    store.close()
    url = server_factory({"LOOKALIKE_AUTH": "keys"}, data_dir).base_url
    headers = {"x-api-key": key}
    assert httpx.post(f"{url}/v1/groups", json={"group_id": "locked"}, headers=headers).status_code == 201
    image = {
        "entity_id": "alpha",
        "pic_name": "alpha.jpg",
        "image": {"base64": base64.b64encode(pictures["alpha.jpg"]).decode()},
    }
    added = httpx.post(f"{url}/v1/groups/locked/images", json=image, headers=headers, timeout=60)
    assert added.status_code == 201, added.text
    return url, key


def test_with_auth_on_the_page_asks_for_the_key_once_and_sends_it(browser, keyed_server, pictures):
    url, key = keyed_server
    context = browser.new_context(base_url=url, viewport={"width": 1200, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    sent: list[str | None] = []
    page.on("request", lambda r: "/v1/" in r.url and sent.append(r.headers.get("x-api-key")))
    try:
        # no key yet: the server's 401 opens the key dialog with the server's reason
        open_page(page, "galleries")
        dialog = page.locator("#key-dialog")
        dialog.wait_for(state="visible")
        assert "AuthFailure.MissingAuthorization" in page.inner_text("#key-why")
        shot(page, "api-key")

        # a wrong key: the server refuses it and the page says so instead of going blank
        page.fill("#key-input", key[:-2] + "xx")
        page.click("#key-dialog button[value=save]")
        page.wait_for_selector("#error:not([hidden])")
        assert "AuthFailure.SecretIdNotFound" in page.inner_text("#error-text")

        # a reload asks again; the right key opens the tenant's galleries
        page.reload()
        page.wait_for_selector("body[data-ready]")
        dialog.wait_for(state="visible")
        assert "AuthFailure.SecretIdNotFound" in page.inner_text("#key-why")
        page.fill("#key-input", key)
        page.click("#key-dialog button[value=save]")
        page.wait_for_selector("#g-rows tr[data-group=locked]")
        assert page.locator("#error").is_hidden()
        assert page.evaluate("localStorage.getItem('lookalike.apiKey')") == key

        # thumbnails need the key too: fetched with the header, they render
        page.click("#g-rows tr[data-group=locked] a")
        page.wait_for_function("() => document.querySelectorAll('#b-images .card').length === 1")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#b-images img')].every((i) => i.complete && i.naturalWidth > 0)"
        )

        # search on another tab, with no second question
        open_page(page, "search")
        page.wait_for_selector("#s-group option[value=locked]", state="attached")
        page.select_option("#s-group", "locked")
        upload(page, "#s-file", "query.jpg", pictures["alpha.jpg"])
        page.wait_for_selector("#s-results .hit")
        assert hit_names(page)[0] == "alpha.jpg"
        assert dialog.is_hidden()
        after = sent[sent.index(key):]
        assert after and all(k == key for k in after)
    finally:
        context.close()
