"""The FastAPI application: every dialect mounted over one engine."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema

import lookalike
from lookalike.api import aws, health, native, pai, schemas
from lookalike.api.common import BodyLimit
from lookalike.api.metrics import Metrics
from lookalike.api.security import Access, require_api_key
from lookalike.config import Settings, get_settings
from lookalike.engine import Engine
from lookalike.errors import LookalikeError, ServerBusy
from lookalike.web import routes as web

log = logging.getLogger("lookalike")

REQUEST_ID_HEADER = "X-Request-Id"


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema, plus the models of bodies that routes parse themselves (JSON or multipart)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, defs = models_json_schema(
            [(m, "validation") for m in (schemas.EmbedRequest, schemas.CompareRequest)],
            ref_template="#/components/schemas/{model}",
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        app.openapi_schema = schema
    return app.openapi_schema


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI and ReDoc from the installed package: an air-gapped browser renders them."""
    static = resources.files("fastapi_offline") / "static"
    app.mount("/_docs", StaticFiles(directory=str(static)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger():
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="lookalike API",
            swagger_js_url="/_docs/swagger-ui-bundle.js",
            swagger_css_url="/_docs/swagger-ui.css",
            swagger_favicon_url="/_docs/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc():
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="lookalike API",
            redoc_js_url="/_docs/redoc.standalone.js",
            with_google_fonts=False,
        )


def _render(request: Request, exc: LookalikeError):
    """An error in the wire format of the dialect the request speaks."""
    from lookalike.api import tencent

    path, rid = request.url.path, getattr(request.state, "request_id", "")
    if path == "/":
        return tencent.error_response(exc, rid)
    if path in aws.PATHS:
        return aws.error_response(exc, rid)
    if path.startswith("/api/predict/"):
        return pai.error_response(exc, rid)
    return native.error_response(exc, rid)


_MODEL_ACTIONS = {"CreateImage", "SearchImage"}


def _model_bound(request: Request) -> bool:
    """Requests that will need the model: admitted (or shed) before their body is read."""
    path = request.url.path
    if request.method != "POST":
        return False
    if path == "/":
        return request.headers.get("x-tc-action") in _MODEL_ACTIONS
    return (
        path in aws.PATHS
        or path.startswith("/api/predict/")
        or path in ("/v1/embed", "/v1/compare")
        or (path.startswith("/v1/groups/") and path.endswith(("/search", "/images")))
    )


async def _drain(request: Request) -> None:
    """Reads and drops a shed request's body, so its client gets the answer, not a reset."""
    try:
        async for _ in request.stream():
            pass
    except Exception:  # past the body limit, or the client went away: the answer still goes out
        pass


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = engine or Engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Load the default model off the event loop: /healthz answers at once, /readyz when loaded.
        async def warm() -> None:
            try:
                await asyncio.to_thread(engine.embedder)
            except LookalikeError as exc:
                app.state.startup_error = f"{exc.code}: {exc.message}"
                log.error("model not loaded: %s", exc.message)

        task = asyncio.create_task(warm())
        app.state.access.warn_if_exposed()
        for hook in app.state.startup_hooks:
            await hook(app)
        yield
        task.cancel()
        for hook in app.state.shutdown_hooks:
            await hook(app)
        app.state.access.close()

    app = FastAPI(
        title="lookalike",
        version=lookalike.__version__,
        description="Self-hosted image similarity and image search. Native API under /v1; "
        "AWS (/image_similarity), PAI EAS (/api/predict/{service}) and Tencent (POST / with X-TC-Action) dialects.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = Metrics()
    app.state.access = Access(settings)
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    app.state.startup_error = None
    app.state.startup_hooks = []
    app.state.model_requests = 0  # in flight on model-bound routes (one event loop: a plain int)
    app.state.shutdown_hooks = []

    @app.middleware("http")
    async def request_context(request: Request, call_next):
        rid = request.headers.get(REQUEST_ID_HEADER) or str(uuid.uuid4())
        request.state.request_id = rid[:128]
        start = time.perf_counter()
        state = request.app.state
        admitted = _model_bound(request)
        gate = state.engine.gate
        try:
            if admitted and state.model_requests >= gate.concurrency + gate.queue:
                # Shed on arrival: no body parsed, no image decoded, no worker thread taken.
                admitted = False
                gate.shed += 1
                await _drain(request)
                busy = ServerBusy(
                    f"the server is busy: {state.model_requests} requests need the model already; retry later"
                )
                state.metrics.errors.labels(busy.code).inc()
                response = _render(request, busy)
            else:
                if admitted:
                    state.model_requests += 1
                response = await call_next(request)
        except Exception:  # a bug: still an answer in the API's format, with its id, and counted
            log.exception("unexpected error")
            state.metrics.errors.labels("InternalError").inc()
            err = LookalikeError("internal error; see the server log", code="InternalError", status=500)
            response = _render(request, err)
        finally:
            if admitted:
                state.model_requests -= 1
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics: Metrics = request.app.state.metrics
        metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - start)
        response.headers[REQUEST_ID_HEADER] = request.state.request_id
        return response

    @app.exception_handler(LookalikeError)
    async def domain_error(request: Request, exc: LookalikeError):
        request.app.state.metrics.errors.labels(exc.code).inc()
        return _render(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        err = LookalikeError(f"{where}: {first.get('msg')}", code="InvalidParameter", status=400)
        return native.error_response(err, getattr(request.state, "request_id", ""))

    keyed = [Depends(require_api_key)]  # Tencent and PAI check their own signatures in the route
    app.include_router(health.router)
    app.include_router(native.router, dependencies=keyed)
    app.include_router(aws.router, dependencies=keyed)
    app.include_router(pai.router)
    _mount_gallery(app, settings, engine)
    _mount_docs(app)
    app.include_router(web.router)  # the web page at /ui
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]  # FastAPI's documented override
    return app


def _mount_gallery(app: FastAPI, settings: Settings, engine: Engine) -> None:
    """Galleries: the Tencent dialect (POST /) and /v1/groups, over the store in ``data_dir``.

    The store opens in the lifespan (so creating an app touches no disk) and closes on shutdown;
    until it is open, or if it fails to, gallery routes answer 503 and /readyz says why.
    """
    from lookalike.api import duplicates, galleries, tencent

    app.include_router(galleries.router, dependencies=[Depends(require_api_key)])
    app.include_router(duplicates.router, dependencies=[Depends(require_api_key)])
    app.include_router(tencent.router)
    app.state.gallery = None
    app.state.gallery_error = None

    async def open_gallery(app: FastAPI) -> None:
        from lookalike.gallery import GalleryService
        from lookalike.storage import open_store

        try:
            store = await asyncio.to_thread(open_store, settings)
        except Exception as exc:  # a broken data dir must not stop the similarity API
            app.state.gallery_error = f"the gallery store did not open: {exc}"
            app.state.startup_error = app.state.startup_error or app.state.gallery_error
            log.exception("gallery store not opened")
            return
        app.state.gallery = GalleryService(store, engine)

    async def close_gallery(app: FastAPI) -> None:
        gallery, app.state.gallery = app.state.gallery, None
        if gallery is not None:
            await asyncio.to_thread(gallery.close)

    app.state.startup_hooks.append(open_gallery)
    app.state.shutdown_hooks.append(close_gallery)
