"""The model does its job: copies of an image score above unrelated images, by a margin."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

import lookalike
from lookalike import errors
from support import distinct_photos, encode

MARGIN = 0.15


def copies(image: Image.Image) -> dict[str, bytes]:
    w, h = image.size
    crop = image.crop((int(w * 0.1), int(h * 0.1), int(w * 0.9), int(h * 0.9)))
    return {
        "resized": encode(image.resize((w // 2, h // 2)), quality=90),
        "re-encoded q40": encode(image, quality=40),
        "cropped 80%": encode(crop, quality=90),
        "flipped": encode(ImageOps.mirror(image), quality=90),
        "png": encode(image, "PNG"),
        "brighter": encode(ImageEnhance.Brightness(image).enhance(1.3), quality=90),
    }


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return distinct_photos(8)


@pytest.mark.parametrize("model", ["sscd", "sscd-small"])
def test_copies_beat_unrelated_images_by_a_margin(photos, model):
    originals = lookalike.embed([encode(p, quality=95) for p in photos], model=model)
    unrelated = originals @ originals.T
    np.fill_diagonal(unrelated, -1)
    for i, photo in enumerate(photos[:4]):
        variants = copies(photo)
        vectors = lookalike.embed(list(variants.values()), model=model)
        copy_scores = dict(zip(variants, (vectors @ originals[i]).round(3), strict=True))
        worst_copy = min(copy_scores.values())
        best_unrelated = unrelated[i].max()
        assert worst_copy > best_unrelated + MARGIN, (model, i, copy_scores, best_unrelated)


def test_python_api_shapes_and_inputs(photos, tmp_path):
    path = tmp_path / "a.jpg"
    data = encode(photos[0], quality=95)
    path.write_bytes(data)
    from_path = lookalike.embed(str(path))
    from_bytes = lookalike.embed(data)
    from_pil = lookalike.embed(Image.open(io.BytesIO(data)))
    assert from_path.shape == (512,) and from_path.dtype == np.float32
    assert np.linalg.norm(from_path) == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(from_path, from_bytes, atol=1e-6)
    assert float(from_path @ from_pil) > 0.99
    batch = lookalike.embed([path, data])
    assert batch.shape == (2, 512)
    assert lookalike.compare(path, data) == pytest.approx(1.0, abs=1e-4)
    other = encode(photos[1])
    expected = 0.5 + 0.5 * float(from_path @ lookalike.embed(other))
    # the pair cascade's fast opinion, mapped to the reference scale (tests/test_api.py, PAIR_TOLERANCE)
    assert lookalike.compare(path, other) == pytest.approx(expected, abs=0.07)


def test_python_api_reports_errors_with_codes(tmp_path):
    with pytest.raises(errors.ImageDecodeFailed):
        lookalike.embed(b"not an image at all")
    with pytest.raises(errors.ImageDecodeFailed):
        lookalike.embed(tmp_path / "missing.jpg")
    with pytest.raises(errors.ModelNotFound):
        lookalike.embed(b"\xff\xd8\xff", model="nope")
