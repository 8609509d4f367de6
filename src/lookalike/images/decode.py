"""Safe decoding: bytes -> validated, oriented RGB pixels at the model's input size.

Everything is checked from the header before a pixel is decoded, and JPEGs are decoded
DCT-scaled (1/2, 1/4, 1/8) when the image is much larger than what the model needs.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from lookalike.errors import (
    ImageDecodeFailed,
    ImageEmpty,
    ImageNotSupported,
    ImageResolutionExceed,
    ImageSizeExceed,
    InvalidParameterValue,
)

ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP")

# Signatures of formats we recognise but refuse, so the caller learns "not supported"
# rather than "corrupt".
_REFUSED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
)


MAX_JPEG_SCANS = 100
"""Scans a JPEG may have. Encoders write 1-3 (baseline) or about 10 (progressive); each scan
costs a pass over every coefficient of the image, so a small file of thousands of empty scans
would keep a core busy for minutes (a 130 KB one of 1,000 scans: 12 s at 4096x4096)."""

# A marker inside entropy-coded data: 0xFF not followed by a stuffed 0x00, a restart marker or fill.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


@dataclass(frozen=True)
class Rect:
    """A crop box in the original image's pixels (Tencent's ImageRect)."""

    x: int
    y: int
    width: int
    height: int


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
"""File names the CLI picks up from a folder (the formats :func:`sniff_format` accepts)."""


def sniff_format(data: bytes) -> str:
    """The format named by the magic bytes; raises for anything we do not accept."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"BM") and len(data) >= 26:
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _REFUSED_MAGIC:
        if data.startswith(magic):
            raise ImageNotSupported(f"{name} images are not supported; send jpg, png, bmp or webp")
    if data[4:8] == b"ftyp":
        raise ImageNotSupported("HEIF/AVIF/MP4 files are not supported; send jpg, png, bmp or webp")
    raise ImageDecodeFailed("the data is not an image (unrecognised file signature)")


def jpeg_scan_count(data: bytes, limit: int = MAX_JPEG_SCANS) -> int:
    """The number of scans (SOS segments) of a JPEG's first image, counted up to ``limit + 1``.

    Walks the segments by their lengths and jumps over entropy-coded data to its next marker,
    so APP/COM payloads (an EXIF thumbnail, another image) are never mistaken for scans.
    Stops at EOI or where the structure breaks (the decoder reports the damage).
    """
    pos, scans, end = 2, 0, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker != 0xDA:
            pos += 2 + length
            continue
        scans += 1
        if scans > limit:
            break
        found = _JPEG_MARKER.search(data, pos + 2 + length)
        if found is None:
            break
        pos = found.start()
    return scans


def open_image(data: bytes, *, max_bytes: int, max_side: int, max_pixels: int) -> Image.Image:
    """Opens lazily and validates format and dimensions from the header alone."""
    if not data:
        raise ImageEmpty("the image is empty")
    if len(data) > max_bytes:
        raise ImageSizeExceed(f"the image is {len(data)} bytes; the limit is {max_bytes}")
    fmt = sniff_format(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageResolutionExceed(f"the image has too many pixels: {exc}") from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        why = "it is damaged" if isinstance(exc, Image.UnidentifiedImageError) else str(exc)
        raise ImageDecodeFailed(f"cannot read the {fmt} header: {why}") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeFailed("the image has no pixels")
    if max(width, height) > max_side:
        raise ImageResolutionExceed(f"the image is {width}x{height}; the longest side may be at most {max_side}")
    if width * height > max_pixels:
        raise ImageResolutionExceed(f"the image is {width}x{height}; at most {max_pixels} pixels are allowed")
    if fmt == "JPEG" and jpeg_scan_count(data) > MAX_JPEG_SCANS:
        raise ImageDecodeFailed(
            f"the JPEG has more than {MAX_JPEG_SCANS} scans; it is corrupt or built to exhaust the decoder"
        )
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.uint32)
        peak = 65535 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255
        gray = (array * 255 // max(peak, 1)).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode == "F":
        array = np.clip(np.asarray(image, dtype=np.float32), 0, 255).astype(np.uint8)
        return Image.fromarray(array, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas read as white, as every viewer shows them, not as their hidden colour.
        # Blended onto an RGB canvas through the alpha band: half the memory of compositing two
        # RGBA copies (a 79 KB 4096x4096 RGBA PNG peaked at 320 MB that way).
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba.convert("RGB"), (0, 0), rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _clip_rect(rect: Rect, width: int, height: int) -> tuple[int, int, int, int]:
    if rect.width <= 0 or rect.height <= 0 or rect.x < 0 or rect.y < 0:
        raise InvalidParameterValue(
            "ImageRect needs X, Y >= 0 and Width, Height > 0", code="InvalidParameterValue.ImageRectInvalid"
        )
    left, top = rect.x, rect.y
    right, bottom = min(rect.x + rect.width, width), min(rect.y + rect.height, height)
    if right - left < 8 or bottom - top < 8:
        raise InvalidParameterValue(
            f"ImageRect {rect.x},{rect.y},{rect.width},{rect.height} lies (almost) outside the {width}x{height} image",
            code="InvalidParameterValue.ImageRectInvalid",
        )
    return left, top, right, bottom


def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    max_side: int,
    max_pixels: int,
    rect: Rect | None = None,
    min_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Validated RGB image, EXIF-oriented and cropped to ``rect``.

    ``min_size`` (width, height) lets a JPEG be decoded at a reduced DCT scale as long as the
    result (after the crop) is still at least that large.
    """
    image = open_image(data, max_bytes=max_bytes, max_side=max_side, max_pixels=max_pixels)
    full_w, full_h = image.size
    try:
        if min_size is not None and image.format == "JPEG":
            need_w, need_h = min_size
            if rect is not None:
                # The crop must still hold min_size pixels after scaling.
                need_w = need_w * full_w // max(1, min(rect.width, full_w))
                need_h = need_h * full_h // max(1, min(rect.height, full_h))
            # EXIF may swap the axes; ask for the larger need on both.
            need = max(need_w, need_h)
            image.draft("RGB", (need, need))
        image.load()
    except Exception as exc:
        raise ImageDecodeFailed(f"the {image.format} data is corrupt or truncated: {exc}") from None
    scale_x, scale_y = image.size[0] / full_w, image.size[1] / full_h
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:
        pass  # a broken EXIF block is no reason to refuse the pixels
    image = _to_rgb(image)
    if rect is not None:
        # ImageRect is in the oriented image's coordinates at full resolution.
        if image.size != (round(full_w * scale_x), round(full_h * scale_y)):
            scale_x, scale_y = scale_y, scale_x
            full_w, full_h = full_h, full_w
        left, top, right, bottom = _clip_rect(rect, full_w, full_h)
        box = (
            int(left * scale_x),
            int(top * scale_y),
            max(int(left * scale_x) + 1, round(right * scale_x)),
            max(int(top * scale_y) + 1, round(bottom * scale_y)),
        )
        image = image.crop(box)
    return image


def pixel_digest(data: bytes, *, max_bytes: int, max_side: int, max_pixels: int) -> bytes:
    """A digest of the image as shown (full size, EXIF-oriented, RGB): equal for files that
    differ in bytes (format, metadata, compression) but not in a single pixel."""
    image = decode_image(data, max_bytes=max_bytes, max_side=max_side, max_pixels=max_pixels)  # no draft: full size
    digest = hashlib.blake2b(digest_size=16)
    digest.update(b"%dx%d:" % image.size)
    digest.update(image.tobytes())
    return digest.digest()
