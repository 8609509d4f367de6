"""Safe decoding: every refused input gets its documented code; accepted ones become RGB pixels."""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lookalike import errors
from lookalike.images import Rect, decode_base64, decode_image
from lookalike.models.inputs import InputGeometry
from support import encode, synthetic_photo

LIMITS = dict(max_bytes=5 * 1024 * 1024, max_side=4096, max_pixels=4096 * 4096)


def decode(data: bytes, **kwargs):
    return decode_image(data, **{**LIMITS, **kwargs})


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares a size; the (tiny) pixel data does not match it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return synthetic_photo(1)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP"])
def test_accepted_formats_decode_to_rgb(photo, fmt):
    image = decode(encode(photo, fmt))
    assert image.mode == "RGB" and image.size == photo.size


@pytest.mark.parametrize(
    "mode",
    ["L", "P", "RGBA", "CMYK", "I;16", "LA", "1"],
)
def test_every_mode_becomes_rgb(photo, mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    if mode == "I;16":
        source = Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257)
        assert source.mode == "I;16"
    else:
        source = photo.convert(mode)
    image = decode(encode(source, fmt))
    assert image.mode == "RGB"
    pixels = InputGeometry.parse("stretch224").pixels(image)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    assert pixels.std() > 10  # real content survived, not a blank conversion


def test_transparent_areas_become_white():
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image = decode(encode(rgba, "PNG"))
    assert image.getpixel((10, 10)) == (255, 255, 255)


def test_16_bit_png_keeps_its_range():
    ramp = (np.arange(256 * 64, dtype=np.uint32).reshape(64, 256) * 4).astype(np.uint16)
    image = decode(encode(Image.fromarray(ramp), "PNG"))
    gray = np.asarray(image)[:, :, 0]
    assert gray.min() == 0 and gray.max() >= 250


def test_exif_orientation_is_applied(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    data = encode(photo, "JPEG", exif=exif.tobytes())
    image = decode(data)
    assert image.size == (photo.height, photo.width)


def test_large_jpeg_is_decoded_at_a_reduced_dct_scale():
    big = synthetic_photo(2, size=(4096, 3072))
    data = encode(big, "JPEG", quality=85)
    image = decode(data, min_size=(224, 224))
    # 1/8 scale keeps 512x384 >= 224: the full 12.6 Mpx image is never materialised.
    assert image.size == (512, 384)
    full = decode(data)
    assert full.size == (4096, 3072)


def test_crop_rect_is_in_original_coordinates_even_when_dct_scaled():
    big = synthetic_photo(3, size=(4000, 3000))
    data = encode(big, "JPEG", quality=90)
    rect = Rect(1000, 500, 2000, 1500)
    scaled = decode(data, rect=rect, min_size=(224, 224))
    exact = big.crop((1000, 500, 3000, 2000)).resize(scaled.size)
    diff = np.abs(np.asarray(scaled, dtype=np.int16) - np.asarray(exact, dtype=np.int16)).mean()
    assert diff < 12


@pytest.mark.parametrize(
    "rect",
    [Rect(-1, 0, 10, 10), Rect(0, 0, 0, 10), Rect(5000, 5000, 10, 10)],
)
def test_bad_rect_is_refused(photo, rect):
    with pytest.raises(errors.InvalidParameterValue) as info:
        decode(encode(photo), rect=rect)
    assert info.value.code == "InvalidParameterValue.ImageRectInvalid"


def test_truncated_jpeg(photo):
    data = encode(photo, "JPEG")
    with pytest.raises(errors.ImageDecodeFailed):
        decode(data[: len(data) // 2])


def test_corrupt_png(photo):
    data = bytearray(encode(photo, "PNG"))
    data[200:400] = b"\x00" * 200
    with pytest.raises(errors.ImageDecodeFailed):
        decode(bytes(data))


def test_png_declaring_50000_pixels_is_refused_from_its_header():
    with pytest.raises(errors.ImageResolutionExceed):
        decode(png_header_only(50000, 50000))


def test_longest_side_over_4096_is_refused():
    data = encode(Image.new("RGB", (5000, 100), (9, 99, 199)), "PNG")
    with pytest.raises(errors.ImageResolutionExceed):
        decode(data)


def test_pixel_budget_guards_against_bombs():
    with pytest.raises(errors.ImageResolutionExceed):
        decode(png_header_only(4000, 4000), max_pixels=1_000_000)


@pytest.mark.parametrize(
    "data, error",
    [
        (b"", errors.ImageEmpty),
        (b"GIF89a" + b"\x00" * 100, errors.ImageNotSupported),
        (b"II*\x00" + b"\x00" * 100, errors.ImageNotSupported),
        (b"<!DOCTYPE html><html><body>not found</body></html>", errors.ImageDecodeFailed),
        (b"\xff\xd8\xff" + b"\x00" * 10, errors.ImageDecodeFailed),
        (b"\x00" * 1000, errors.ImageDecodeFailed),
    ],
)
def test_refused_bytes(data, error):
    with pytest.raises(error):
        decode(data)


def test_real_gif_is_not_supported(photo):
    with pytest.raises(errors.ImageNotSupported):
        decode(encode(photo.convert("P"), "GIF"))


def test_size_limit_counts_bytes():
    with pytest.raises(errors.ImageSizeExceed):
        decode(b"\xff\xd8\xff" + b"\x00" * 100, max_bytes=50)


class TestBase64:
    payload = b"\x89PNG\r\n\x1a\n-some-bytes-\xff\xfe"

    def test_plain(self):
        assert decode_base64(base64.b64encode(self.payload).decode(), max_bytes=1000) == self.payload

    def test_data_url_and_line_breaks(self):
        text = base64.encodebytes(self.payload).decode()
        assert decode_base64(f"data:image/png;base64,{text}", max_bytes=1000) == self.payload

    def test_url_safe_without_padding(self):
        text = base64.urlsafe_b64encode(self.payload).decode().rstrip("=")
        assert decode_base64(text, max_bytes=1000) == self.payload

    @pytest.mark.parametrize("text", ["not base64!!", "@@@@", "a"])
    def test_invalid(self, text):
        with pytest.raises(errors.ImageDecodeFailed):
            decode_base64(text, max_bytes=1000)

    def test_empty(self):
        with pytest.raises(errors.ImageEmpty):
            decode_base64("  ", max_bytes=1000)

    def test_oversize_refused_before_decoding(self):
        with pytest.raises(errors.ImageSizeExceed):
            decode_base64("A" * 4000, max_bytes=1000)

    def test_wrong_type(self):
        with pytest.raises(errors.ImageDecodeFailed):
            decode_base64(12345, max_bytes=1000)  # type: ignore[arg-type]  # not text on purpose
