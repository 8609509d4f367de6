"""The web page at /ui: one HTML file, one JS module and one CSS file from the package.

No CDN, no fonts, no build step: an air-gapped browser renders it. The files are read once,
served with a strong ETag (304 on a match) and gzip when the browser accepts it; the HTML names
the assets with a content hash (``?v=``) so they can be cached for good.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

router = APIRouter(include_in_schema=False)

_TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str


def _asset(body: bytes, media_type: str) -> Asset:
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(body, gzip.compress(body, 9, mtime=0), etag, media_type)


@cache
def assets() -> dict[str, Asset]:
    """``index.html`` and the static files, the HTML's asset links pinned to their hashes."""
    root = resources.files("lookalike.web")
    out = {name: _asset((root / "static" / name).read_bytes(), media) for name, media in _TYPES.items()}
    html = (root / "index.html").read_text("utf-8")
    for name, asset in out.items():
        html = html.replace(f"/ui/static/{name}", f"/ui/static/{name}?v={asset.etag.strip(chr(34))[:12]}")
    out["index.html"] = _asset(html.encode(), "text/html; charset=utf-8")
    return out


def _serve(request: Request, asset: Asset, cache_control: str) -> Response:
    headers = {"ETag": asset.etag, "Cache-Control": cache_control, "Vary": "Accept-Encoding"}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = asset.body
    if "gzip" in request.headers.get("accept-encoding", "") and len(asset.gzipped) < len(body):
        body, headers["Content-Encoding"] = asset.gzipped, "gzip"
    return Response(body, media_type=asset.media_type, headers=headers)


@router.api_route("/ui", methods=["GET", "HEAD"])
async def page(request: Request) -> Response:
    headers = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
    response = _serve(request, assets()["index.html"], "no-cache")
    response.headers.update(headers)
    return response


@router.get("/ui/")
async def page_slash() -> Response:
    return RedirectResponse("/ui", status_code=308)


@router.api_route("/ui/static/{name}", methods=["GET", "HEAD"])
async def static(request: Request, name: str) -> Response:
    asset = assets().get(name) if name in _TYPES else None
    if asset is None:
        return Response("not found", status_code=404, media_type="text/plain")
    # Linked with ?v=<hash> by the page: a new version has a new URL.
    return _serve(
        request, asset, "public, max-age=31536000, immutable" if request.query_params.get("v") else "no-cache"
    )
