"""Where image bytes come from: base64 text, http(s) and s3 URLs, local files, in-memory images."""

from __future__ import annotations

import binascii
import io
import re
from pathlib import Path

import pybase64
from PIL import Image

from lookalike.config import Settings
from lookalike.errors import ImageDecodeFailed, ImageEmpty, ImageSizeExceed, UrlIllegal

ImageLike = str | bytes | bytearray | memoryview | Path | Image.Image
"""What the Python API accepts: a path, raw bytes, or a PIL image."""

_DATA_URL = re.compile(r"^data:[\w.+-]*/[\w.+-]*(?:;[\w=.+-]+)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def decode_base64(text: str, *, max_bytes: int) -> bytes:
    """Plain or ``data:`` URL base64 (standard or URL-safe alphabet) -> bytes."""
    if not isinstance(text, str):
        raise ImageDecodeFailed("base64 image must be a string")
    text = _DATA_URL.sub("", text.strip(), count=1)
    if not text:
        raise ImageEmpty("the base64 image is empty")
    # 4 base64 characters carry 3 bytes: refuse oversize payloads before decoding them.
    if len(text) * 3 // 4 > max_bytes + 3 and len(_WHITESPACE.sub("", text)) * 3 // 4 > max_bytes + 3:
        raise ImageSizeExceed(f"the image is larger than {max_bytes} bytes")
    if _WHITESPACE.search(text):
        text = _WHITESPACE.sub("", text)
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        data = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeFailed(f"the image is not valid base64: {exc}") from None
    if not data:
        raise ImageEmpty("the base64 image is empty")
    return data


def fetch_url(url: str, settings: Settings) -> bytes:
    """Bytes behind an http(s) or s3 URL, with the guards in :mod:`lookalike.images.fetch`."""
    if not isinstance(url, str) or not url.strip():
        raise UrlIllegal("the URL is empty")
    url = url.strip()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in ("http", "https"):
        from lookalike.images.fetch import fetch_http

        return fetch_http(url, settings)
    if scheme == "s3":
        from lookalike.images.s3 import fetch_s3

        return fetch_s3(url, settings)
    raise UrlIllegal(f"URL scheme {scheme or '(none)'!r} is not allowed; use http, https or s3")


def read_local(ref: ImageLike, settings: Settings) -> bytes | Image.Image:
    """For the CLI and Python API only: a path, a URL, raw bytes, or a PIL image as-is."""
    if isinstance(ref, Image.Image):
        return ref
    if isinstance(ref, (bytes, bytearray, memoryview)):
        return bytes(ref)
    if isinstance(ref, str) and re.match(r"^(https?|s3)://", ref, re.IGNORECASE):
        return fetch_url(ref, settings)
    path = Path(ref)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageDecodeFailed(f"cannot read {path}: {exc.strerror or exc}") from None
    if size > settings.max_image_bytes:
        raise ImageSizeExceed(f"{path} is {size} bytes; the limit is {settings.max_image_bytes}")
    return path.read_bytes()


def image_to_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
