"""The native gallery API under /v1/groups: the same galleries as the Tencent dialect, in REST.

Groups: ``POST /v1/groups``, ``GET /v1/groups``, ``GET|DELETE /v1/groups/{group}``.
Images: ``POST /v1/groups/{group}/images`` (a JSON object, a JSON array for a batch, or a
multipart upload), ``GET`` to page through them, ``GET|PATCH|DELETE .../images/{pic}`` and
``GET .../images/{pic}/thumbnail``. Search: ``POST /v1/groups/{group}/search``.
Errors: ``{"error": {"code", "message"}, "request_id"}`` with the status of the error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from lookalike.api import gallery_schemas as gs
from lookalike.api.common import RequestId, SettingsDep, in_thread, json_body, load_image_field, read_json
from lookalike.api.forms import is_multipart, read_form
from lookalike.api.native import error_response
from lookalike.api.schemas import ErrorResponse, parse
from lookalike.api.security import principal_of
from lookalike.config import Settings
from lookalike.errors import InvalidParameter, LookalikeError
from lookalike.gallery import GalleryService, NewImage, SearchHit, parse_filter
from lookalike.gallery import validation as v
from lookalike.gallery.service import batch_status
from lookalike.gallery.subject import Subject
from lookalike.images.decode import Rect
from lookalike.storage.base import GroupRecord, ImageRecord

router = APIRouter(prefix="/v1/groups", tags=["galleries"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 409, 413, 503)
}


def gallery_of(request: Request) -> GalleryService:
    """The caller's tenant's view of the galleries; 503 while the store is not open (or failed to)."""
    gallery = getattr(request.app.state, "gallery", None)
    if gallery is None:
        reason = getattr(request.app.state, "gallery_error", None) or "the gallery store is not open yet"
        raise LookalikeError(reason, code="ServiceUnavailable", status=503)
    return gallery.for_tenant(principal_of(request).tenant)


Gallery = Annotated[GalleryService, Depends(gallery_of)]


def _body(model: type, multipart: dict | None = None, *, array_of: type | None = None) -> dict:
    schema = gs.inline_schema(model)
    if array_of is not None:
        schema = {"oneOf": [schema, {"type": "array", "items": gs.inline_schema(array_of)}]}
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if multipart:
        content["multipart/form-data"] = {"schema": multipart}
    return {"requestBody": {"required": True, "content": content}}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat() if seconds else ""


def _group(g: GroupRecord) -> dict[str, Any]:
    return {
        "group_id": g.group_id,
        "group_name": g.group_name,
        "brief": g.brief,
        "max_capacity": g.max_capacity,
        "max_qps": g.max_qps,
        "group_type": g.group_type,
        "model": g.model,
        "pic_count": g.pic_count,
        "create_time": _iso(g.create_time),
        "update_time": _iso(g.update_time),
    }


def _thumb_url(group_id: str, pic_name: str) -> str:
    return f"/v1/groups/{group_id}/images/{quote(pic_name, safe='')}/thumbnail"


def _image(r: ImageRecord) -> dict[str, Any]:
    rect = None if r.rect is None else dict(zip(("x", "y", "width", "height"), r.rect, strict=True))
    return {
        "group_id": r.group_id,
        "entity_id": r.entity_id,
        "pic_name": r.pic_name,
        "custom_content": r.custom_content,
        "tags": r.tags,
        "rect": rect,
        "create_time": _iso(r.create_time),
        "update_time": _iso(r.update_time),
        "thumbnail_url": _thumb_url(r.group_id, r.pic_name),
    }


def _hit(h: SearchHit) -> dict[str, Any]:
    r = h.image
    return {
        "entity_id": r.entity_id,
        "pic_name": r.pic_name,
        "custom_content": r.custom_content,
        "tags": r.tags,
        "score": h.score,
        "cosine": round(h.cosine, 6),
        "inliers": h.inliers,
        "thumbnail_url": _thumb_url(r.group_id, r.pic_name),
    }


def _box(x: int, y: int, width: int, height: int, score: float, category: int, label: str) -> dict[str, Any]:
    return {
        "box": {"x": x, "y": y, "width": width, "height": height},
        "score": score,
        "category": category,
        "label": label,
    }


def _object(subject: Subject | None) -> dict[str, Any] | None:
    """A product group's subject: the region searched (or stored), and all the detector saw."""
    if subject is None:
        return None
    b = subject.box
    return {
        **_box(b.x, b.y, b.width, b.height, subject.score, subject.category, subject.label),
        "requested": subject.requested,
        "honoured": subject.honoured,
        "boxes": [_box(d.x, d.y, d.width, d.height, round(d.score, 4), d.category, d.label) for d in subject.boxes],
    }


def _rect(rect: gs.RectIn | None) -> Rect | None:
    if rect is None:
        return None
    return v.rect({"X": rect.x, "Y": rect.y, "Width": rect.width, "Height": rect.height})


# ---------------------------------------------------------------------------- groups


@router.post("", summary="Create a group", status_code=201, response_model=gs.GroupResponse, responses=_ERRORS,
             openapi_extra=_body(gs.GroupCreate))
async def create_group(
    rid: RequestId, gallery: Gallery, body: Annotated[gs.GroupCreate, Depends(json_body(gs.GroupCreate))]
):
    group = await in_thread(
        gallery.create_group,
        body.group_id,
        body.group_name,
        brief=body.brief,
        max_capacity=body.max_capacity,
        max_qps=body.max_qps,
        group_type=body.group_type,
        model=body.model,
    )
    return JSONResponse({**_group(group), "request_id": rid}, status_code=201)


@router.get("", summary="List groups", response_model=gs.GroupList, responses=_ERRORS)
async def list_groups(rid: RequestId, gallery: Gallery, offset: int = 0, limit: int = 10):
    groups, total = await in_thread(gallery.describe_groups, offset, limit)
    return {"groups": [_group(g) for g in groups], "total": total, "request_id": rid}


@router.get("/{group_id}", summary="One group", response_model=gs.GroupResponse, responses=_ERRORS)
async def get_group(rid: RequestId, gallery: Gallery, group_id: str):
    group = await in_thread(gallery.get_group, group_id)
    return {**_group(group), "request_id": rid}


@router.delete("/{group_id}", summary="Delete a group and its pictures", response_model=gs.Deleted, responses=_ERRORS)
async def delete_group(rid: RequestId, gallery: Gallery, group_id: str):
    await in_thread(gallery.delete_group, group_id)
    return {"deleted": 1, "request_id": rid}


# ---------------------------------------------------------------------------- images

_UPLOAD_FORM = {
    "type": "object",
    "properties": {
        "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "entity_id": {"type": "string", "description": "default: each file's name without extension"},
        "pic_name": {"type": "string", "description": "only with one file; default: the file name"},
        "custom_content": {"type": "string"},
        "tags": {"type": "string", "description": "a JSON object, applied to every file"},
        "rect": {"type": "string", "description": 'JSON {"x", "y", "width", "height"}'},
    },
    "required": ["images"],
}


def _new_images_from_json(settings: Settings, items: list[gs.ImageCreate]) -> list[NewImage | LookalikeError]:
    """Fetches every image (URLs included); a failure stays in its slot. Blocking."""
    out: list[NewImage | LookalikeError] = []
    for i, item in enumerate(items):
        try:
            data = load_image_field(settings, b64=item.image.base64, url=item.image.url, name=f"image {i}")
            out.append(NewImage(item.entity_id, item.pic_name, data, item.custom_content or "", item.tags or {},
                                _rect(item.rect), item.detect, item.category_id))
        except LookalikeError as exc:
            out.append(exc)
    return out


async def _json_items(request: Request, settings: Settings) -> tuple[list[gs.ImageCreate], bool]:
    """The pictures of a JSON body, and whether it was one object (one picture, not a batch)."""
    body = await read_json(request)
    if isinstance(body, dict):
        return [parse(gs.ImageCreate, body)], True
    if not isinstance(body, list):
        raise InvalidParameter("send a JSON object (one picture) or an array (a batch)")
    if not body:
        raise InvalidParameter("the batch is empty")
    if len(body) > settings.max_batch_images:
        raise InvalidParameter(f"at most {settings.max_batch_images} pictures per request")
    return [parse(gs.ImageCreate, item) for item in body], False


def _form_rect(rect_json: Any) -> Rect | None:
    return _rect(parse(gs.RectIn, rect_json)) if rect_json is not None else None


@router.post(
    "/{group_id}/images",
    summary="Add pictures: one (JSON object), a batch (JSON array) or files (multipart)",
    status_code=201,
    response_model=gs.ImageResponse | gs.BatchResponse,
    responses=_ERRORS,
    openapi_extra=_body(gs.ImageCreate, _UPLOAD_FORM, array_of=gs.ImageCreate),
)
async def add_images(request: Request, rid: RequestId, settings: SettingsDep, gallery: Gallery, group_id: str):
    await in_thread(gallery.get_group, group_id, count=False)  # unknown group: 404 before reading images
    if is_multipart(request):
        fields = ("entity_id", "pic_name", "custom_content", "tags", "rect")
        form = await read_form(
            request, ("images",), fields, max_files=settings.max_batch_images, max_image_bytes=settings.max_image_bytes
        )
        uploads = [(u.filename, u.data) for u in form.uploads("images")]
        if not uploads:
            raise InvalidParameter("images: send at least one file")
        names: list[str | None] = [form.get("pic_name") or filename for filename, _ in uploads]
        single = len(uploads) == 1 and "pic_name" in form.text
        results = await in_thread(
            gallery.add_uploads,
            group_id,
            uploads,
            entity_id=form.get("entity_id"),
            pic_name=form.text.get("pic_name"),
            custom_content=form.text.get("custom_content", ""),
            tags=form.json("tags"),
            rect=_form_rect(form.json("rect")),
        )
    else:
        items, single = await _json_items(request, settings)
        news = await in_thread(_new_images_from_json, settings, items)
        names = [new.pic_name if isinstance(new, NewImage) else None for new in news]
        results = await in_thread(gallery.add_prepared, group_id, news)
    if single:
        result = results[0]
        if isinstance(result, LookalikeError):
            return error_response(result, rid)
        return JSONResponse({**_image(result), "request_id": rid}, status_code=201)
    items_out = []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, LookalikeError):
            items_out.append({"pic_name": name, "ok": False, "error": {"code": result.code, "message": result.message}})
        else:
            items_out.append({"pic_name": result.pic_name, "ok": True, "image": _image(result)})
    created = sum(1 for item in items_out if item["ok"])
    body_out = {"results": items_out, "created": created, "failed": len(items_out) - created, "request_id": rid}
    return JSONResponse(body_out, status_code=batch_status(results))


@router.get("/{group_id}/images", summary="Page through a group's pictures, newest first", response_model=gs.ImageList,
            responses=_ERRORS)
async def list_images(
    rid: RequestId, gallery: Gallery, group_id: str, offset: int = 0, limit: int = 50, entity_id: str | None = None
):
    if entity_id is not None:
        found = await in_thread(gallery.describe_images, group_id, entity_id)
        images, total = found[offset : offset + v.limit(limit)], len(found)
    else:
        images, total = await in_thread(gallery.list_images, group_id, offset, limit)
    return {"images": [_image(r) for r in images], "total": total, "request_id": rid}


@router.get("/{group_id}/images/{pic_name:path}/thumbnail", summary="The stored JPEG thumbnail (longest side <= 256)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}, **_ERRORS})
async def thumbnail(request: Request, gallery: Gallery, group_id: str, pic_name: str):
    data = await in_thread(gallery.thumbnail, group_id, pic_name)
    # A PicName can be deleted and reused: browsers revalidate, and get 304 while it is unchanged.
    etag = '"' + hashlib.sha1(data).hexdigest()[:20] + '"'
    headers = {"Cache-Control": "private, no-cache", "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get(
    "/{group_id}/images/{pic_name:path}", summary="One picture", response_model=gs.ImageResponse, responses=_ERRORS
)
async def get_image(rid: RequestId, gallery: Gallery, group_id: str, pic_name: str):
    record = await in_thread(gallery.find_image, group_id, pic_name)
    return {**_image(record), "request_id": rid}


@router.patch("/{group_id}/images/{pic_name:path}", summary="Replace a picture's tags and/or custom content",
              response_model=gs.ImageResponse, responses=_ERRORS, openapi_extra=_body(gs.ImagePatch))
async def update_image(
    rid: RequestId,
    gallery: Gallery,
    group_id: str,
    pic_name: str,
    body: Annotated[gs.ImagePatch, Depends(json_body(gs.ImagePatch))],
):
    record = await in_thread(
        gallery.update_image, group_id, pic_name, tags=body.tags, custom_content=body.custom_content
    )
    return {**_image(record), "request_id": rid}


@router.delete("/{group_id}/images/{pic_name:path}", summary="Delete a picture", response_model=gs.Deleted,
               responses=_ERRORS)
async def delete_image(rid: RequestId, gallery: Gallery, group_id: str, pic_name: str):
    deleted = await in_thread(gallery.delete_image, group_id, pic_name)
    return {"deleted": deleted, "request_id": rid}


# ---------------------------------------------------------------------------- search

_SEARCH_FORM = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "limit": {"type": "integer"},
        "offset": {"type": "integer"},
        "match_threshold": {"type": "number"},
        "filter": {"type": "string"},
        "rect": {"type": "string", "description": 'JSON {"x", "y", "width", "height"}'},
        "detect": {"type": "boolean", "description": "product groups: search with the subject's region (default true)"},
        "category_id": {"type": "integer", "description": "product groups: the subject's category, 0..5"},
    },
    "required": ["image"],
}


@dataclass(frozen=True)
class _Query:
    """A search's options, whichever wire they came on (JSON or form fields)."""

    load: Callable[[], bytes]
    rect: Rect | None
    limit: int | None
    offset: int | None
    match_threshold: float | None
    filter: str | None
    detect: bool
    category_id: int | None


async def _search_query(request: Request, settings: Settings) -> _Query:
    if is_multipart(request):
        fields = ("limit", "offset", "match_threshold", "filter", "rect", "detect", "category_id")
        form = await read_form(request, ("image",), fields, max_files=1, max_image_bytes=settings.max_image_bytes)
        uploads = form.uploads("image")
        if len(uploads) != 1:
            raise InvalidParameter("image: send exactly one file")
        data = uploads[0].data
        return _Query(
            lambda: data,
            rect=_form_rect(form.json("rect")),
            limit=form.integer("limit"),
            offset=form.integer("offset"),
            match_threshold=form.number("match_threshold"),
            filter=form.text.get("filter"),
            detect=form.text.get("detect", "true").lower() != "false",
            category_id=form.integer("category_id"),
        )
    body = parse(gs.SearchRequest, await read_json(request))
    return _Query(
        lambda: load_image_field(settings, b64=body.image.base64, url=body.image.url, name="image"),
        rect=_rect(body.rect),
        limit=body.limit,
        offset=body.offset,
        match_threshold=body.match_threshold,
        filter=body.filter,
        detect=body.detect,
        category_id=body.category_id,
    )


@router.post("/{group_id}/search", summary="Pictures like an image, best first", response_model=gs.SearchResponse,
             responses=_ERRORS, openapi_extra=_body(gs.SearchRequest, _SEARCH_FORM))
async def search(request: Request, rid: RequestId, settings: SettingsDep, gallery: Gallery, group_id: str):
    query = await _search_query(request, settings)

    def work() -> tuple[list[SearchHit], Subject | None]:
        gallery.get_group(group_id, count=False)
        v.limit(query.limit), v.offset(query.offset), v.match_threshold(query.match_threshold)
        where = parse_filter(query.filter)  # refused before any download
        return gallery.search_subject(
            group_id,
            query.load(),
            rect=query.rect,
            limit=query.limit,
            offset=query.offset,
            match_threshold=query.match_threshold,
            filter=where,
            detect=query.detect,
            category_id=query.category_id,
        )

    hits, subject = await in_thread(work)
    return {"results": [_hit(h) for h in hits], "count": len(hits), "object": _object(subject), "request_id": rid}
