"""The native REST API under /v1: batch embedding, comparison, models."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lookalike.api import schemas
from lookalike.api.common import engine_of, in_thread, load_image_field, read_json_object, request_id, settings_of
from lookalike.errors import ImageSizeExceed, InvalidParameter, LookalikeError
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


_ERRORS = {400: {"model": schemas.ErrorResponse}, 413: {"model": schemas.ErrorResponse}}


async def _multipart_images(request: Request, *names: str) -> dict[str, list[bytes]]:
    """Files of a multipart form, by field name, each bounded by max_image_bytes."""
    settings = settings_of(request)
    try:
        form = await request.form(max_files=settings.max_batch_images + 2, max_fields=16)
    except LookalikeError:
        raise
    except Exception as exc:
        raise InvalidParameter(f"cannot read the multipart form: {exc}") from None
    out: dict[str, list[bytes]] = {name: [] for name in names}
    for key, value in form.multi_items():
        if key not in out:
            if key in ("model", "explain"):
                continue
            raise InvalidParameter(f"unknown form field {key!r}; expected {', '.join(names)}")
        if isinstance(value, str):
            raise InvalidParameter(f"form field {key!r} must be a file")
        data = await value.read(settings.max_image_bytes + 1)
        if len(data) > settings.max_image_bytes:
            raise ImageSizeExceed(f"{value.filename or key} is larger than {settings.max_image_bytes} bytes")
        out[key].append(data)
    model = form.get("model")
    out["__model__"] = [model] if isinstance(model, str) and model else []  # type: ignore[list-item]
    explain = form.get("explain")
    if explain is not None and (not isinstance(explain, str) or explain.lower() not in ("true", "false", "1", "0")):
        raise InvalidParameter("form field 'explain' must be true or false")
    out["__explain__"] = [explain] if isinstance(explain, str) and explain.lower() in ("true", "1") else []  # type: ignore[list-item]
    return out


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def _load_ref(settings, ref: schemas.ImageRef, name: str) -> bytes:
    return load_image_field(settings, b64=ref.base64, url=ref.url, name=name)


@router.post(
    "/embed",
    summary="Embed a batch of images",
    response_model=schemas.EmbedResponse,
    responses=_ERRORS,
    openapi_extra=_body_schema(schemas.EmbedRequest, "images", many=True),
)
async def embed(request: Request):
    rid = request_id(request)
    engine = engine_of(request)
    settings = engine.settings
    if _is_multipart(request):
        form = await _multipart_images(request, "images")
        images, model = form["images"], (form["__model__"] or [None])[0]
        if not images:
            raise InvalidParameter("images: send at least one file")
        loaders = [lambda data=data: data for data in images]
    else:
        body = schemas.parse(schemas.EmbedRequest, await read_json_object(request))
        model = body.model
        loaders = [lambda i=i, ref=ref: _load_ref(settings, ref, f"images.{i}") for i, ref in enumerate(body.images)]
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
async def compare(request: Request):
    rid = request_id(request)
    engine = engine_of(request)
    settings = engine.settings
    if _is_multipart(request):
        form = await _multipart_images(request, "a", "b")
        if len(form["a"]) != 1 or len(form["b"]) != 1:
            raise InvalidParameter("send exactly one file as 'a' and one as 'b'")
        model = (form["__model__"] or [None])[0]
        explain = bool(form["__explain__"])
        load_a, load_b = (lambda: form["a"][0]), (lambda: form["b"][0])
    else:
        body = schemas.parse(schemas.CompareRequest, await read_json_object(request))
        model, explain = body.model, body.explain
        load_a = lambda: _load_ref(settings, body.a, "a")  # noqa: E731
        load_b = lambda: _load_ref(settings, body.b, "b")  # noqa: E731

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
async def models(request: Request):
    engine = engine_of(request)
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
