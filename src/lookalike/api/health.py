"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lookalike.api.common import EngineDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process answers")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", summary="The default model is loaded and the store is open")
async def readyz(request: Request, engine: EngineDep):
    state = request.app.state  # startup_error: set by the app's start-up, read only here
    ready = engine.default_model in engine.loaded_models() and getattr(state, "startup_error", None) is None
    body = {"status": "ready" if ready else "loading", "models": engine.loaded_models()}
    if getattr(state, "startup_error", None):
        body["error"] = state.startup_error
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def metrics(request: Request, engine: EngineDep):
    metrics = request.app.state.metrics
    metrics.models_loaded.set(len(engine.loaded_models()))
    metrics.model_running.set(engine.gate.running)
    metrics.model_waiting.set(engine.gate.waiting)
    metrics.model_shed.set(engine.gate.shed)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
