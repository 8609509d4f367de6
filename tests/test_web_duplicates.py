"""The Duplicates page, end to end: a real headless Chromium (as in test_web.py) against a real
server. Two families of copies and one unrelated picture show as two sets; deleting from a set
removes the picture from the gallery; a set kept as reviewed stays gone after a reload. The page
computes the sets as a background job and polls it. Screenshot: test-artifacts/web-duplicates*.png."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

import test_web
from support import copy_families
from test_web import open_page, set_range, shot

# test_web.py's fixtures: the browser, and a page that fails on JS errors or outside requests.
browser, page = test_web.browser, test_web.page


@pytest.fixture
def gallery(server) -> str:
    """A fresh group holding copy_families(), added one by one (the first of each family is kept)."""
    group = "dups_" + uuid.uuid4().hex[:8]
    with httpx.Client(base_url=server, timeout=120) as http:
        assert http.post("/v1/groups", json={"group_id": group}).status_code == 201
        for name, data in copy_families().items():
            body = {
                "entity_id": name.split(".")[0],
                "pic_name": name,
                "image": {"base64": base64.b64encode(data).decode()},
            }
            assert http.post(f"/v1/groups/{group}/images", json=body).status_code == 201
    return group


def find(page, group: str, threshold: int = 0) -> None:
    """Chooses the group (and a MatchThreshold) on the Duplicates tab and waits for the job's result."""
    open_page(page, "duplicates")
    page.wait_for_selector(f"#d-group option[value={group}]", state="attached")
    page.select_option("#d-group", group)
    if threshold:
        set_range(page, "#d-threshold", threshold)
        assert page.inner_text("#d-threshold-out") == str(threshold)
    before = page.inner_text("#d-status")
    page.click("#d-go")
    page.wait_for_selector("#d-progress[data-done]")
    page.wait_for_function("(s) => document.querySelector('#d-status').textContent !== s", arg=before)


def sets(page) -> dict[str, list[str]]:
    """Each set shown: the kept picture -> its members, kept one first."""
    out = {}
    for row in page.locator("#d-sets .dset").all():
        names = [m.get_attribute("data-pic") for m in row.locator(".member").all()]
        out[names[0]] = names
    return out


def test_two_families_show_as_two_sets_and_a_deletion_reaches_the_gallery(page, server, gallery):
    find(page, gallery)
    shown = sets(page)
    assert shown == {"a.jpg": ["a.jpg", "a-mirror.jpg", "a-small.jpg"], "b.jpg": ["b.jpg", "b-crop.jpg"]} or (
        shown == {"a.jpg": ["a.jpg", "a-small.jpg", "a-mirror.jpg"], "b.jpg": ["b.jpg", "b-crop.jpg"]}
    )  # the copies of a, most alike first
    assert "lonely.jpg" not in page.inner_text("#d-sets")
    first = page.locator("#d-sets .dset").first
    assert first.locator(".member.kept .score").inner_text() == "Kept"
    copy = first.locator(".member:not(.kept)").first
    assert copy.locator(".score").inner_text().startswith("Score ")
    assert copy.locator(".match").inner_text() == "near copy"
    assert page.inner_text("#d-status").startswith("2 sets, 3 duplicates among 6 pictures")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#d-sets img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "duplicates")

    # select the cropped copy of b and delete it: a confirmation first; cancelled, nothing happens
    row_b = page.locator("#d-sets .dset", has=page.locator("[data-pic='b-crop.jpg']"))
    row_b.locator("[data-pic='b-crop.jpg'] input[type=checkbox]").check()
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    row_b.locator("button.delete-selected").click()
    page.wait_for_function("() => !document.querySelector('#d-sets .dset .delete-selected:disabled')")
    assert asked and "b-crop.jpg" in asked[0]
    assert httpx.get(f"{server}/v1/groups/{gallery}/images/b-crop.jpg").status_code == 200
    page.once("dialog", lambda d: d.accept())
    row_b.locator("button.delete-selected").click()
    page.wait_for_function("() => document.querySelectorAll('#d-sets .dset').length === 1")  # b is alone now
    assert httpx.get(f"{server}/v1/groups/{gallery}/images/b-crop.jpg").status_code == 404
    left = httpx.get(f"{server}/v1/groups/{gallery}/images", params={"limit": 50}).json()
    assert sorted(im["pic_name"] for im in left["images"]) == [
        "a-mirror.jpg",
        "a-small.jpg",
        "a.jpg",
        "b.jpg",
        "lonely.jpg",
    ]

    # the gallery page agrees
    open_page(page, "galleries")
    page.click(f"#g-rows tr[data-group={gallery}] a")
    page.wait_for_function("() => document.querySelectorAll('#b-images .card').length === 5")


def test_a_reviewed_set_stays_gone_after_a_reload(page, gallery):
    find(page, gallery)
    assert set(sets(page)) == {"a.jpg", "b.jpg"}
    page.locator("#d-sets .dset", has=page.locator("[data-pic='a.jpg']")).locator("button.keep-all").click()
    page.wait_for_function("() => document.querySelectorAll('#d-sets .dset').length === 1")
    assert set(sets(page)) == {"b.jpg"}

    page.reload()
    page.wait_for_selector("body[data-ready]")
    find(page, gallery)
    assert set(sets(page)) == {"b.jpg"}
    assert "1 reviewed and hidden" in page.inner_text("#d-status")
    shot(page, "duplicates-reviewed")


def test_the_galleries_table_opens_a_groups_duplicates(page, gallery):
    open_page(page, "galleries")
    page.locator(f"#g-rows tr[data-group={gallery}]").get_by_role("button", name="Duplicates").click()
    page.wait_for_selector("#d-progress[data-done]")
    page.wait_for_function("() => document.querySelectorAll('#d-sets .dset').length === 2")
    assert page.eval_on_selector("#d-group", "s => s.value") == gallery
    assert page.locator("#tab-duplicates").is_visible()


def test_a_stricter_threshold_leaves_only_the_closest_copy(page, gallery):
    find(page, gallery, threshold=99)
    # the mirror image scores 100 against a.jpg (vectors average each picture with its mirror)
    assert sets(page) == {"a.jpg": ["a.jpg", "a-mirror.jpg"]}
    assert page.inner_text("#d-count") == "sets 1–1 of 1"
