"""AWS AI Solution Kit image-similarity dialect.

One image (``url`` or ``img``) -> ``{"result": [512 floats]}``; two (``url_1``/``img_1`` and
``url_2``/``img_2``) -> ``{"similarity": 0.5 + 0.5 * cosine}``. Errors: ``{"Code", "Message",
"RequestId"}`` with the error's status; a missing or bad ``x-api-key`` is 403 with
``"message": "Forbidden"`` too, as API Gateway answers.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lookalike import scores
from lookalike.api.common import EngineDep, in_thread, load_image_field, read_json_object
from lookalike.engine import Engine
from lookalike.errors import AuthFailure, InvalidParameter, LookalikeError

router = APIRouter(tags=["AWS AI Solution Kit"])

PATHS = ("/image_similarity", "/text_similarity")
_SINGLE = {"url", "img"}
_PAIR = {"url_1", "img_1", "url_2", "img_2"}


def error_response(exc: LookalikeError, rid: str) -> JSONResponse:
    body = {"Code": exc.code, "Message": exc.message, "RequestId": rid}
    if isinstance(exc, AuthFailure):
        return JSONResponse({**body, "message": "Forbidden"}, status_code=403)
    return JSONResponse(body, status_code=exc.status)


def _parse(body: dict) -> tuple[str, dict]:
    keys = set(body)
    unknown = keys - _SINGLE - _PAIR
    if unknown:
        raise InvalidParameter(f"unknown keys: {', '.join(sorted(unknown))}")
    if keys & _SINGLE and keys & _PAIR:
        raise InvalidParameter("send either url/img (one image) or url_1/img_1 and url_2/img_2 (two images)")
    if keys & _PAIR:
        return "pair", body
    if keys & _SINGLE:
        return "single", body
    raise InvalidParameter("missing image: send url or img, or url_1/img_1 and url_2/img_2")


async def _handle(request: Request, engine: Engine) -> dict:
    body = await read_json_object(request)
    kind, fields = _parse(body)
    settings = engine.settings

    def work() -> dict:
        if kind == "single":
            data = load_image_field(settings, b64=fields.get("img"), url=fields.get("url"), name="img/url")
            return {"result": engine.embed_one(data).tolist()}
        first = load_image_field(settings, b64=fields.get("img_1"), url=fields.get("url_1"), name="img_1/url_1")
        second = load_image_field(settings, b64=fields.get("img_2"), url=fields.get("url_2"), name="img_2/url_2")
        # AWS answers the cosine alone: no geometric verification, whose inliers it never returns.
        return {"similarity": engine.compare(first, second, verify=False, boundaries=scores.NO_BOUNDARY).aws_similarity}

    return await in_thread(work)


_IMG = {"type": "string", "description": "base64 image (jpg, png, bmp)"}
_URL = {"type": "string", "description": "http(s) or s3 URL of the image"}
_BODY = {
    "oneOf": [
        {"type": "object", "properties": {"img": _IMG, "url": _URL}, "additionalProperties": False, "minProperties": 1},
        {"type": "object", "properties": {"img_1": _IMG, "url_1": _URL, "img_2": _IMG, "url_2": _URL},
         "additionalProperties": False, "minProperties": 2},
    ]
}  # fmt: skip


@router.post(
    "/image_similarity",
    summary="Embed one image or compare two (AWS AI Solution Kit)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _BODY}}}},
)
async def image_similarity(request: Request, engine: EngineDep):
    return await _handle(request, engine)  # errors: error_response, by the app's handler


@router.post("/text_similarity", include_in_schema=False)
async def text_similarity(request: Request, engine: EngineDep):
    """The path AWS's own documentation shows for this solution."""
    return await _handle(request, engine)
