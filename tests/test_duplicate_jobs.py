"""A gallery's duplicate sets as a background job, and sets marked reviewed: the native routes on a
real server, and the review marks on each storage backend (they live in the data dir either way)."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from lookalike.engine import Engine
from lookalike.gallery import GalleryService, NewImage
from lookalike.storage import open_store
from support import copy_families

FAMILIES = {"a.jpg": {"a-small.jpg", "a-mirror.jpg"}, "b.jpg": {"b-crop.jpg"}}


def add(http: httpx.Client, group: str, pictures: dict[str, bytes]) -> None:
    for name, data in pictures.items():  # one by one: the first added is the one a set keeps
        body = {"entity_id": name.split(".")[0], "pic_name": name, "image": {"base64": base64.b64encode(data).decode()}}
        assert http.post(f"/v1/groups/{group}/images", json=body).status_code == 201


def finished(http: httpx.Client, group: str, job_id: str, **page) -> dict:
    """Polls the job until it is done or failed (the deadline only stops a hung test)."""
    deadline = time.monotonic() + 120
    while True:
        job = http.get(f"/v1/groups/{group}/duplicates/jobs/{job_id}", params=page).json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def families(result: dict) -> dict[str, set[str]]:
    return {s["keep"]["pic_name"]: {d["pic_name"] for d in s["duplicates"]} for s in result["sets"]}


def test_a_job_finds_the_sets_and_a_reviewed_set_stays_out_until_it_changes(server):
    with httpx.Client(base_url=server, timeout=120) as http:
        assert http.post("/v1/groups", json={"group_id": "jobs"}).status_code == 201
        pictures = copy_families()
        add(http, "jobs", pictures)

        started = http.post("/v1/groups/jobs/duplicates/jobs", json={"level": "near"})
        assert started.status_code == 202, started.text
        job = started.json()
        assert job["status"] in ("queued", "running", "done") and job["result"] is None and job["level"] == "near"
        job = finished(http, "jobs", job["job_id"])
        assert job["status"] == "done", job
        assert (job["stage"], job["done"], job["total"]) == ("matching", 6, 6)
        result = job["result"]
        assert families(result) == FAMILIES and result["pictures"] == 6 and result["reviewed"] == 0
        one_page = finished(http, "jobs", job["job_id"], limit=1, offset=1)["result"]
        assert one_page["total"] == 2 and [s["key"] for s in one_page["sets"]] == [result["sets"][1]["key"]]

        # keep family b as it is: it is left out of this job's result, of the next job's and of the plain route
        b = next(s for s in result["sets"] if s["keep"]["pic_name"] == "b.jpg")
        marked = http.post("/v1/groups/jobs/duplicates/reviewed", json={"pic_names": ["b-crop.jpg", "b.jpg"]})
        assert marked.status_code == 200 and marked.json()["key"] == b["key"]
        again = finished(http, "jobs", job["job_id"])["result"]
        assert families(again) == {"a.jpg": FAMILIES["a.jpg"]} and again["reviewed"] == 1
        fresh = http.post("/v1/groups/jobs/duplicates/jobs", json={}).json()
        assert families(finished(http, "jobs", fresh["job_id"])["result"]) == {"a.jpg": FAMILIES["a.jpg"]}
        plain = http.post("/v1/groups/jobs/duplicates", json={}).json()
        assert families(plain) == {"a.jpg": FAMILIES["a.jpg"]} and plain["reviewed"] == 1

        # a new copy joins family b: that set was not reviewed, so it comes back
        add(http, "jobs", {"b-copy.jpg": pictures["b.jpg"]})
        plain = http.post("/v1/groups/jobs/duplicates", json={}).json()
        assert families(plain)["b.jpg"] == {"b-crop.jpg", "b-copy.jpg"} and plain["reviewed"] == 0


def test_the_python_client_runs_a_job_and_marks_a_set(server):
    from lookalike.client import ApiError, Client

    with httpx.Client(base_url=server, timeout=120) as http:
        assert http.post("/v1/groups", json={"group_id": "jobs_client"}).status_code == 201
        add(http, "jobs_client", copy_families())
    with Client(server, timeout=120) as client:
        job = client.duplicates_job("jobs_client", poll_s=0.1)
        assert job["status"] == "done" and families(job["result"]) == FAMILIES
        a = next(s for s in job["result"]["sets"] if s["keep"]["pic_name"] == "a.jpg")
        assert client.mark_reviewed("jobs_client", ["a.jpg", *sorted(FAMILIES["a.jpg"])]) == a["key"]
        assert families(client.duplicates_job("jobs_client", poll_s=0.1)["result"]) == {"b.jpg": FAMILIES["b.jpg"]}
        with pytest.raises(ApiError) as caught:
            client.duplicates_job("no_such_group")
        assert caught.value.status == 404


def test_bad_job_and_review_requests_get_their_codes(server):
    with httpx.Client(base_url=server, timeout=120) as http:
        for group in ("jobs_errors", "jobs_other"):
            assert http.post("/v1/groups", json={"group_id": group}).status_code == 201
        add(http, "jobs_errors", {k: v for k, v in copy_families().items() if k.startswith("b")})
        job = http.post("/v1/groups/jobs_errors/duplicates/jobs", json={}).json()

        def error(response: httpx.Response, status: int) -> str:
            assert response.status_code == status, response.text
            return response.json()["error"]["code"]

        assert error(http.get("/v1/groups/jobs_errors/duplicates/jobs/nope"), 404) == "ResourceNotFound"
        assert error(http.get(f"/v1/groups/jobs_other/duplicates/jobs/{job['job_id']}"), 404) == "ResourceNotFound"
        assert error(http.post("/v1/groups/missing/duplicates/jobs", json={}), 404).endswith("ImageGroupIdNotExist")
        assert (
            error(http.post("/v1/groups/jobs_errors/duplicates/jobs", json={"level": "exact"}), 400)
            == "InvalidParameter"
        )
        assert (
            error(http.post("/v1/groups/jobs_errors/duplicates/jobs", json={"match_threshold": 101}), 400)
            == "InvalidParameterValue"
        )
        assert error(http.post("/v1/groups/jobs_errors/duplicates/jobs", content=b"{"), 400) == "InvalidParameter"
        review = "/v1/groups/jobs_errors/duplicates/reviewed"
        assert error(http.post(review, json={"pic_names": ["b.jpg"]}), 400) == "InvalidParameterValue"
        assert error(http.post(review, json={"pic_names": ["b.jpg", "b.jpg"]}), 400) == "InvalidParameterValue"
        assert (
            error(http.post(review, json={"pic_names": ["b.jpg", "gone.jpg"]}), 404)
            == "FailedOperation.ImageNotFoundInfo"
        )
        assert error(http.post(review, json={"names": ["b.jpg"]}), 400) == "InvalidParameter"
        bad_page = http.get(f"/v1/groups/jobs_errors/duplicates/jobs/{job['job_id']}", params={"limit": 1000})
        assert error(bad_page, 400).startswith("InvalidParameterValue")
        assert finished(http, "jobs_errors", job["job_id"])["status"] == "done"


def test_review_marks_outlive_the_service_and_go_with_their_group(tmp_path, backend):
    settings = backend.make_settings(tmp_path / "data", threads=2)
    engine = Engine(settings)
    pictures = copy_families()

    def fill(service: GalleryService) -> None:
        service.create_group("marks")
        for name, data in pictures.items():
            service.add_image("marks", NewImage(name, name, data))

    service = GalleryService(open_store(settings), engine)
    try:
        fill(service)
        sets = service.duplicates("marks").sets
        assert {d.keep.pic_name for d in sets} == {"a.jpg", "b.jpg"}
        a = next(d for d in sets if d.keep.pic_name == "a.jpg")
        assert service.mark_reviewed("marks", ["a-mirror.jpg", "a.jpg", "a-small.jpg"]) == a.key
    finally:
        service.close()
    assert (tmp_path / "data" / "reviews.db").is_file()

    service = GalleryService(open_store(settings), engine)  # a restart
    try:
        found = service.duplicates("marks")
        assert [d.keep.pic_name for d in found.sets] == ["b.jpg"] and found.reviewed == 1
        assert len(service.duplicates("marks", reviewed=True).sets) == 2
        other = service.for_tenant("someone")  # another tenant's group of the same id knows no marks
        fill(other)
        assert {d.keep.pic_name for d in other.duplicates("marks").sets} == {"a.jpg", "b.jpg"}
        service.delete_group("marks")  # a group made again under the same id starts clean
        fill(service)
        assert {d.keep.pic_name for d in service.duplicates("marks").sets} == {"a.jpg", "b.jpg"}
    finally:
        service.close()
