"""Tencent Cloud image search (tiia, API 3.0, version 2019-05-29) dialect: ``POST /``.

Byte-compatible with what ``tencentcloud-sdk-python-tiia`` sends and expects:

* the action in ``X-TC-Action``, the version in ``X-TC-Version`` (or, for the older form-encoded
  signature v1, ``Action`` / ``Version`` fields of the body, with ``ImageRect.X``-style keys);
  ``X-TC-Region``, ``X-TC-Language`` and ``X-TC-RequestClient`` are accepted and ignored;
  with ``LOOKALIKE_AUTH=keys`` the TC3-HMAC-SHA256 (or v1) signature is verified first
  (:mod:`lookalike.api.security`), and the signer's tenant is the only one whose groups exist;
* PascalCase JSON bodies; answers ``{"Response": {..., "RequestId"}}`` and errors
  ``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}``, always HTTP 200 with
  ``Content-Type: application/json`` exactly (the SDK looks for errors only then).

Actions: CreateGroup, DescribeGroups, CreateImage, DescribeImages, UpdateImage, DeleteImages,
SearchImage, plus DeleteGroup (not in Tencent's API; the SDK reaches it with ``call_json``).
This module only translates; :class:`lookalike.gallery.GalleryService` does the work.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lookalike import errors
from lookalike.api.common import in_thread, read_body, request_id, settings_of
from lookalike.api.galleries import gallery_of
from lookalike.api.security import require_tencent_signature
from lookalike.errors import LookalikeError
from lookalike.gallery import NewImage, parse_filter
from lookalike.gallery import validation as v
from lookalike.gallery.subject import Subject
from lookalike.images import decode_base64, fetch_url
from lookalike.storage.base import GroupRecord, ImageRecord

router = APIRouter(tags=["Tencent Cloud image search"])

VERSION = "2019-05-29"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""CreateTime / UpdateTime: Tencent's format, in the server's local time zone."""

# Domain codes -> Tencent's. Codes already in Tencent's form (those with a '.', and Tencent's
# common codes) pass through unchanged.
_CODES = {
    "InvalidParameterValue.ImageRectInvalid": "InvalidParameterValue",
    "ImageDecodeFailed": "FailedOperation.ImageDecodeFailed",
    "ImageNotSupported": "InvalidParameter.ImageFormatNotSupport",
    "ImageSizeExceed": "FailedOperation.ImageSizeExceed",
    "ImageResolutionExceed": "FailedOperation.ImageResolutionExceed",
    "ImageEmpty": "InvalidParameterValue.ImageEmpty",
    "ImageDownloadError": "FailedOperation.ImageDownloadError",
    "UrlIllegal": "InvalidParameterValue.UrlIllegal",
    "ModelNotFound": "InvalidParameterValue",
    "ModelUnavailable": "FailedOperation.InnerError",
    "ServiceUnavailable": "FailedOperation.InnerError",
    "AuthFailure": "AuthFailure.UnauthorizedOperation",
    "AuthFailure.MissingAuthorization": "AuthFailure.InvalidAuthorization",
    "ServerBusy": "RequestLimitExceeded",  # the SDK's retryer backs off on this code
    "StorageFull": "ResourceInsufficient",
    "StoreUnavailable": "FailedOperation.InnerError",
}

# Parameters of each action: name -> kind. Everything else in a request is UnknownParameter.
_STR, _INT, _BOOL, _RECT = "str", "int", "bool", "rect"
PARAMS: dict[str, dict[str, str]] = {
    "CreateGroup": {
        "GroupId": _STR,
        "GroupName": _STR,
        "MaxCapacity": _INT,
        "Brief": _STR,
        "MaxQps": _INT,
        "GroupType": _INT,
    },
    "DescribeGroups": {"Offset": _INT, "Limit": _INT, "GroupId": _STR},
    "DeleteGroup": {"GroupId": _STR},
    "CreateImage": {
        "GroupId": _STR,
        "EntityId": _STR,
        "PicName": _STR,
        "ImageUrl": _STR,
        "CustomContent": _STR,
        "ImageBase64": _STR,
        "Tags": _STR,
        "EnableDetect": _BOOL,
        "CategoryId": _INT,
        "ImageRect": _RECT,
    },
    "DescribeImages": {"GroupId": _STR, "EntityId": _STR, "PicName": _STR},
    "UpdateImage": {"GroupId": _STR, "EntityId": _STR, "PicName": _STR, "Tags": _STR, "CustomContent": _STR},
    "DeleteImages": {"GroupId": _STR, "EntityId": _STR, "PicName": _STR},
    "SearchImage": {
        "GroupId": _STR,
        "ImageUrl": _STR,
        "ImageBase64": _STR,
        "Limit": _INT,
        "Offset": _INT,
        "MatchThreshold": _INT,
        "Filter": _STR,
        "ImageRect": _RECT,
        "EnableDetect": _BOOL,
        "CategoryId": _INT,
    },
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "CreateGroup": ("GroupId", "GroupName"),
    "DeleteGroup": ("GroupId",),
    "CreateImage": ("GroupId",),
    "DescribeImages": ("GroupId",),
    "UpdateImage": ("GroupId",),
    "DeleteImages": ("GroupId",),
    "SearchImage": ("GroupId",),
}
"""Parameters whose absence is MissingParameter; EntityId, PicName and the image have their own codes."""

# Common parameters of signature v1 (form-encoded or GET): never action parameters.
_COMMON = {
    "Action",
    "Version",
    "Region",
    "Timestamp",
    "Nonce",
    "SecretId",
    "Signature",
    "SignatureMethod",
    "Token",
    "Language",
    "RequestClient",
}


def tencent_code(code: str) -> str:
    return _CODES.get(code, code)


def error_response(exc: LookalikeError, rid: str) -> JSONResponse:
    """Tencent answers errors with HTTP 200; the SDK raises TencentCloudSDKException(code)."""
    body = {"Response": {"Error": {"Code": tencent_code(exc.code), "Message": exc.message}, "RequestId": rid}}
    return JSONResponse(body, status_code=200)


# ---------------------------------------------------------------------------- request parsing


def _unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``ImageRect.X=1`` (signature v1 flattening) -> ``{"ImageRect": {"X": "1"}}``."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition(".")
        if rest:
            out.setdefault(head, {})
            if isinstance(out[head], dict):
                out[head][rest] = value
        else:
            out[key] = value
    return out


async def _read(request: Request) -> tuple[str, str, dict[str, Any], bool]:
    """(action, version, parameters, from_text): JSON (signature v3) or form/query (v1)."""
    body = await read_body(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    from_text = False
    if ctype == "application/x-www-form-urlencoded" or (not body.strip() and request.url.query):
        text = body.decode("utf-8", "replace") if body.strip() else request.url.query
        params = _unflatten(parse_qsl(text, keep_blank_values=True))
        from_text = True
    elif not body.strip():
        params = {}
    else:
        try:
            params = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.InvalidParameter(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(params, dict):
            raise errors.InvalidParameter("the request body must be a JSON object")
    action = request.headers.get("x-tc-action") or (params.get("Action") if from_text else None)
    version = request.headers.get("x-tc-version") or (params.get("Version") if from_text else None)
    if from_text:
        params = {k: val for k, val in params.items() if k not in _COMMON}
    if not action:
        raise errors.MissingParameter("the request is missing the X-TC-Action header")
    if not version:
        raise errors.MissingParameter("the request is missing the X-TC-Version header")
    if version != VERSION:
        raise errors.NoSuchVersion(f"version {version!r} does not exist; this service speaks {VERSION}")
    return str(action), str(version), params, from_text


def _coerce(name: str, kind: str, value: Any, from_text: bool) -> Any:
    """Checks one parameter's type; form/query values arrive as text and are converted."""
    if value is None:
        return None
    if kind == _STR:
        if isinstance(value, str):
            return value
    elif kind == _INT:
        if from_text and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
        elif isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind == _BOOL:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind == _RECT:
        if isinstance(value, dict):
            return {k: _coerce(f"{name}.{k}", _INT, item, from_text) for k, item in value.items()}
    type_name = {"str": "String", "int": "Integer", "bool": "Boolean", "rect": "ImageRect object"}[kind]
    raise errors.InvalidParameter(f"the value of parameter `{name}` must be of type {type_name}")


def _params(action: str, raw: dict[str, Any], from_text: bool) -> dict[str, Any]:
    spec = PARAMS[action]
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise errors.UnknownParameter(f"the parameter `{unknown[0]}` is not recognized by {action}")
    params = {name: _coerce(name, kind, raw.get(name), from_text) for name, kind in spec.items()}
    for name in REQUIRED.get(action, ()):
        if params[name] is None:
            raise errors.MissingParameter(f"the request is missing the required parameter `{name}`")
    return params


def _load_image(request: Request, p: dict[str, Any]) -> bytes:
    """ImageUrl wins over ImageBase64 when both are given, as Tencent documents. Blocking."""
    settings = settings_of(request)
    if p.get("ImageUrl"):
        return fetch_url(p["ImageUrl"], settings)
    if p.get("ImageBase64"):
        return decode_base64(p["ImageBase64"], max_bytes=settings.max_image_bytes)
    raise errors.ImageEmpty("give ImageUrl or ImageBase64")


# ---------------------------------------------------------------------------- responses


def _time(seconds: float) -> str:
    return time.strftime(TIME_FORMAT, time.localtime(seconds)) if seconds else ""


def _tags_text(tags: dict[str, object]) -> str:
    return json.dumps(tags, ensure_ascii=False, separators=(",", ":"))


def group_info(group: GroupRecord) -> dict[str, Any]:
    return {
        "GroupId": group.group_id,
        "GroupName": group.group_name,
        "Brief": group.brief,
        "MaxCapacity": group.max_capacity,
        "MaxQps": group.max_qps,
        "GroupType": group.group_type,
        "PicCount": group.pic_count,
        "CreateTime": _time(group.create_time),
        "UpdateTime": _time(group.update_time),
    }


def _box(x: int, y: int, width: int, height: int, score: float, category: int) -> dict[str, Any]:
    return {"Rect": {"X": x, "Y": y, "Width": width, "Height": height}, "Score": score, "CategoryId": category}


def object_info(subject: Subject | None) -> dict[str, Any] | None:
    """Tencent's ObjectInfo: Box (the region used), CategoryId, AllBox (every subject the
    detector found, and the region used when it is none of them); Colors and Attributes are
    not computed here (empty lists). None outside product groups, as Tencent answers null."""
    if subject is None:
        return None
    b = subject.box
    used = _box(b.x, b.y, b.width, b.height, subject.score, subject.category)
    found = [_box(d.x, d.y, d.width, d.height, round(d.score, 4), d.category) for d in subject.boxes]
    if used not in found:
        found.append(used)
    return {"Box": used, "CategoryId": subject.category, "Colors": [], "Attributes": [], "AllBox": found}


def image_info(image: ImageRecord, score: int = 0) -> dict[str, Any]:
    return {
        "EntityId": image.entity_id,
        "CustomContent": image.custom_content,
        "Tags": _tags_text(image.tags),
        "PicName": image.pic_name,
        "Score": score,
    }


# ---------------------------------------------------------------------------- actions

Handler = Callable[[Request, dict[str, Any]], Awaitable[dict[str, Any]]]


async def create_group(request: Request, p: dict[str, Any]) -> dict[str, Any]:
    gallery = gallery_of(request)
    await in_thread(
        gallery.create_group,
        p["GroupId"],
        p["GroupName"],
        brief=p["Brief"],
        max_capacity=p["MaxCapacity"],
        max_qps=p["MaxQps"],
        group_type=p["GroupType"],
    )
    return {}


async def describe_groups(request: Request, p: dict[str, Any]) -> dict[str, Any]:
    groups, _ = await in_thread(gallery_of(request).describe_groups, p["Offset"], p["Limit"], p["GroupId"])
    return {"Groups": [group_info(g) for g in groups]}


async def delete_group(request: Request, p: dict[str, Any]) -> dict[str, Any]:
    await in_thread(gallery_of(request).delete_group, p["GroupId"])
    return {}


async def create_image(request: Request, p: dict[str, Any]) -> dict[str, Any]:
    gallery = gallery_of(request)

    def work() -> Subject | None:
        group = gallery.get_group(p["GroupId"], count=False)  # an unknown group fails before any download
        new = NewImage(
            entity_id=v.entity_id(p["EntityId"]),
            pic_name=v.pic_name(p["PicName"]),
            image=b"",
            custom_content=v.custom_content(p["CustomContent"]),
            tags=v.tags(p["Tags"]),
            rect=v.rect(p["ImageRect"]),
            detect=True if p["EnableDetect"] is None else p["EnableDetect"],
            category_id=p["CategoryId"],
        )
        new.image = _load_image(request, p)
        return gallery.add_image_subject(group.group_id, new)[1]

    subject = await in_thread(work)
    return {"Object": object_info(subject)}


async def describe_images(request: Request, p: dict[str, Any]) -> dict[str, Any]:
    found = await in_thread(gallery_of(request).describe_images, p["GroupId"], p["EntityId"], p["PicName"])
    return {"GroupId": p["GroupId"], "EntityId": p["EntityId"], "ImageInfos": [image_info(i) for i in found]}


async def update_image(request: Request, p: dict[str, Any]) -> dict[str, Any]:
    gallery = gallery_of(request)
    if p["Tags"] is None and p["CustomContent"] is None:
        await in_thread(gallery.describe_images, p["GroupId"], p["EntityId"], p["PicName"])
        return {}
    await in_thread(
        gallery.update_images,
        p["GroupId"],
        p["EntityId"],
        p["PicName"],
        tags=p["Tags"],
        custom_content=p["CustomContent"],
    )
    return {}


async def delete_images(request: Request, p: dict[str, Any]) -> dict[str, Any]:
    await in_thread(gallery_of(request).delete_images, p["GroupId"], p["EntityId"], p["PicName"])
    return {}


async def search_image(request: Request, p: dict[str, Any]) -> dict[str, Any]:
    gallery = gallery_of(request)

    def work():
        group = gallery.get_group(p["GroupId"], count=False)
        limit, offset = v.limit(p["Limit"]), v.offset(p["Offset"])
        threshold = v.match_threshold(p["MatchThreshold"])
        rect = v.rect(p["ImageRect"])
        where = parse_filter(p["Filter"])  # a bad filter fails before any download
        return gallery.search_subject(
            group.group_id, _load_image(request, p), rect=rect, limit=limit, offset=offset,
            match_threshold=threshold, filter=where,
            detect=True if p["EnableDetect"] is None else p["EnableDetect"], category_id=p["CategoryId"],
        )

    hits, subject = await in_thread(work)
    return {
        "Count": len(hits),
        "ImageInfos": [image_info(h.image, h.score) for h in hits],
        "Object": object_info(subject),
    }


ACTIONS: dict[str, Handler] = {
    "CreateGroup": create_group,
    "DescribeGroups": describe_groups,
    "DeleteGroup": delete_group,
    "CreateImage": create_image,
    "DescribeImages": describe_images,
    "UpdateImage": update_image,
    "DeleteImages": delete_images,
    "SearchImage": search_image,
}


def _openapi_extra() -> dict[str, Any]:
    """The action's parameters as JSON, and the two headers that pick the action."""
    kinds = {_STR: {"type": "string"}, _INT: {"type": "integer"}, _BOOL: {"type": "boolean"},
             _RECT: {"type": "object", "properties": {k: {"type": "integer"} for k in ("X", "Y", "Width", "Height")}}}
    bodies = [{"type": "object", "title": action, "properties": {n: kinds[k] for n, k in spec.items()},
               "additionalProperties": False} for action, spec in PARAMS.items()]
    headers = [
        {"name": "X-TC-Action", "in": "header", "required": True, "schema": {"type": "string", "enum": list(PARAMS)}},
        {"name": "X-TC-Version", "in": "header", "required": True, "schema": {"type": "string", "enum": [VERSION]}},
    ]
    return {
        "parameters": headers,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"anyOf": bodies}}}},
    }


@router.post(
    "/",
    openapi_extra=_openapi_extra(),
    summary="Tencent Cloud image search (tiia 2019-05-29): action in X-TC-Action",
    description="CreateGroup, DescribeGroups, DeleteGroup, CreateImage, DescribeImages, UpdateImage, "
    "DeleteImages, SearchImage. Bodies and answers as Tencent Cloud API 3.0; errors are HTTP 200.",
)
async def tencent(request: Request):
    """Errors, expected or not, are answered in Tencent's format by the app (``api.app._render``)."""
    await require_tencent_signature(request)
    action, _, raw, from_text = await _read(request)
    handler = ACTIONS.get(action)
    if handler is None:
        raise errors.InvalidAction(f"the action {action!r} does not exist; known: {', '.join(ACTIONS)}")
    result = await handler(request, _params(action, raw, from_text))
    return JSONResponse({"Response": {**result, "RequestId": request_id(request)}})


@router.get("/", include_in_schema=False)
async def tencent_get(request: Request):
    """The SDK's ``HttpProfile(reqMethod="GET")``: parameters in the query string. A GET without
    an action is a person at the root: point them at the web page and the API docs."""
    if "x-tc-action" not in request.headers and "Action" not in request.query_params:
        body = {
            "error": {"code": "ResourceNotFound", "message": "nothing here: the web page is /ui, the API docs /docs"},
            "request_id": request_id(request),
        }
        return JSONResponse(body, status_code=404)
    return await tencent(request)
