"""A deterministic corpus of hostile image files, built in memory (no binary file is committed).

``corpus()`` returns a few hundred :class:`Hostile` files, each with a unique ``name`` and a
``category``: valid controls, truncations at many offsets, bit flips, broken headers,
decompression bombs, huge / zero / negative dimensions, tiny files, wrong magic and refused
formats, polyglots, odd modes, EXIF and ICC garbage, odd file names, and (JSON-only) base64
text that is not base64. Each carries what the server must do with it:

* ``valid`` True: a readable image in a supported format, which must be accepted;
  False: it must be refused with one of ``codes`` (the README's documented image codes);
  None: either outcome is fine, but a refusal must still carry one of ``codes``.
* ``flat``: one colour at the model's input size, so galleries may refuse it
  (``InvalidParameter.PictureSolidColorError``) even though it is valid.

Used by tests/test_hostile_files.py and bench/fuzz.py.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
from PIL import Image

from support import synthetic_image

EMPTY, DECODE, UNSUPPORTED, SIZE, RESOLUTION = (
    "ImageEmpty", "ImageDecodeFailed", "ImageNotSupported", "ImageSizeExceed", "ImageResolutionExceed",
)
IMAGE_CODES = frozenset({EMPTY, DECODE, UNSUPPORTED, SIZE, RESOLUTION})
"""The README's image error codes (native spelling)."""
NOT_AN_IMAGE = frozenset({DECODE, UNSUPPORTED})
MAX_BYTES = 5 * 1024 * 1024  # LOOKALIKE_MAX_IMAGE_BYTES' default
MAX_SIDE = 4096


@dataclass(frozen=True)
class Hostile:
    name: str
    category: str
    data: bytes
    valid: bool | None
    codes: frozenset[str] = IMAGE_CODES
    text: Any = None
    """JSON-only items: the value sent in the base64 field as-is (``data`` is then unused)."""
    filename: str = ""
    flat: bool = False

    @property
    def json_only(self) -> bool:
        return self.text is not None

    def b64(self) -> Any:
        """What a JSON route's base64 field carries."""
        return self.text if self.text is not None else base64.b64encode(self.data).decode()

    @property
    def upload_name(self) -> str:
        return self.filename or f"{self.name}.bin"


# --------------------------------------------------------------------------- building blocks


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    # Fresh copies: a save leaves encoder settings on the image that the next format trips on.
    if "append_images" in options:
        options["append_images"] = [frame.copy() for frame in options["append_images"]]
    buffer = io.BytesIO()
    image.copy().save(buffer, format=fmt, **options)
    return buffer.getvalue()


@cache
def _photo(seed: int = 7, size: tuple[int, int] = (160, 120)) -> Image.Image:
    return synthetic_image(seed, size)


def _chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _ihdr(width: int, height: int, depth: int = 8, colour: int = 2, interlace: int = 0) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def _png(width: int, height: int, raw: bytes, *, depth: int = 8, colour: int = 2, extra: bytes = b"",
         level: int = 9, idat: bytes | None = None) -> bytes:
    """A PNG from raw scanlines (each row starts with its filter byte)."""
    body = zlib.compress(raw, level) if idat is None else idat
    return PNG_SIG + _ihdr(width, height, depth, colour) + extra + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def _rows(array: np.ndarray) -> bytes:
    """Scanlines with filter type 0 for a (h, w, c) or (h, w) big-endian array."""
    height = array.shape[0]
    flat = array.reshape(height, -1)
    return b"".join(b"\x00" + flat[y].tobytes() for y in range(height))


def _png_patch_ihdr(data: bytes, *, fix_crc: bool = True, **fields: int) -> bytes:
    """Rewrites IHDR fields (width, height, depth, colour, compression, filter, interlace)."""
    names = ("width", "height", "depth", "colour", "compression", "filter", "interlace")
    values = dict(zip(names, struct.unpack(">IIBBBBB", data[16:29]), strict=True))
    values.update(fields)
    body = struct.pack(">IIBBBBB", *(values[n] & (0xFFFFFFFF if i < 2 else 0xFF) for i, n in enumerate(names)))
    crc = zlib.crc32(b"IHDR" + body) & 0xFFFFFFFF if fix_crc else struct.unpack(">I", data[29:33])[0]
    return data[:16] + body + struct.pack(">I", crc) + data[33:]


def _png_insert(data: bytes, chunk: bytes) -> bytes:
    """Inserts a chunk right after IHDR."""
    return data[:33] + chunk + data[33:]


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(offset of 0xFF, marker, segment length) of each header segment up to and including SOS."""
    out, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        out.append((pos, marker, length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return out


def _sof(data: bytes) -> int:
    for pos, marker, _ in _jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return pos
    raise ValueError("no SOF")


def _marker_pos(data: bytes, marker: int) -> int:
    for pos, m, _ in _jpeg_segments(data):
        if m == marker:
            return pos
    raise ValueError(f"no marker {marker:#x}")


def _jpeg_dims(data: bytes, width: int, height: int) -> bytes:
    pos = _sof(data)
    return data[: pos + 5] + struct.pack(">HH", height, width) + data[pos + 9 :]


def _jpeg_insert(data: bytes, segment: bytes) -> bytes:
    """Inserts a whole segment (marker included) right after SOI."""
    return data[:2] + segment + data[2:]


def _app(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _jpeg_drop(data: bytes, marker: int) -> bytes:
    out, last = [], 0
    for pos, m, length in _jpeg_segments(data):
        if m == marker:
            out.append(data[last:pos])
            last = pos + 2 + length
    return b"".join(out) + data[last:]


def _bmp_patch(data: bytes, **fields: int) -> bytes:
    """Rewrites BITMAPINFOHEADER fields (signed where the format says so)."""
    layout = {"size": (2, "<I"), "offset": (10, "<I"), "header": (14, "<I"), "width": (18, "<i"),
              "height": (22, "<i"), "planes": (26, "<H"), "bpp": (28, "<H"), "compression": (30, "<I"),
              "image_size": (34, "<I"), "colours": (46, "<I")}
    out = bytearray(data)
    for name, value in fields.items():
        offset, fmt = layout[name]
        out[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(out)


def _bmp_header(width: int, height: int, bpp: int = 24, *, compression: int = 0, colours: int = 0,
                pixels: bytes = b"") -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, compression, len(pixels), 2835, 2835, colours, 0)
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pixels


def _riff(form: bytes, chunks: bytes, size: int | None = None) -> bytes:
    return b"RIFF" + struct.pack("<I", len(chunks) + 4 if size is None else size) + form + chunks


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def _webp_image_chunk(data: bytes) -> bytes:
    """The VP8/VP8L chunk of a simple-format WebP."""
    return data[12:]


def _vp8x(flags: int, width: int, height: int) -> bytes:
    return _riff_chunk(
        b"VP8X", bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    )


def _tiff_ifd(entries: list[tuple[int, int, int, bytes]], *, next_ifd: int = 0, offset: int = 8) -> bytes:
    """Little-endian TIFF header + one IFD: entries are (tag, type, count, 4-byte value)."""
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHI", t, ty, c) + v for t, ty, c, v in entries)
    return b"II*\x00" + struct.pack("<I", offset) + b"\x00" * (offset - 8) + ifd + struct.pack("<I", next_ifd)


def _exif_jpeg(base: bytes, exif_payload: bytes) -> bytes:
    return _jpeg_insert(base, _app(0xE1, b"Exif\x00\x00" + exif_payload))


def _flip(data: bytes, rng: random.Random, lo: int, hi: int, count: int) -> bytes:
    out = bytearray(data)
    for _ in range(count):
        pos = rng.randrange(lo, max(lo + 1, min(hi, len(out))))
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


# --------------------------------------------------------------------------- the corpus


class _Corpus:
    def __init__(self) -> None:
        self.items: list[Hostile] = []
        self.category = ""

    def add(self, name: str, data: bytes, valid: bool | None, codes: frozenset[str] | set[str] = IMAGE_CODES,
            **kwargs: Any) -> None:
        self.items.append(Hostile(f"{self.category}-{name}", self.category, data, valid, frozenset(codes), **kwargs))

    def text(self, name: str, value: Any, valid: bool | None, codes: frozenset[str] | set[str] = IMAGE_CODES) -> None:
        self.items.append(Hostile(f"{self.category}-{name}", self.category, b"", valid, frozenset(codes), text=value))


def _build() -> list[Hostile]:
    c = _Corpus()
    photo = _photo()
    rgb = np.asarray(photo)
    jpeg = _save(photo, "JPEG", quality=85)
    progressive = _save(photo, "JPEG", quality=85, progressive=True)
    png = _save(photo, "PNG")
    bmp = _save(photo, "BMP")
    webp = _save(photo, "WEBP", quality=80)
    webp_lossless = _save(photo, "WEBP", lossless=True)
    gray = photo.convert("L")

    # ---- valid controls: must be accepted ----------------------------------------------
    c.category = "valid"
    c.add("jpeg", jpeg, True)
    c.add("jpeg-progressive", progressive, True)
    c.add("jpeg-444", _save(photo, "JPEG", quality=90, subsampling=0), True)
    c.add("jpeg-422", _save(photo, "JPEG", quality=90, subsampling=1), True)
    c.add("jpeg-q1", _save(photo, "JPEG", quality=1), True)
    c.add("jpeg-restart", _save(photo, "JPEG", quality=85, restart_marker_blocks=1), True)
    c.add("png", png, True)
    c.add("png-interlaced", _png_adam7(rgb), True)
    c.add("bmp", bmp, True)
    c.add("webp", webp, True)
    c.add("webp-lossless", webp_lossless, True)
    c.add("png-1x1", _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), True, flat=True)
    c.add("jpeg-8x8", _save(photo.resize((8, 8)), "JPEG"), True)
    ramp = np.tile(np.arange(MAX_SIDE, dtype=np.uint16) % 256, (1, 1)).astype(np.uint8)
    c.add("png-4096x1", _save(Image.fromarray(ramp, "L"), "PNG"), True)
    c.add("png-1x4096", _save(Image.fromarray(ramp.T.copy(), "L"), "PNG"), True)
    c.add("jpeg-4096x4096-at-limit", _save(photo.resize((MAX_SIDE, MAX_SIDE)), "JPEG", quality=30), True)
    c.add(
        "png-4096x4096-zero-zlib",
        _png(MAX_SIDE, MAX_SIDE, b"\x00" * (MAX_SIDE * (MAX_SIDE + 1)), colour=0),
        True,
        flat=True,
    )
    c.add("jpeg-trailing-garbage", jpeg + b"\x00garbage after EOI" * 50, True)
    c.add("png-trailing-garbage", png + b"garbage after IEND" * 50, True)
    c.add("jpeg-comment", _jpeg_insert(jpeg, _app(0xFE, b"a comment " * 100)), True)
    c.add("jpeg-unknown-app", _jpeg_insert(jpeg, _app(0xEA, bytes(range(256)) * 40)), True)
    c.add("png-text-chunks", _png_insert(png, b"".join(_chunk(b"tEXt", b"k%d\x00value" % i) for i in range(200))), True)
    c.add("png-many-idat", _png_many_idat(rgb), True)
    c.add("jpeg-many-com", _jpeg_insert(jpeg, _app(0xFE, b"x") * 20000), True)

    # ---- modes and bit depths: valid, must become RGB --------------------------------
    c.category = "mode"
    c.add("jpeg-gray", _save(gray, "JPEG"), True)
    c.add("jpeg-cmyk", _save(photo.convert("CMYK"), "JPEG"), True)
    c.add("png-L", _save(gray, "PNG"), True)
    c.add("png-P", _save(photo.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), True)
    c.add("png-P-trns", _save(photo.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=3), True)
    c.add("png-RGBA", _save(photo.convert("RGBA"), "PNG"), True)
    c.add("png-RGBA-transparent", _save(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "PNG"), True, flat=True)
    c.add("png-LA", _save(gray.convert("LA"), "PNG"), True)
    c.add("png-1bit", _save(gray.convert("1"), "PNG"), True)
    c.add("png-I16", _save(Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257), "PNG"), True)
    c.add("png-gray2bit", _png_packed_gray(np.asarray(gray) >> 6, 2), True)
    c.add("png-gray4bit", _png_packed_gray(np.asarray(gray) >> 4, 4), True)
    c.add("png-rgb48", _png(160, 120, _rows(rgb.astype(">u2") * 257), depth=16, colour=2), True)
    rgba64 = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]).astype(">u2") * 257
    c.add("png-rgba64", _png(160, 120, _rows(rgba64), depth=16, colour=6), True)
    c.add("png-LA16", _png(160, 120, _rows(np.dstack([np.asarray(gray), np.asarray(gray)]).astype(">u2") * 257),
                            depth=16, colour=4), True)
    c.add("bmp-P8", _save(photo.convert("P", palette=Image.Palette.ADAPTIVE), "BMP"), True)
    c.add("bmp-1bit", _save(gray.convert("1"), "BMP"), True)
    c.add("bmp-L", _save(gray, "BMP"), True)
    c.add("bmp-RGBA32", _save(photo.convert("RGBA"), "BMP"), True)
    c.add("bmp-topdown", _bmp_topdown(rgb), True)
    c.add("bmp-rle8", _bmp_rle8(np.asarray(photo.convert("P", palette=Image.Palette.ADAPTIVE))), True)
    c.add("webp-alpha", _save(photo.convert("RGBA"), "WEBP", quality=80), True)

    # ---- multi-frame ----------------------------------------------------------------
    c.category = "frames"
    frames = [_photo(s) for s in (7, 8, 9)]
    c.add("apng", _save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=50), True)
    c.add("webp-animated", _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50), True)
    c.add("mpo", _save(frames[0], "MPO", save_all=True, append_images=frames[1:]), True)
    c.add(
        "gif-animated",
        _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50),
        False,
        {UNSUPPORTED},
    )
    c.add("tiff-multipage", _save(frames[0], "TIFF", save_all=True, append_images=frames[1:]), False, {UNSUPPORTED})
    c.add("webp-animated-canvas-4096", _webp_animated_canvas(webp, MAX_SIDE, MAX_SIDE), True, flat=True)
    c.add("webp-animated-canvas-16383", _webp_animated_canvas(webp, 16383, 16383), False, {RESOLUTION, DECODE})
    c.add("webp-animated-canvas-max", _webp_animated_canvas(webp, 1 << 24, 1 << 24), False, {RESOLUTION, DECODE})
    c.add("webp-animated-frame-outside", _webp_animated_canvas(webp, 100, 100), False, {DECODE})

    # ---- truncated at many offsets -----------------------------------------------------
    c.category = "truncated"
    for label, data in (("jpeg", jpeg), ("jpeg-progressive", progressive), ("png", png), ("bmp", bmp), ("webp", webp)):
        n = len(data)
        cuts = sorted({1, 2, 3, 4, 8, 12, 16, 20, 26, 33, 50, 64, 100, 200, n // 4, n // 2, 3 * n // 4, n - 100})
        for cut in cuts:
            c.add(f"{label}-at-{cut}", data[:cut], False, {DECODE, EMPTY})
        for cut in (n - 2, n - 1):
            c.add(f"{label}-at-{cut}", data[:cut], None)  # only the trailer lost: may still be whole

    # ---- bit flips in headers and bodies ----------------------------------------------
    c.category = "bitflip"
    rng = random.Random(20240517)
    for label, data, header in (("jpeg", jpeg, 620), ("png", png, 64), ("bmp", bmp, 54), ("webp", webp, 40)):
        for i in range(5):
            c.add(f"{label}-header-{i}", _flip(data, rng, 0, header, 1 + i % 3), None)
        for i in range(4):
            c.add(f"{label}-body-{i}", _flip(data, rng, header, len(data), 1 + 8 * i), None)
        c.add(f"{label}-body-zeroed", data[:header] + b"\x00" * (len(data) - header), None)
        c.add(f"{label}-body-random", data[:header] + rng.randbytes(len(data) - header), None)

    # ---- targeted header corruption ----------------------------------------------------
    c.category = "header"
    c.add("png-ihdr-bad-crc", _png_patch_ihdr(png, fix_crc=False, width=161), False, {DECODE})
    c.add("png-depth-7", _png_patch_ihdr(png, depth=7), False, {DECODE})
    c.add("png-colour-5", _png_patch_ihdr(png, colour=5), False, {DECODE})
    c.add("png-colour-255", _png_patch_ihdr(png, colour=255), False, {DECODE})
    c.add("png-compression-1", _png_patch_ihdr(png, compression=1), None)
    c.add("png-interlace-2", _png_patch_ihdr(png, interlace=2), None)
    c.add("png-palette-missing", _png(160, 120, _rows(np.asarray(photo.convert("P")))[:], colour=3), None)
    c.add("png-no-ihdr", PNG_SIG + png[33:], False, {DECODE})
    c.add("png-no-idat", PNG_SIG + png[8:33] + _chunk(b"IEND", b""), False, {DECODE})
    c.add("png-idat-not-zlib", _png(160, 120, b"", idat=b"this is not zlib data" * 20), False, {DECODE})
    c.add("png-idat-short", _png(160, 120, _rows(rgb)[:1000]), False, {DECODE})
    # IDAT's length past the end of the file: the zlib stream inside is still whole.
    c.add("png-chunk-length-huge", png[:33] + struct.pack(">I", 0x7FFFFFFF) + png[37:], None)
    c.add("png-chunk-length-max", png[:33] + b"\xff\xff\xff\xff" + png[37:], None)
    c.add("jpeg-sof-0-components", _jpeg_patch_sof(jpeg, components=0), False, {DECODE})
    c.add("jpeg-sof-255-components", _jpeg_patch_sof(jpeg, components=255), False, {DECODE})
    c.add("jpeg-sof-precision-16", _jpeg_patch_sof(jpeg, precision=16), False, {DECODE})
    c.add("jpeg-sof-sampling-0", _jpeg_patch_sampling(jpeg, 0x00), False, {DECODE})
    c.add("jpeg-sof-sampling-ff", _jpeg_patch_sampling(jpeg, 0xFF), False, {DECODE})
    c.add("jpeg-no-dqt", _jpeg_drop(jpeg, 0xDB), False, {DECODE})
    c.add("jpeg-no-dht", _jpeg_drop(jpeg, 0xC4), None)  # libjpeg supplies the standard tables
    c.add("jpeg-no-sof", _jpeg_drop(jpeg, 0xC0), False, {DECODE})
    c.add("jpeg-no-sos", jpeg[: _marker_pos(jpeg, 0xDA)] + b"\xff\xd9", False, {DECODE})
    c.add("jpeg-soi-eoi", b"\xff\xd8\xff\xd9", False, {DECODE})
    c.add("jpeg-marker-length-0", jpeg[:4] + b"\x00\x00" + jpeg[6:], None)  # APP0's length: skippable
    c.add("jpeg-marker-length-1", jpeg[:4] + b"\x00\x01" + jpeg[6:], None)
    c.add("jpeg-marker-length-max", jpeg[:4] + b"\xff\xff" + jpeg[6:], False, {DECODE})
    c.add("jpeg-sof3-lossless-garbage", _jpeg_sof_type(jpeg, 0xC3), None)
    c.add("jpeg-sof9-arithmetic-garbage", _jpeg_sof_type(jpeg, 0xC9), None)
    c.add("jpeg-double-soi", b"\xff\xd8" + jpeg, None)
    c.add("bmp-bpp-0", _bmp_patch(bmp, bpp=0), False, {DECODE})
    c.add("bmp-bpp-7", _bmp_patch(bmp, bpp=7), False, {DECODE})
    c.add("bmp-bpp-64", _bmp_patch(bmp, bpp=64), False, {DECODE})
    c.add("bmp-header-size-0", _bmp_patch(bmp, header=0), False, {DECODE})
    c.add("bmp-header-size-13", _bmp_patch(bmp, header=13), False, {DECODE})
    c.add("bmp-header-size-huge", _bmp_patch(bmp, header=0x7FFFFFF0), False, {DECODE})
    c.add("bmp-compression-99", _bmp_patch(bmp, compression=99), False, {DECODE})
    c.add("bmp-offset-past-end", _bmp_patch(bmp, offset=0x7FFFFFF0), False, {DECODE})
    c.add("bmp-planes-0", _bmp_patch(bmp, planes=0), None)
    c.add("bmp-palette-huge", _bmp_patch(_save(photo.convert("P"), "BMP"), colours=0x7FFFFFFF), False, {DECODE})
    c.add("bmp-rle8-garbage", _bmp_header(160, 120, 8, compression=1, colours=256,
                                          pixels=b"\x00" * 1024 + rng.randbytes(4000)), None)
    c.add("bmp-rle8-endless-skips", _bmp_header(4000, 4000, 8, compression=1, colours=2,
                                                pixels=b"\x00" * 8 + b"\x00\x02\xff\xff" * 2000), None, flat=True)
    c.add("webp-riff-size-0", webp[:4] + b"\x00\x00\x00\x00" + webp[8:], None)
    c.add("webp-riff-size-huge", webp[:4] + b"\xff\xff\xff\xff" + webp[8:], None)
    c.add("webp-vp8-garbage", webp[:20] + rng.randbytes(len(webp) - 20), False, {DECODE})
    c.add("webp-vp8l-bad-signature", webp_lossless[:20] + b"\x00" + webp_lossless[21:], False, {DECODE})
    c.add("webp-vp8x-no-image", _riff(b"WEBP", _vp8x(0, 160, 120)), False, {DECODE})
    c.add("webp-unknown-chunk-only", _riff(b"WEBP", _riff_chunk(b"ABCD", b"x" * 100)), False, {DECODE})

    # ---- decompression bombs and huge dimensions ----------------------------------------
    c.category = "bomb"
    tiny_idat = zlib.compress(b"\x00" * 64)
    for w, h in ((100000, 100000), (65535, 65535), (0x7FFFFFFF, 1), (1, 0x7FFFFFFF), (5000, 5000), (4097, 1),
                 (4096, 4097), (30000, 10)):
        c.add(f"png-ihdr-{w}x{h}", _png(w, h, b"", idat=tiny_idat), False, {RESOLUTION, DECODE})
    c.add("png-4097x1-real", _save(Image.new("L", (4097, 1), 9), "PNG"), False, {RESOLUTION})
    c.add("png-4000x4000-no-data", _png(4000, 4000, b"", idat=tiny_idat), False, {DECODE})
    c.add("png-idat-zlib-bomb", _png(64, 64, b"\x00" * 50_000_000), None, flat=True)
    bomb_zlib = zlib.compress(b"\x00" * 64_000_000, 9)
    c.add("png-iccp-zlib-bomb", _png_insert(png, _chunk(b"iCCP", b"icc\x00\x00" + bomb_zlib)), None)
    c.add("png-ztxt-zlib-bomb", _png_insert(png, _chunk(b"zTXt", b"bomb\x00\x00" + bomb_zlib)), None)
    c.add("png-itxt-zlib-bomb", _png_insert(png, _chunk(b"iTXt", b"bomb\x00\x01\x00\x00\x00" + bomb_zlib)), None)
    c.add("png-text-10MB-uncompressed-budget", _png_insert(png, b"".join(
        _chunk(b"zTXt", b"k%d\x00\x00" % i + zlib.compress(b"a" * 900_000, 9)) for i in range(80))), None)
    for w, h in ((65535, 65535), (30000, 10), (4097, 4097), (10, 30000)):
        c.add(f"jpeg-sof-{w}x{h}", _jpeg_dims(jpeg, w, h), False, {RESOLUTION, DECODE})
    c.add("jpeg-sof-4096x4096-no-data", _jpeg_dims(jpeg, 4096, 4096), None)
    c.add("jpeg-progressive-4096x4096-no-data", _jpeg_dims(progressive, 4096, 4096), None)
    c.add("jpeg-progressive-scan-flood-small", _jpeg_scan_flood(progressive, 1000), False, {DECODE})
    c.add("jpeg-progressive-scan-flood-4096", scan_flood(), False, {DECODE})
    for w, h in ((100000, 100000), (0x7FFFFFFF, 1), (1, -0x7FFFFFFF), (5000, 5000)):
        c.add(f"bmp-{w}x{h}", _bmp_patch(bmp, width=w, height=h), False, {RESOLUTION, DECODE})
    c.add("bmp-4096x4096-no-data", _bmp_patch(bmp, width=4096, height=4096), False, {DECODE})
    c.add("webp-vp8l-16384x16384", _webp_vp8l_dims(webp_lossless, 16384, 16384), False, {RESOLUTION, DECODE})
    c.add("webp-vp8x-canvas-huge", _riff(b"WEBP", _vp8x(0, 1 << 24, 1 << 24) + _webp_image_chunk(webp)), False,
          {RESOLUTION, DECODE})
    c.add("over-max-bytes", jpeg + b"\x00" * (MAX_BYTES + 1 - len(jpeg)), False, {SIZE})

    # ---- zero / negative dimensions -------------------------------------------------------
    c.category = "dims"
    c.add("png-0x120", _png_patch_ihdr(png, width=0), False, {DECODE})
    c.add("png-160x0", _png_patch_ihdr(png, height=0), False, {DECODE})
    c.add("png-0x0", _png_patch_ihdr(png, width=0, height=0), False, {DECODE})
    c.add("png-negative-width", _png_patch_ihdr(png, width=0x80000000), False, {DECODE, RESOLUTION})
    c.add("png-negative-height", _png_patch_ihdr(png, height=0xFFFFFFFF), False, {DECODE, RESOLUTION})
    c.add("jpeg-0x0", _jpeg_dims(jpeg, 0, 0), False, {DECODE})
    c.add("jpeg-width-0", _jpeg_dims(jpeg, 0, 120), False, {DECODE})
    c.add("jpeg-height-0-dnl", _jpeg_dims(jpeg, 160, 0), False, {DECODE})
    c.add("bmp-0x0", _bmp_patch(bmp, width=0, height=0), False, {DECODE})
    c.add("bmp-negative-width", _bmp_patch(bmp, width=-160), False, {DECODE, RESOLUTION})
    c.add("bmp-height-int-min", _bmp_patch(bmp, height=-0x80000000), False, {DECODE, RESOLUTION})
    c.add("webp-vp8l-1x1", _save(Image.new("RGB", (1, 1), (1, 2, 3)), "WEBP", lossless=True), True, flat=True)

    # ---- tiny files ------------------------------------------------------------------------
    c.category = "tiny"
    c.add("zero-bytes", b"", False, {EMPTY})
    for i, byte in enumerate((b"\x00", b"\xff", b"B", b"\x89", b"R", b" ")):
        c.add(f"one-byte-{i}", byte, False, {DECODE})
    c.add("jpeg-soi", b"\xff\xd8", False, {DECODE})
    c.add("jpeg-magic", b"\xff\xd8\xff", False, {DECODE})
    c.add("png-signature", PNG_SIG, False, {DECODE})
    c.add("bmp-BM", b"BM", False, {DECODE})
    c.add("bmp-26-bytes", b"BM" + b"\x00" * 24, False, {DECODE})
    c.add("webp-riff-header", b"RIFF\x04\x00\x00\x00WEBP", False, {DECODE})
    c.add("nul-1k", b"\x00" * 1024, False, {DECODE})

    # ---- wrong magic: refused formats, not images, mislabelled ------------------------------
    c.category = "magic"
    small = _photo(11, (64, 48))
    c.add("gif", _save(small, "GIF"), False, {UNSUPPORTED})
    c.add("gif87a", b"GIF87a" + _save(small, "GIF")[6:], False, {UNSUPPORTED})
    c.add("tiff-le", _save(small, "TIFF"), False, {UNSUPPORTED})
    c.add("tiff-be", b"MM\x00*\x00\x00\x00\x08" + b"\x00" * 64, False, {UNSUPPORTED})
    c.add("bigtiff", b"II+\x00\x08\x00\x00\x00" + b"\x00" * 64, False, NOT_AN_IMAGE)
    c.add("ico", _save(small, "ICO"), False, {UNSUPPORTED})
    c.add("pdf", _save(small, "PDF"), False, {UNSUPPORTED})
    c.add(
        "psd",
        b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 48, 64, 8, 3) + b"\x00" * 64,
        False,
        {UNSUPPORTED},
    )
    c.add("jpeg2000-jp2", _save(small, "JPEG2000"), False, {UNSUPPORTED})
    c.add("jpeg2000-j2k", _save(small, "JPEG2000", no_jp2=True), False, {UNSUPPORTED})
    c.add("avif", _save(small, "AVIF"), False, {UNSUPPORTED})
    c.add("heic", struct.pack(">I", 24) + b"ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200, False, {UNSUPPORTED})
    c.add("mp4", struct.pack(">I", 20) + b"ftypisom\x00\x00\x02\x00isom" + b"\x00" * 200, False, {UNSUPPORTED})
    c.add("jpeg-xl", b"\xff\x0a" + b"\x00" * 100, False, NOT_AN_IMAGE)
    c.add("jpeg-xl-container", b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\x00" * 100, False, NOT_AN_IMAGE)
    for fmt in ("PPM", "PCX", "TGA", "SGI", "XBM", "MSP", "DDS", "QOI", "BLP", "ICNS", "IM", "SPIDER"):
        image = small.convert("1") if fmt in ("XBM", "MSP") else small.convert("F") if fmt == "SPIDER" else small
        if fmt == "BLP":
            image = small.convert("P")
        if fmt == "ICNS":
            image = small.resize((16, 16))
        c.add(fmt.lower(), _save(image, fmt), False, NOT_AN_IMAGE)
    c.add("svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999">'
                 b'<rect width="100%" height="100%" fill="red"/></svg>', False, NOT_AN_IMAGE)
    c.add("html", b"<!doctype html><html><body><script>alert(1)</script></body></html>", False, NOT_AN_IMAGE)
    c.add("json", b'{"Response": {"Error": {"Code": "InternalError"}}}', False, NOT_AN_IMAGE)
    c.add("elf", b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56 + rng.randbytes(512), False, NOT_AN_IMAGE)
    c.add("pe", b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + rng.randbytes(256), False, NOT_AN_IMAGE)
    c.add("zip-of-jpeg", _zip({"a.jpg": jpeg}), False, NOT_AN_IMAGE)
    c.add("gzip-of-jpeg", gzip.compress(jpeg, mtime=0), False, NOT_AN_IMAGE)
    c.add("shell", b"#!/bin/sh\nrm -rf /\n", False, NOT_AN_IMAGE)
    c.add("wav", _riff(b"WAVE", _riff_chunk(b"fmt ", b"\x01\x00\x01\x00" + b"\x00" * 12)), False, NOT_AN_IMAGE)
    c.add("avi-as-webp-riff", _riff(b"AVI ", _riff_chunk(b"LIST", b"x" * 64)), False, NOT_AN_IMAGE)
    c.add("os2-bitmap-array", b"BA" + bmp[2:], False, NOT_AN_IMAGE)
    c.add("utf8-bom-then-jpeg", b"\xef\xbb\xbf" + jpeg, False, NOT_AN_IMAGE)
    c.add("space-then-png", b" " + png, False, NOT_AN_IMAGE)
    c.add("jpeg-magic-png-body", b"\xff\xd8\xff" + png[3:], False, {DECODE})
    c.add("png-magic-jpeg-body", PNG_SIG + jpeg[8:], False, {DECODE})
    c.add("bmp-magic-jpeg-body", b"BM" + jpeg[2:], False, {DECODE})
    c.add("webp-riff-png-body", b"RIFF" + struct.pack("<I", len(png) + 4) + b"WEBP" + png, False, {DECODE})
    c.add("hex-text-of-jpeg", binascii.hexlify(jpeg), False, NOT_AN_IMAGE)
    c.add("base64-text-of-jpeg", base64.b64encode(jpeg), False, NOT_AN_IMAGE)
    c.add("png-named-jpg", png, True, filename="photo.jpg")
    c.add("jpeg-named-png", jpeg, True, filename="photo.png")
    c.add("webp-named-gif", webp, True, filename="anim.gif")
    c.add("gif-named-jpg", _save(small, "GIF"), False, {UNSUPPORTED}, filename="photo.jpg")

    # ---- polyglots -------------------------------------------------------------------------
    c.category = "polyglot"
    c.add(
        "gifar", _save(small, "GIF") + _zip({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\n"}), False, {UNSUPPORTED}
    )
    c.add("jpeg-plus-zip", jpeg + _zip({"evil.sh": b"#!/bin/sh\n"}), True)
    c.add("png-plus-html", png + b"<html><script>alert(document.cookie)</script></html>", True)
    c.add("png-html-in-text", _png_insert(png, _chunk(b"tEXt", b"Comment\x00<script>alert(1)</script>")), True)
    c.add(
        "jpeg-script-in-com",
        _jpeg_insert(jpeg, _app(0xFE, b"<?php system($_GET['c']); ?><script>alert(1)</script>")),
        True,
    )
    c.add(
        "jpeg-php-in-exif",
        _exif_jpeg(jpeg, _tiff_ifd([(0x010E, 2, 30, struct.pack("<I", 26))]) + b"<?php system($_GET[c]);?>\x00"),
        True,
    )
    c.add("zip-then-jpeg", _zip({"x.txt": b"hello"}) + jpeg, False, NOT_AN_IMAGE)
    c.add("pdf-with-jpeg", b"%PDF-1.4\n" + jpeg + b"\n%%EOF\n", False, {UNSUPPORTED})
    c.add("html-then-jpeg", b"<html>" + jpeg, False, NOT_AN_IMAGE)
    c.add("jpeg-then-png", jpeg + png, True)
    c.add("bmp-plus-zip", bmp + _zip({"a": b"b"}), True)
    c.add("webp-plus-trailing", webp + b"trailing junk" * 10, None)

    # ---- EXIF garbage: a broken EXIF block is no reason to refuse the pixels ---------------
    c.category = "exif"
    for value in (0, 5, 8, 9, 255, 65535):
        c.add(f"orientation-{value}", _exif_jpeg(jpeg, _tiff_ifd([(0x0112, 3, 1, struct.pack("<HH", value, 0))])), True)
    c.add("orientation-ascii", _exif_jpeg(jpeg, _tiff_ifd([(0x0112, 2, 4, b"six\x00")])), True)
    c.add("orientation-count-huge", _exif_jpeg(jpeg, _tiff_ifd([(0x0112, 3, 0x7FFFFFFF, struct.pack("<I", 8))])), True)
    c.add("orientation-type-99", _exif_jpeg(jpeg, _tiff_ifd([(0x0112, 99, 1, struct.pack("<I", 6))])), True)
    c.add("ifd-offset-past-end", _exif_jpeg(jpeg, b"II*\x00" + struct.pack("<I", 0x7FFFFFF0)), True)
    c.add("ifd-loop", _exif_jpeg(jpeg, _tiff_ifd([(0x0112, 3, 1, struct.pack("<HH", 6, 0))], next_ifd=8)), True)
    c.add("exif-ifd-points-to-ifd0", _exif_jpeg(jpeg, _tiff_ifd(
        [(0x0112, 3, 1, struct.pack("<HH", 6, 0)), (0x8769, 4, 1, struct.pack("<I", 8))])), True)
    c.add("gps-ifd-loop", _exif_jpeg(jpeg, _tiff_ifd(
        [(0x0112, 3, 1, struct.pack("<HH", 3, 0)), (0x8825, 4, 1, struct.pack("<I", 8))])), True)
    c.add("entries-65535", _exif_jpeg(jpeg, b"II*\x00\x08\x00\x00\x00\xff\xff" + b"\x00" * 64), True)
    c.add("truncated-tiff", _exif_jpeg(jpeg, b"II*\x00"), True)
    c.add("bad-byte-order", _exif_jpeg(jpeg, b"XX*\x00\x08\x00\x00\x00" + b"\x00" * 32), True)
    c.add("exif-empty", _jpeg_insert(jpeg, _app(0xE1, b"Exif\x00\x00")), True)
    c.add("exif-random", _exif_jpeg(jpeg, b"MM\x00*" + rng.randbytes(2000)), True)
    c.add("png-exif-garbage", _png_insert(png, _chunk(b"eXIf", b"MM\x00*" + rng.randbytes(200))), True)
    c.add(
        "png-exif-orientation-9",
        _png_insert(png, _chunk(b"eXIf", _tiff_ifd([(0x0112, 3, 1, struct.pack("<HH", 9, 0))]))),
        True,
    )
    c.add("webp-exif-garbage", _webp_with_chunk(webp, b"EXIF", b"II*\x00" + rng.randbytes(100), flag=0x08), True)
    c.add(
        "xmp-garbage", _jpeg_insert(jpeg, _app(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta" + b"<" * 5000)), True
    )
    c.add(
        "mpf-garbage",
        _jpeg_insert(jpeg, _app(0xE2, b"MPF\x00" + b"II*\x00\x08\x00\x00\x00" + rng.randbytes(100))),
        None,
    )

    # ---- ICC profile garbage -----------------------------------------------------------------
    c.category = "icc"
    c.add("jpeg-icc-garbage", _jpeg_insert(jpeg, _app(0xE2, b"ICC_PROFILE\x00\x01\x01" + rng.randbytes(3000))), True)
    c.add("jpeg-icc-wrong-count", _jpeg_insert(jpeg, _app(0xE2, b"ICC_PROFILE\x00\x02\x05" + rng.randbytes(300))), True)
    c.add("jpeg-icc-seq-0", _jpeg_insert(jpeg, _app(0xE2, b"ICC_PROFILE\x00\x00\x00" + rng.randbytes(300))), True)
    c.add("jpeg-icc-too-short", _jpeg_insert(jpeg, _app(0xE2, b"ICC_PROFILE\x00")), None)
    c.add("jpeg-icc-1MB", _jpeg_insert(jpeg, b"".join(
        _app(0xE2, b"ICC_PROFILE\x00" + bytes([i + 1, 16]) + rng.randbytes(65000)) for i in range(16))), True)
    c.add(
        "png-iccp-garbage", _png_insert(png, _chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(rng.randbytes(2000)))), True
    )
    c.add("png-iccp-not-zlib", _png_insert(png, _chunk(b"iCCP", b"icc\x00\x00" + rng.randbytes(200))), None)
    c.add("webp-iccp-garbage", _webp_with_chunk(webp, b"ICCP", rng.randbytes(500), flag=0x20), True)
    c.add("cmyk-jpeg-icc-garbage", _jpeg_insert(_save(photo.convert("CMYK"), "JPEG"),
                                                _app(0xE2, b"ICC_PROFILE\x00\x01\x01" + rng.randbytes(500))), True)

    # ---- odd file names on good pictures (multipart uploads) ----------------------------------
    c.category = "filename"
    for i, name in enumerate(("../../../../etc/passwd", "a\\..\\..\\b.jpg", "x" * 1000 + ".jpg", "图片 照片.jpg",
                              "", ".jpg", "a\"b';--.jpg", "%00.jpg")):
        c.add(f"odd-{i}", jpeg, True, filename=name or " ")

    # ---- base64 text (JSON routes only) --------------------------------------------------------
    c.category = "base64"
    good = base64.b64encode(jpeg).decode()
    c.text("not-base64", "this is not base64!!", False, {DECODE})
    c.text("percent-signs", "%%%%%%%%", False, {DECODE})
    c.text("valid-b64-not-image", base64.b64encode(b"hello world, not an image").decode(), False, NOT_AN_IMAGE)
    c.text("all-slashes", "////////", False, NOT_AN_IMAGE)
    c.text("garbage-in-middle", good[:400] + "$#@!" + good[400:], False, {DECODE})
    c.text("garbage-appended", good + "!!!", False, {DECODE})
    c.text("garbage-prepended", "~~~" + good, False, {DECODE})
    c.text("one-char", "A", False, {DECODE})
    c.text("only-whitespace", " \n\t\r ", False, {EMPTY})
    c.text("only-padding", "====", False, {EMPTY, DECODE})
    c.text("unicode", "图片图片图片图片", False, {DECODE})
    c.text("nul-chars", "\x00" * 16, False, {DECODE})
    c.text("hex-of-jpeg", binascii.hexlify(jpeg).decode(), False, NOT_AN_IMAGE)
    c.text("double-base64", base64.b64encode(good.encode()).decode(), False, NOT_AN_IMAGE)
    c.text("mime-line-breaks", "\n".join(good[i : i + 76] for i in range(0, len(good), 76)), True)
    c.text("crlf-line-breaks", "\r\n".join(good[i : i + 64] for i in range(0, len(good), 64)), True)
    c.text("url-safe-alphabet", base64.urlsafe_b64encode(jpeg).decode(), True)
    c.text("no-padding", good.rstrip("="), True)
    c.text("data-url", "data:image/jpeg;base64," + good, True)
    c.text("data-url-wrong-type", "data:image/png;base64," + good, True)
    c.text("data-url-not-base64", "data:image/jpeg," + good, False, {DECODE})
    c.text("data-url-empty", "data:image/jpeg;base64,", False, {EMPTY})
    c.text("data-url-twice", "data:image/jpeg;base64,data:image/jpeg;base64," + good, False, {DECODE})
    c.text("excess-padding", good + "====", None)
    c.text("padding-in-middle", good[:100] + "=" + good[100:], False, {DECODE})
    c.text("oversize", "A" * (MAX_BYTES * 4 // 3 + 100), False, {SIZE})
    c.text("oversize-whitespace-padded", good + " " * (MAX_BYTES * 2), None)
    for kind, value in (("number", 12345), ("list", [good]), ("object", {"base64": good}), ("bool", True)):
        c.text(f"json-{kind}", value, False, {"InvalidParameter", DECODE})

    names = [h.name for h in c.items]
    assert len(names) == len(set(names)), "hostile file names must be unique"
    return c.items


# --------------------------------------------------------------------------- format builders


def _png_adam7(rgb: np.ndarray) -> bytes:
    """An interlaced (Adam7) RGB PNG, built by hand (Pillow does not write interlaced PNGs)."""
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = rgb[y0::dy, x0::dx]
        if sub.size:
            raw += _rows(np.ascontiguousarray(sub))
    height, width = rgb.shape[:2]
    return PNG_SIG + _ihdr(width, height, 8, 2, 1) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _png_many_idat(rgb: np.ndarray) -> bytes:
    body = zlib.compress(_rows(rgb))
    idats = b"".join(_chunk(b"IDAT", body[i : i + 7]) for i in range(0, len(body), 7))
    height, width = rgb.shape[:2]
    return PNG_SIG + _ihdr(width, height) + idats + _chunk(b"IEND", b"")


def _png_packed_gray(values: np.ndarray, depth: int) -> bytes:
    height, width = values.shape
    per_byte = 8 // depth
    padded = np.zeros((height, -(-width // per_byte) * per_byte), np.uint8)
    padded[:, :width] = values
    packed = np.zeros((height, padded.shape[1] // per_byte), np.uint8)
    for k in range(per_byte):
        packed |= (padded[:, k::per_byte] << (8 - depth * (k + 1))).astype(np.uint8)
    return _png(width, height, _rows(packed), depth=depth, colour=0)


def _bmp_topdown(rgb: np.ndarray) -> bytes:
    height, width = rgb.shape[:2]
    stride = (width * 3 + 3) & ~3
    rows = b"".join(rgb[y, :, ::-1].tobytes().ljust(stride, b"\x00") for y in range(height))
    return _bmp_header(width, -height, 24, pixels=rows)


def _bmp_rle8(indices: np.ndarray) -> bytes:
    height, width = indices.shape
    palette = b"".join(bytes([i, 255 - i, (i * 7) % 256, 0]) for i in range(256))
    out = bytearray()
    for y in range(height - 1, -1, -1):
        row = indices[y]
        x = 0
        while x < width:
            run = 1
            while x + run < width and run < 255 and row[x + run] == row[x]:
                run += 1
            out += bytes([run, int(row[x])])
            x += run
        out += b"\x00\x00"
    out += b"\x00\x01"
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(out), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(out), 0, 0, offset) + info + palette + bytes(out)


def _jpeg_patch_sof(data: bytes, *, components: int | None = None, precision: int | None = None) -> bytes:
    pos = _sof(data)
    out = bytearray(data)
    if precision is not None:
        out[pos + 4] = precision
    if components is not None:
        out[pos + 9] = components
    return bytes(out)


def _jpeg_patch_sampling(data: bytes, value: int) -> bytes:
    pos = _sof(data)
    out = bytearray(data)
    out[pos + 11] = value  # the first component's sampling factors
    return bytes(out)


def _jpeg_sof_type(data: bytes, marker: int) -> bytes:
    pos = _sof(data)
    return data[: pos + 1] + bytes([marker]) + data[pos + 2 :]


def _jpeg_scan_flood(progressive: bytes, repeats: int) -> bytes:
    """A progressive JPEG whose last scan is repeated ``repeats`` times: libjpeg makes a pass
    over every coefficient of the image for each one (a CPU bomb)."""
    sos = [pos for pos, marker in _all_markers(progressive) if marker == 0xDA]
    last = progressive[sos[-1] : -2]
    return progressive[:-2] + last * repeats + b"\xff\xd9"


@cache
def scan_flood(side: int = MAX_SIDE, repeats: int = 3000) -> bytes:
    """A flat side x side progressive JPEG with ``repeats`` extra empty AC scans of 33 bytes each:
    about 200 KB that would take libjpeg minutes of CPU (13 ms a scan at 4096x4096)."""
    return _jpeg_scan_flood(_save(Image.new("RGB", (side, side), (120, 130, 140)), "JPEG", progressive=True), repeats)


def _all_markers(data: bytes) -> list[tuple[int, int]]:
    out, pos = [], 0
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return out
        marker = data[pos + 1]
        if marker not in (0x00, 0xFF) and not 0xD0 <= marker <= 0xD7:
            out.append((pos, marker))
        pos += 1


def _webp_vp8l_dims(data: bytes, width: int, height: int) -> bytes:
    """Rewrites a lossless WebP's 14-bit width/height fields."""
    pos = data.index(b"VP8L") + 8  # chunk payload: signature 0x2f then the packed header
    bits = int.from_bytes(data[pos + 1 : pos + 5], "little")
    bits = (bits & ~((1 << 28) - 1)) | ((width - 1) & 0x3FFF) | (((height - 1) & 0x3FFF) << 14)
    return data[: pos + 1] + bits.to_bytes(4, "little") + data[pos + 5 :]


def _webp_animated_canvas(simple: bytes, width: int, height: int) -> bytes:
    """An animated WebP: a canvas of width x height holding the one small frame of ``simple``."""
    frame = _webp_image_chunk(simple)
    image = Image.open(io.BytesIO(simple))
    fw, fh = image.size
    anmf = (0).to_bytes(3, "little") * 2 + (fw - 1).to_bytes(3, "little") + (fh - 1).to_bytes(3, "little")
    anmf += (100).to_bytes(3, "little") + b"\x00" + frame
    if (fw, fh) > (width, height) or fw > width or fh > height:
        anmf = (200).to_bytes(3, "little") * 2 + anmf[6:]  # the frame lies outside the canvas
    chunks = _vp8x(0x02, width, height) + _riff_chunk(b"ANIM", b"\xff\xff\xff\xff\x00\x00") + _riff_chunk(b"ANMF", anmf)
    return _riff(b"WEBP", chunks)


def _webp_with_chunk(simple: bytes, kind: bytes, body: bytes, *, flag: int) -> bytes:
    """An extended WebP (VP8X) of ``simple`` plus one metadata chunk."""
    width, height = Image.open(io.BytesIO(simple)).size
    image = _webp_image_chunk(simple)
    if kind == b"ICCP":
        chunks = _vp8x(flag, width, height) + _riff_chunk(kind, body) + image
    else:
        chunks = _vp8x(flag, width, height) + image + _riff_chunk(kind, body)
    return _riff(b"WEBP", chunks)


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            archive.writestr(info, data)
    return buffer.getvalue()


@lru_cache(maxsize=1)
def _cached() -> tuple[Hostile, ...]:
    return tuple(_build())


def corpus() -> list[Hostile]:
    """Every hostile file, in a fixed order (the same bytes on every run)."""
    return list(_cached())


def mutants(count: int, seed: int = 0) -> list[Hostile]:
    """``count`` random mutations of the valid pictures (flips, cuts, splices, repeats, inserted
    markers): any outcome but a crash is fine. Deterministic for a given seed."""
    rng = random.Random(seed)
    bases = [h for h in corpus() if h.valid is True and not h.json_only and len(h.data) < 200_000]
    markers = [b"\xff\xd8", b"\xff\xd9", b"\xff\xc0", b"\xff\xda", b"\xff\xc4", b"IDAT", b"IEND", b"IHDR", b"VP8 ",
               b"VP8X", b"ANMF", b"\x00" * 8, b"\xff" * 8]
    out = []
    for i in range(count):
        base = rng.choice(bases)
        data = bytearray(base.data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(6)
            pos = rng.randrange(len(data)) if data else 0
            if op == 0:  # flip bits
                for _ in range(rng.randint(1, 16)):
                    j = rng.randrange(len(data))
                    data[j] ^= 1 << rng.randrange(8)
            elif op == 1:  # cut
                data = data[:pos]
            elif op == 2:  # delete a run
                del data[pos : pos + rng.randint(1, 512)]
            elif op == 3:  # insert a marker or random bytes
                data[pos:pos] = rng.choice(markers) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 64))
            elif op == 4:  # repeat a run
                data[pos:pos] = data[pos : pos + rng.randint(1, 4096)] * rng.randint(2, 8)
            else:  # overwrite with an extreme 16/32-bit value (sizes, lengths, offsets)
                data[pos : pos + 4] = rng.choice(
                    [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00"]
                )
            if not data:
                break
        out.append(Hostile(f"mutant-{seed}-{i:05d}-{base.name}", "mutant", bytes(data[:MAX_BYTES]), None,
                           filename=base.filename, flat=True))
    return out


def good_jpeg(seed: int = 3, size: tuple[int, int] = (200, 150)) -> bytes:
    """A good picture to pair hostile ones with."""
    return _save(_photo(seed, size), "JPEG", quality=88)


if __name__ == "__main__":
    from collections import Counter

    items = corpus()
    print(f"{len(items)} hostile files, {sum(len(h.data) for h in items) / 1e6:.1f} MB")
    for category, count in Counter(h.category for h in items).items():
        print(f"  {category:10s} {count}")
