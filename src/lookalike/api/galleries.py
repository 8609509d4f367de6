"""The native gallery API under /v1/groups: the same galleries as the Tencent dialect, in REST.

Groups: ``POST /v1/groups``, ``GET /v1/groups``, ``GET|DELETE /v1/groups/{group}``.
Images: ``POST /v1/groups/{group}/images`` (a JSON object, a JSON array for a batch, or a
multipart upload), ``GET`` to page through them, ``GET|PATCH|DELETE .../images/{pic}`` and
``GET .../images/{pic}/thumbnail``. Search: ``POST /v1/groups/{group}/search``.
Errors: ``{"error": {"code", "message"}, "request_id"}`` with the status of the error.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from lookalike.api import gallery_schemas as gs
from lookalike.api.common import in_thread, load_image_field, read_body, request_id, settings_of
from lookalike.api.native import error_response
from lookalike.api.schemas import ErrorResponse, parse
from lookalike.api.security import principal_of
from lookalike.errors import ImageSizeExceed, InvalidParameter, LookalikeError
from lookalike.gallery import GalleryService, NewImage, SearchHit, parse_filter
from lookalike.gallery import validation as v
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
    rect = None if r.rect is None else dict(zip(("x", "y", "width", "height"), r.rect))
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
    return {"box": {"x": x, "y": y, "width": width, "height": height}, "score": score, "category": category, "label": label}


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


async def _json(request: Request) -> Any:
    body = await read_body(request)
    if not body.strip():
        raise InvalidParameter("the request body is empty; send JSON")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameter(f"the request body is not valid JSON: {exc}") from None


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def _form(request: Request, files: str, fields: set[str], max_files: int) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """(filename, bytes) of the ``files`` field and the text fields, each file bounded."""
    settings = settings_of(request)
    try:
        form = await request.form(max_files=max_files, max_fields=len(fields) + 1)
    except LookalikeError:
        raise
    except Exception as exc:
        raise InvalidParameter(f"cannot read the multipart form: {exc}") from None
    uploads: list[tuple[str, bytes]] = []
    text: dict[str, str] = {}
    for key, value in form.multi_items():
        if key == files:
            if isinstance(value, str):
                raise InvalidParameter(f"form field {key!r} must be a file")
            data = await value.read(settings.max_image_bytes + 1)
            if len(data) > settings.max_image_bytes:
                raise ImageSizeExceed(f"{value.filename or key} is larger than {settings.max_image_bytes} bytes")
            uploads.append((value.filename or "", data))
        elif key in fields:
            if not isinstance(value, str):
                raise InvalidParameter(f"form field {key!r} must be text")
            text[key] = value
        else:
            raise InvalidParameter(f"unknown form field {key!r}; expected {files}, {', '.join(sorted(fields))}")
    return uploads, text


def _form_int(text: dict[str, str], name: str) -> int | None:
    if name not in text or text[name] == "":
        return None
    try:
        return int(text[name])
    except ValueError:
        raise InvalidParameter(f"{name} must be an integer") from None


def _form_json(text: dict[str, str], name: str) -> Any:
    if name not in text or text[name] == "":
        return None
    try:
        return json.loads(text[name])
    except ValueError as exc:
        raise InvalidParameter(f"{name} is not valid JSON: {exc}") from None


# ---------------------------------------------------------------------------- groups


@router.post("", summary="Create a group", status_code=201, response_model=gs.GroupResponse, responses=_ERRORS,
             openapi_extra=_body(gs.GroupCreate))
async def create_group(request: Request):
    rid = request_id(request)
    body = parse(gs.GroupCreate, await _json(request))
    group = await in_thread(
        gallery_of(request).create_group,
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
async def list_groups(request: Request, offset: int = 0, limit: int = 10):
    rid = request_id(request)
    groups, total = await in_thread(gallery_of(request).describe_groups, offset, limit)
    return {"groups": [_group(g) for g in groups], "total": total, "request_id": rid}


@router.get("/{group_id}", summary="One group", response_model=gs.GroupResponse, responses=_ERRORS)
async def get_group(request: Request, group_id: str):
    rid = request_id(request)
    group = await in_thread(gallery_of(request).get_group, group_id)
    return {**_group(group), "request_id": rid}


@router.delete("/{group_id}", summary="Delete a group and its pictures", response_model=gs.Deleted, responses=_ERRORS)
async def delete_group(request: Request, group_id: str):
    rid = request_id(request)
    await in_thread(gallery_of(request).delete_group, group_id)
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


def _new_images_from_json(request: Request, items: list[gs.ImageCreate]) -> list[NewImage | LookalikeError]:
    """Fetches every image (URLs included); a failure stays in its slot. Blocking."""
    settings = settings_of(request)
    out: list[NewImage | LookalikeError] = []
    for i, item in enumerate(items):
        try:
            data = load_image_field(settings, b64=item.image.base64, url=item.image.url, name=f"image {i}")
            out.append(NewImage(item.entity_id, item.pic_name, data, item.custom_content or "", item.tags or {},
                                _rect(item.rect), item.detect, item.category_id))
        except LookalikeError as exc:
            out.append(exc)
    return out


def _add_all(gallery: GalleryService, group_id: str, news: list[NewImage | LookalikeError]) -> list[ImageRecord | LookalikeError]:
    ready = [n for n in news if isinstance(n, NewImage)]
    added = iter(gallery.add_images(group_id, ready) if ready else [])
    return [next(added) if isinstance(n, NewImage) else n for n in news]


@router.post(
    "/{group_id}/images",
    summary="Add pictures: one (JSON object), a batch (JSON array) or files (multipart)",
    status_code=201,
    response_model=gs.ImageResponse | gs.BatchResponse,
    responses=_ERRORS,
    openapi_extra=_body(gs.ImageCreate, _UPLOAD_FORM, array_of=gs.ImageCreate),
)
async def add_images(request: Request, group_id: str):
    rid = request_id(request)
    settings = settings_of(request)
    gallery = gallery_of(request)
    await in_thread(gallery.get_group, group_id, count=False)  # unknown group: 404 before reading images
    if _is_multipart(request):
        fields = {"entity_id", "pic_name", "custom_content", "tags", "rect"}
        uploads, text = await _form(request, "images", fields, settings.max_batch_images)
        if not uploads:
            raise InvalidParameter("images: send at least one file")
        if "pic_name" in text and len(uploads) > 1:
            raise InvalidParameter("pic_name names one picture: send one file, or let the file names be the names")
        rect_json = _form_json(text, "rect")
        rect = _rect(parse(gs.RectIn, rect_json)) if rect_json is not None else None
        tags = _form_json(text, "tags")
        news: list[NewImage | LookalikeError] = [
            NewImage(
                entity_id=text.get("entity_id") or filename.rsplit(".", 1)[0],
                pic_name=text.get("pic_name") or filename,
                image=data,
                custom_content=text.get("custom_content", ""),
                tags=tags or {},
                rect=rect,
            )
            for filename, data in uploads
        ]
        single = len(uploads) == 1 and "pic_name" in text
    else:
        body = await _json(request)
        single = isinstance(body, dict)
        if isinstance(body, list):
            if not body:
                raise InvalidParameter("the batch is empty")
            if len(body) > settings.max_batch_images:
                raise InvalidParameter(f"at most {settings.max_batch_images} pictures per request")
            items = [parse(gs.ImageCreate, item) for item in body]
        elif isinstance(body, dict):
            items = [parse(gs.ImageCreate, body)]
        else:
            raise InvalidParameter("send a JSON object (one picture) or an array (a batch)")
        news = await in_thread(_new_images_from_json, request, items)
    results = await in_thread(_add_all, gallery, group_id, news)
    if single:
        result = results[0]
        if isinstance(result, LookalikeError):
            return error_response(result, rid)
        return JSONResponse({**_image(result), "request_id": rid}, status_code=201)
    items_out = []
    for new, result in zip(news, results):
        name = new.pic_name if isinstance(new, NewImage) else None
        if isinstance(result, LookalikeError):
            items_out.append({"pic_name": name, "ok": False, "error": {"code": result.code, "message": result.message}})
        else:
            items_out.append({"pic_name": result.pic_name, "ok": True, "image": _image(result)})
    created = sum(1 for item in items_out if item["ok"])
    body_out = {"results": items_out, "created": created, "failed": len(items_out) - created, "request_id": rid}
    return JSONResponse(body_out, status_code=201 if created == len(items_out) else 207 if created else _all_failed(results))


def _all_failed(results: list) -> int:
    """A batch where nothing was stored: the errors' status when they agree (507 for a full
    disk, 429, 503), else 400."""
    statuses = {r.status for r in results if isinstance(r, LookalikeError)}
    return statuses.pop() if len(statuses) == 1 else 400


@router.get("/{group_id}/images", summary="Page through a group's pictures, newest first", response_model=gs.ImageList,
            responses=_ERRORS)
async def list_images(request: Request, group_id: str, offset: int = 0, limit: int = 50, entity_id: str | None = None):
    rid = request_id(request)
    gallery = gallery_of(request)
    if entity_id is not None:
        found = await in_thread(gallery.describe_images, group_id, entity_id)
        images, total = found[offset : offset + v.limit(limit)], len(found)
    else:
        images, total = await in_thread(gallery.list_images, group_id, offset, limit)
    return {"images": [_image(r) for r in images], "total": total, "request_id": rid}


@router.get("/{group_id}/images/{pic_name:path}/thumbnail", summary="The stored JPEG thumbnail (longest side <= 256)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}, **_ERRORS})
async def thumbnail(request: Request, group_id: str, pic_name: str):
    data = await in_thread(gallery_of(request).thumbnail, group_id, pic_name)
    # A PicName can be deleted and reused: browsers revalidate, and get 304 while it is unchanged.
    etag = '"' + hashlib.sha1(data).hexdigest()[:20] + '"'
    headers = {"Cache-Control": "private, no-cache", "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get("/{group_id}/images/{pic_name:path}", summary="One picture", response_model=gs.ImageResponse, responses=_ERRORS)
async def get_image(request: Request, group_id: str, pic_name: str):
    rid = request_id(request)
    record = await in_thread(gallery_of(request).find_image, group_id, pic_name)
    return {**_image(record), "request_id": rid}


@router.patch("/{group_id}/images/{pic_name:path}", summary="Replace a picture's tags and/or custom content",
              response_model=gs.ImageResponse, responses=_ERRORS, openapi_extra=_body(gs.ImagePatch))
async def update_image(request: Request, group_id: str, pic_name: str):
    rid = request_id(request)
    body = parse(gs.ImagePatch, await _json(request))
    gallery = gallery_of(request)

    def work() -> ImageRecord:
        record = gallery.find_image(group_id, pic_name)
        if body.tags is not None or body.custom_content is not None:
            gallery.update_images(
                group_id, record.entity_id, record.pic_name, tags=body.tags, custom_content=body.custom_content
            )
        return gallery.find_image(group_id, pic_name)

    record = await in_thread(work)
    return {**_image(record), "request_id": rid}


@router.delete("/{group_id}/images/{pic_name:path}", summary="Delete a picture", response_model=gs.Deleted,
               responses=_ERRORS)
async def delete_image(request: Request, group_id: str, pic_name: str):
    rid = request_id(request)
    gallery = gallery_of(request)

    def work() -> int:
        record = gallery.find_image(group_id, pic_name)
        return gallery.delete_images(group_id, record.entity_id, record.pic_name)

    deleted = await in_thread(work)
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


@router.post("/{group_id}/search", summary="Pictures like an image, best first", response_model=gs.SearchResponse,
             responses=_ERRORS, openapi_extra=_body(gs.SearchRequest, _SEARCH_FORM))
async def search(request: Request, group_id: str):
    rid = request_id(request)
    settings = settings_of(request)
    gallery = gallery_of(request)
    if _is_multipart(request):
        uploads, text = await _form(
            request, "image", {"limit", "offset", "match_threshold", "filter", "rect", "detect", "category_id"}, 1
        )
        if len(uploads) != 1:
            raise InvalidParameter("image: send exactly one file")
        rect_json = _form_json(text, "rect")
        threshold = text.get("match_threshold") or None
        try:
            match = float(threshold) if threshold is not None else None
        except ValueError:
            raise InvalidParameter("match_threshold must be a number") from None
        query = {
            "rect": _rect(parse(gs.RectIn, rect_json)) if rect_json is not None else None,
            "limit": _form_int(text, "limit"),
            "offset": _form_int(text, "offset"),
            "match_threshold": match,
            "filter": text.get("filter"),
            "detect": text.get("detect", "true").lower() != "false",
            "category_id": _form_int(text, "category_id"),
        }
        load = lambda: uploads[0][1]  # noqa: E731
    else:
        body = parse(gs.SearchRequest, await _json(request))
        query = {
            "rect": _rect(body.rect),
            "limit": body.limit,
            "offset": body.offset,
            "match_threshold": body.match_threshold,
            "filter": body.filter,
            "detect": body.detect,
            "category_id": body.category_id,
        }
        load = lambda: load_image_field(settings, b64=body.image.base64, url=body.image.url, name="image")  # noqa: E731

    def work() -> tuple[list[SearchHit], Subject | None]:
        gallery.get_group(group_id, count=False)
        v.limit(query["limit"]), v.offset(query["offset"]), v.match_threshold(query["match_threshold"])
        query["filter"] = parse_filter(query["filter"])  # refused before any download
        return gallery.search_subject(group_id, load(), **query)

    hits, subject = await in_thread(work)
    return {"results": [_hit(h) for h in hits], "count": len(hits), "object": _object(subject), "request_id": rid}
