"""Plumbing every dialect shares: reading bodies safely, resolving image fields, and the
FastAPI dependencies (``EngineDep``, ``SettingsDep``, ``RequestId``, :func:`json_body`) that
routes declare instead of reaching into ``request.app.state`` themselves.

Bodies are parsed by a dependency rather than by FastAPI's own body parameters: the dialects
answer a malformed body with their coded InvalidParameter (400, one wording on every wire), not
FastAPI's 422, and several routes take JSON or multipart on the same path.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from lookalike.api.schemas import parse
from lookalike.config import Settings
from lookalike.engine import Engine
from lookalike.errors import ImageSizeExceed, InvalidParameter, LookalikeError
from lookalike.images import decode_base64, fetch_url


class BodyLimit:
    """ASGI middleware: no request body, however it is sent (chunked, multipart spooled to disk),
    grows past ``limit`` bytes; the reader gets ImageSizeExceed, which every dialect maps. A
    declared Content-Length past the limit is refused at the first read, before any byte is read."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        seen = 0

        async def bounded_receive():
            nonlocal seen
            if declared.isdigit() and int(declared) > self.limit:
                raise ImageSizeExceed(f"the request body is {declared.decode()} bytes; the limit is {self.limit}")
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise ImageSizeExceed(f"the request body exceeds {self.limit} bytes")
            return message

        return await self.app(scope, bounded_receive, send)


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "")


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


async def read_body(request: Request) -> bytes:
    """The raw body (bounded by :class:`BodyLimit`), read once and kept: a signature check and
    the route read the same bytes."""
    cached = getattr(request.state, "body", None)
    if cached is None:
        cached = request.state.body = b"".join([chunk async for chunk in request.stream()])
    return cached


async def read_json(request: Request, expected: str = "JSON") -> Any:
    """The body as JSON, any shape; InvalidParameter (naming ``expected``) when it is not."""
    body = await read_body(request)
    if not body.strip():
        raise InvalidParameter(f"the request body is empty; send {expected}")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameter(f"the request body is not valid JSON: {exc}") from None


async def read_json_object(request: Request) -> dict[str, Any]:
    data = await read_json(request, "a JSON object")
    if not isinstance(data, dict):
        raise InvalidParameter("the request body must be a JSON object")
    return data


def json_body[Body: BaseModel](model: type[Body]) -> Callable[[Request], Awaitable[Body]]:
    """A dependency: the JSON body validated as ``model`` (InvalidParameter, never 422).

    Use as ``body: Annotated[Model, Depends(json_body(Model))]``; the operation's documented
    body comes from the route's ``openapi_extra``.
    """

    async def dependency(request: Request) -> Body:
        return parse(model, await read_json_object(request))

    return dependency


EngineDep = Annotated[Engine, Depends(engine_of)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
RequestId = Annotated[str, Depends(request_id)]


def load_image_field(settings: Settings, *, b64: Any = None, url: Any = None, name: str = "image") -> bytes:
    """Exactly one of base64 text or URL -> bytes. Blocking (may fetch): call in a thread."""
    if b64 is not None and url is not None:
        raise InvalidParameter(f"{name}: give either a URL or base64 data, not both")
    if b64 is None and url is None:
        raise InvalidParameter(f"{name}: missing; give a URL or base64 data")
    if url is not None:
        if not isinstance(url, str):
            raise InvalidParameter(f"{name}: the URL must be a string")
        return fetch_url(url, settings)
    if not isinstance(b64, str):
        raise InvalidParameter(f"{name}: base64 data must be a string")
    return decode_base64(b64, max_bytes=settings.max_image_bytes)


async def in_thread(fn, *args, **kwargs):
    """CPU and network work leaves the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


def error_payload(exc: LookalikeError) -> dict[str, str]:
    return {"code": exc.code, "message": exc.message}
