"""Alibaba PAI EAS image-similarity dialect, where the ``eas-prediction`` client posts.

``{"imagea": b64, "imageb": b64}`` -> ``{"similarity": [0..100], "l2_distance": [d],
"request_id", "success": true}``. PAI's scale: 100 is the same image, below 80 is not the same
image; lookalike's calibrated score (:mod:`lookalike.scores`) keeps that contract.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lookalike import scores
from lookalike.api.common import EngineDep, RequestId, in_thread, load_image_field, read_json_object
from lookalike.api.security import require_eas_signature
from lookalike.errors import InvalidParameter, LookalikeError

router = APIRouter(tags=["Alibaba PAI EAS"])

_FIELDS = {"imagea", "imageb"}


def error_response(exc: LookalikeError, rid: str) -> JSONResponse:
    body = {"success": False, "error_code": exc.code, "error_msg": exc.message, "request_id": rid}
    return JSONResponse(body, status_code=exc.status)


_IMG = {"type": "string", "description": "base64 image"}
_BODY = {
    "type": "object",
    "properties": {"imagea": _IMG, "imageb": _IMG},
    "required": ["imagea", "imageb"],
    "additionalProperties": False,
}


@router.post(
    "/api/predict/{service_name}",
    summary="Compare two images (PAI EAS)",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _BODY}}}},
)
async def predict(service_name: str, request: Request, rid: RequestId, engine: EngineDep):
    """Errors: error_response, by the app's handler."""
    await require_eas_signature(request)
    body = await read_json_object(request)
    unknown = set(body) - _FIELDS
    if unknown:
        raise InvalidParameter(f"unknown keys: {', '.join(sorted(unknown))}; send imagea and imageb")
    for name in sorted(_FIELDS):
        if name not in body:
            raise InvalidParameter(f"missing {name} (base64 image)")

    def work():
        a = load_image_field(engine.settings, b64=body["imagea"], name="imagea")
        b = load_image_field(engine.settings, b64=body["imageb"], name="imageb")
        return engine.compare(a, b, boundaries=scores.SAME_OR_NOT)

    result = await in_thread(work)
    return {
        "similarity": [round(result.score, 4)],
        "l2_distance": [round(result.l2_distance, 6)],
        "request_id": rid,
        "success": True,
    }
