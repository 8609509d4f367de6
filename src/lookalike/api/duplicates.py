"""Duplicate sets of a gallery, under /v1/groups/{group}/duplicates.

``POST .../duplicates`` answers in the request (fine for a small group); ``POST .../duplicates/jobs``
starts the same work as a background job and answers 202 at once, and ``GET .../jobs/{id}`` reports
its progress and, when done, a page of the sets: a large group never holds a request (or a
worker thread of the server) for long. ``POST .../duplicates/reviewed`` keeps a set as it is, so
it is left out of later results while its members stay the same.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from lookalike.api import gallery_schemas as gs
from lookalike.api.common import RequestId, error_payload, in_thread, json_body
from lookalike.api.galleries import _ERRORS, Gallery, _body, _hit, _image
from lookalike.gallery import validation as v
from lookalike.gallery.jobs import Job
from lookalike.gallery.models import Duplicates

router = APIRouter(prefix="/v1/groups", tags=["galleries"])


def _page(found: Duplicates, offset: int, limit: int) -> dict[str, Any]:
    return {
        "sets": [
            {
                "key": d.key,
                "keep": _image(d.keep),
                "duplicates": [{**_hit(h), "match": match} for h, match in zip(d.duplicates, d.matches, strict=True)],
            }
            for d in found.sets[offset : offset + limit]
        ],
        "total": len(found.sets),
        "duplicates": sum(len(d.duplicates) for d in found.sets),
        "pictures": found.pictures,
        "min_cosine": round(found.min_cosine, 6),
        "reviewed": found.reviewed,
    }


@router.post("/{group_id}/duplicates", summary="Sets of near-duplicate pictures in the group",
             response_model=gs.DuplicatesResponse, responses=_ERRORS, openapi_extra=_body(gs.DuplicatesRequest))
async def duplicates(
    rid: RequestId,
    gallery: Gallery,
    group_id: str,
    body: Annotated[gs.DuplicatesRequest, Depends(json_body(gs.DuplicatesRequest))],
):
    """The same nearest-neighbour pairs as ``lookalike dedup``, over the vectors already stored;
    sets marked reviewed are left out."""
    lim, off = v.limit(body.limit), v.offset(body.offset)
    found = await in_thread(lambda: gallery.duplicates(group_id, body.level, body.match_threshold))
    return {**_page(found, off, lim), "request_id": rid}


def _job(job: Job, rid: str, result: dict[str, Any] | None = None) -> dict[str, Any]:
    running = (job.finished or time.time()) - job.started if job.started else 0.0
    return {
        "job_id": job.id,
        "status": job.status,
        "stage": job.stage,
        "done": job.done,
        "total": job.total,
        "level": job.params["level"],
        "match_threshold": job.params["match_threshold"],
        "elapsed_ms": round(running * 1000, 1),
        "error": error_payload(job.error) if job.error is not None else None,
        "result": result,
        "request_id": rid,
    }


@router.post(
    "/{group_id}/duplicates/jobs",
    summary="Start finding the group's duplicate sets in the background",
    status_code=202,
    response_model=gs.DuplicatesJob,
    responses=_ERRORS,
    openapi_extra=_body(gs.DuplicatesJobRequest),
)
async def start_job(
    rid: RequestId,
    gallery: Gallery,
    group_id: str,
    body: Annotated[gs.DuplicatesJobRequest, Depends(json_body(gs.DuplicatesJobRequest))],
):
    """Answers at once with the job (status queued or running); poll ``GET .../jobs/{job_id}``.
    The same request while that job is unfinished answers the same job."""
    job = await in_thread(lambda: gallery.start_duplicates(group_id, body.level, body.match_threshold))
    return JSONResponse(_job(job, rid), status_code=202)


@router.get("/{group_id}/duplicates/jobs/{job_id}", summary="A duplicates job's progress, and its sets when done",
            response_model=gs.DuplicatesJob, responses=_ERRORS)
async def get_job(rid: RequestId, gallery: Gallery, group_id: str, job_id: str, offset: int = 0, limit: int = 10):
    lim, off = v.limit(limit), v.offset(offset)
    job = gallery.duplicates_job(group_id, job_id)
    result = None
    if job.status == "done":
        found = await in_thread(lambda: gallery.without_reviewed(group_id, job.result))
        result = {**_page(found, off, lim), "request_id": rid}
    return _job(job, rid, result)


@router.post("/{group_id}/duplicates/reviewed", summary="Keep a duplicate set as it is: leave it out from now on",
             response_model=gs.ReviewResponse, responses=_ERRORS, openapi_extra=_body(gs.ReviewRequest))
async def mark_reviewed(
    rid: RequestId,
    gallery: Gallery,
    group_id: str,
    body: Annotated[gs.ReviewRequest, Depends(json_body(gs.ReviewRequest))],
):
    """The set comes back when its members change (a new copy joins it, or one is deleted)."""
    key = await in_thread(lambda: gallery.mark_reviewed(group_id, body.pic_names))
    return {"key": key, "request_id": rid}
