"""The native REST API under /v1: batch embedding, comparison, models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lookalike.api import schemas
from lookalike.api.common import EngineDep, RequestId, in_thread, load_image_field, read_json_object
from lookalike.api.forms import Form, is_multipart, read_form
from lookalike.api.schemas import parse
from lookalike.config import Settings
from lookalike.errors import InvalidParameter, LookalikeError
from lookalike.models import MODELS

router = APIRouter(prefix="/v1", tags=["native"])


def error_response(exc: LookalikeError, rid: str) -> JSONResponse:
    body = {"error": {"code": exc.code, "message": exc.message}, "request_id": rid}
    return JSONResponse(body, status_code=exc.status)


def _body_schema(model: type, *files: str, many: bool = False) -> dict:
    """A JSON body described by ``model``, or a multipart form of the named file fields."""
    binary = {"type": "string", "format": "binary"}
    file_schema = {"type": "array", "items": binary} if many else binary
    form = {
        "type": "object",
        "properties": {**{name: file_schema for name in files}, "model": {"type": "string"}},
        "required": list(files),
    }
    content = {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
        "multipart/form-data": {"schema": form},
    }
    return {"requestBody": {"required": True, "content": content}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.ErrorResponse},
    413: {"model": schemas.ErrorResponse},
}
_FORM_FIELDS = ("model", "explain")
"""The text fields of both routes' forms (``explain`` only means something to /compare)."""


async def _form(request: Request, settings: Settings, *files: str) -> Form:
    form = await read_form(
        request, files, _FORM_FIELDS, max_files=settings.max_batch_images + 2, max_image_bytes=settings.max_image_bytes
    )
    form.boolean("explain", False)  # malformed: refused on either route, as always
    return form


def _ref_loader(settings: Settings, ref: schemas.ImageRef, name: str) -> Callable[[], bytes]:
    """Loads (fetches or decodes) the image when called, in the worker thread."""
    return lambda: load_image_field(settings, b64=ref.base64, url=ref.url, name=name)


def _bytes_loader(data: bytes) -> Callable[[], bytes]:
    return lambda: data


@router.post(
    "/embed",
    summary="Embed a batch of images",
    response_model=schemas.EmbedResponse,
    responses=_ERRORS,
    openapi_extra=_body_schema(schemas.EmbedRequest, "images", many=True),
)
async def embed(request: Request, rid: RequestId, engine: EngineDep):
    settings = engine.settings
    loaders: list[Callable[[], bytes]]
    if is_multipart(request):
        form = await _form(request, settings, "images")
        model = form.get("model")
        if not form.uploads("images"):
            raise InvalidParameter("images: send at least one file")
        loaders = [_bytes_loader(upload.data) for upload in form.uploads("images")]
    else:
        body = parse(schemas.EmbedRequest, await read_json_object(request))
        model = body.model
        loaders = [_ref_loader(settings, ref, f"images.{i}") for i, ref in enumerate(body.images)]
    if len(loaders) > settings.max_batch_images:
        raise InvalidParameter(f"at most {settings.max_batch_images} images per request")
    name = model or engine.default_model

    def work():
        return engine.embed([load() for load in loaders], model=name)

    vectors = await in_thread(work)
    return {"model": name, "dim": int(vectors.shape[1]), "vectors": vectors.tolist(), "request_id": rid}


MAX_MATCHES = 300
"""Inlier matches an explained comparison returns at most (the strongest keypoints first)."""


@router.post(
    "/compare",
    summary="Compare two images",
    response_model=schemas.CompareResponse,
    responses=_ERRORS,
    openapi_extra=_body_schema(schemas.CompareRequest, "a", "b"),
)
async def compare(request: Request, rid: RequestId, engine: EngineDep):
    settings = engine.settings
    if is_multipart(request):
        form = await _form(request, settings, "a", "b")
        if len(form.uploads("a")) != 1 or len(form.uploads("b")) != 1:
            raise InvalidParameter("send exactly one file as 'a' and one as 'b'")
        model, explain = form.get("model"), form.boolean("explain", False)
        load_a, load_b = _bytes_loader(form.uploads("a")[0].data), _bytes_loader(form.uploads("b")[0].data)
    else:
        body = parse(schemas.CompareRequest, await read_json_object(request))
        model, explain = body.model, body.explain
        load_a, load_b = _ref_loader(settings, body.a, "a"), _ref_loader(settings, body.b, "b")

    verify = True if explain else None  # explained: the matches are the answer, whatever the cosine
    result = await in_thread(lambda: engine.compare(load_a(), load_b(), model=model, verify=verify))
    out = {
        "model": result.model,
        "pipeline": result.pipeline,
        "cosine": result.cosine,
        "similarity": result.aws_similarity,
        "score": round(result.score, 2),
        "l2_distance": result.l2_distance,
        "verdict": str(result.verdict),
        "inliers": result.inliers,
        "verified": result.verified,
        "elapsed_ms": round(result.seconds * 1000, 2),
        "request_id": rid,
    }
    if explain:
        matches = result.verification.matches if result.verification is not None else None
        out["matches"] = (
            None if matches is None else [[round(float(v), 4) for v in row] for row in matches[:MAX_MATCHES]]
        )
    return out


@router.get("/models", summary="Models this server can run", response_model=list[schemas.ModelInfo])
async def models(engine: EngineDep):
    loaded = set(engine.loaded_models())
    return [
        {
            "name": spec.name,
            "dim": spec.dim,
            "input": engine.embedding_tag,
            "description": spec.description,
            "loaded": spec.name in loaded,
            "default": spec.name == engine.default_model,
        }
        for spec in MODELS.values()
    ]
