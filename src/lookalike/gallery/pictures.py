"""Per-picture work done once at ingest: refuse flat images, make the stored thumbnail."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from lookalike.errors import PictureSolidColorError
from lookalike.gallery.models import SOLID_COLOUR_STD, THUMBNAIL_MAX_BYTES, THUMBNAIL_SIDE


def check_not_solid(pixels: np.ndarray, what: str = "the image") -> None:
    """Raises PictureSolidColorError when ``pixels`` (uint8 HxWx3, model input) are one flat colour.

    Checked on what the model sees (after the ImageRect crop and the resize), so a crop of a
    blank wall is refused even when the full photo is not.
    """
    if float(pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max()) < SOLID_COLOUR_STD:
        raise PictureSolidColorError(f"{what} is a single solid colour; there is nothing to search for")


def thumbnail(image: Image.Image, *, side: int = THUMBNAIL_SIDE, max_bytes: int = THUMBNAIL_MAX_BYTES) -> bytes:
    """A JPEG whose longest side is at most ``side`` and whose size is at most ``max_bytes``."""
    small = image.convert("RGB")
    if max(small.size) > side:
        small = small.copy()
        small.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    data = b""
    for quality in (80, 65, 50, 35, 20):
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=quality, optimize=True)
        data = buffer.getvalue()
        if len(data) <= max_bytes:
            return data
    # Pathological noise: shrink until it fits.
    while len(data) > max_bytes and max(small.size) > 16:
        small = small.resize((max(1, small.width // 2), max(1, small.height // 2)), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=20)
        data = buffer.getvalue()
    return data
