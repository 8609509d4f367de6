"""The core every interface shares: image references -> pixels -> vectors -> scores."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from lookalike import scores
from lookalike.config import Settings, get_settings
from lookalike.errors import LookalikeError
from lookalike.images.decode import Rect, decode_image
from lookalike.limits import ModelGate
from lookalike.models import OnnxEmbedder, get_spec
from lookalike.models import local
from lookalike.models.inputs import InputGeometry, pipeline_tag

ImageInput = bytes | Image.Image
"""Bytes already fetched (from base64, a URL or a file), or an image already in memory."""


@dataclass(frozen=True)
class Comparison:
    cosine: float
    model: str
    seconds: float
    verification: local.Verification | None = None
    """Geometric verification of the pair (None when local features are off)."""

    @property
    def inliers(self) -> int | None:
        return None if self.verification is None else self.verification.inliers

    @property
    def verified(self) -> bool | None:
        return None if self.inliers is None else self.inliers >= scores.VERIFIED_INLIERS

    @property
    def similarity(self) -> float:
        """The cosine, raised where geometric verification found the same content."""
        share = 0.0 if self.verification is None else self.verification.share
        return scores.similarity(self.cosine, self.inliers, share)

    @property
    def aws_similarity(self) -> float:
        return scores.aws_similarity(self.cosine)

    @property
    def score(self) -> float:
        return scores.calibrated_score(self.similarity)

    @property
    def l2_distance(self) -> float:
        return scores.l2_distance(self.cosine)

    @property
    def verdict(self) -> scores.Verdict:
        return scores.verdict(self.similarity)


def _single_threaded_blas() -> None:
    """lookalike runs in parallel by task (requests, decodes, verifications) and onnxruntime has
    threads of its own; BLAS threads on top only fight them (a search's verifications ran at half
    speed with them). Process-wide, as BLAS's setting is."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


class Engine:
    """Loads models lazily, decodes safely, embeds in batches. Thread-safe."""

    def __init__(self, settings: Settings | None = None) -> None:
        _single_threaded_blas()
        self.settings = settings or get_settings()
        self._embedders: dict[str, OnnxEmbedder] = {}
        self._lock = threading.Lock()
        workers = self.settings.threads or os.cpu_count() or 2
        self._decoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        s = self.settings
        self.gate = ModelGate(s.model_concurrency, s.model_queue, s.model_queue_timeout_s)
        self.geometry = InputGeometry.parse(s.input_geometry)

    @property
    def default_model(self) -> str:
        return self.settings.model

    def embedder(self, model: str | None = None) -> OnnxEmbedder:
        name = model or self.settings.model
        spec = get_spec(name)
        with self._lock:
            if name not in self._embedders:
                self._embedders[name] = OnnxEmbedder(
                    spec,
                    threads=self.settings.threads,
                    batch_size=self.settings.batch_size,
                    providers=self.settings.providers,
                )
            return self._embedders[name]

    def run(self, pixels: Sequence[np.ndarray], *, model: str | None = None, flip: bool = False) -> np.ndarray:
        """Pixels (each h, w, 3) -> unit vectors, through the bounded queue (ServerBusy when full).

        Images of one shape share a batch. ``flip``: each vector is the mean of the image's and
        its mirror image's (the index side of test-time augmentation).
        """
        embedder = self.embedder(model)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(pixels):
            by_shape.setdefault(p.shape, []).append(i)
        out = np.empty((len(pixels), embedder.spec.dim), dtype=np.float32)
        with self.gate.slot():
            for rows in by_shape.values():
                batch = np.stack([pixels[i] for i in rows])
                vectors = embedder.embed(batch)
                if flip:
                    vectors = vectors + embedder.embed(batch[:, :, ::-1])
                    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
                out[rows] = vectors
        return out

    @property
    def embedding_tag(self) -> str:
        return pipeline_tag(self.settings.input_geometry, self.settings.index_flip)

    def loaded_models(self) -> list[str]:
        return list(self._embedders)

    def decode(
        self, image: ImageInput, *, model: str | None = None, rect: Rect | None = None, full: bool = False
    ) -> Image.Image:
        """Validated RGB image, cropped to ``rect``, decoded no larger than the model needs.

        ``full``: at full resolution (no DCT draft), for product groups, which find the subject
        on the picture and crop it: a crop of a draft-decoded picture is too small for the model."""
        get_spec(model or self.settings.model)  # an unknown model fails before any decoding
        if isinstance(image, Image.Image):
            from lookalike.images.sources import image_to_bytes

            image = image_to_bytes(image) if rect is not None or image.mode not in ("RGB", "L") else image
        if isinstance(image, Image.Image):
            return image.convert("RGB")
        s = self.settings
        return decode_image(
            image,
            max_bytes=s.max_image_bytes,
            max_side=s.max_image_side,
            max_pixels=s.max_image_pixels,
            rect=rect,
            min_size=None if full else self.decode_size,
        )

    @property
    def decode_size(self) -> tuple[int, int]:
        """What a JPEG may be draft-decoded to: enough for the model and for the local features."""
        side = self.geometry.decode_size[0]
        if self.settings.local_features:
            side = max(side, local.FEATURE_SIDE * 3 // 4)
        return (side, side)

    def pixels(self, image: ImageInput, *, model: str | None = None, rect: Rect | None = None) -> np.ndarray:
        return self.geometry.pixels(self.decode(image, model=model, rect=rect))

    def local_features(self, image: Image.Image, *, query: bool = False) -> local.LocalFeatures | None:
        """SIFT keypoints of a decoded image, or None when LOOKALIKE_LOCAL_FEATURES is 0.

        ``query``: a search's side, found on a smaller image and fewer of them (the extraction
        and the verifications are most of a search's time); stored images keep the full set."""
        s = self.settings
        if not s.local_features:
            return None
        if query:
            return local.extract(image, s.query_keypoints or s.local_features, s.query_feature_side)
        return local.extract(image, s.local_features)

    def embed(
        self,
        images: Sequence[ImageInput],
        *,
        model: str | None = None,
        rects: Sequence[Rect | None] | None = None,
        query: bool = False,
    ) -> np.ndarray:
        """float32 (n, dim), unit rows. A bad image raises its error, its position in the message.

        ``query``: a gallery search's side, a single view; otherwise the index side (the vectors
        galleries store and comparisons use, with the mirror view when LOOKALIKE_INDEX_FLIP)."""
        name = model or self.settings.model
        pixels = self._decode_each(images, name, rects, self.pixels)
        return self.run(pixels, model=name, flip=self.settings.index_flip and not query)

    def _decode_each(self, images: Sequence[ImageInput], name: str, rects, then):
        """``then(image, model=, rect=)`` of every image, in parallel; a bad one raises its error
        with its position in the message."""
        self.embedder(name)  # an unknown or missing model fails before any decoding
        rects = list(rects) if rects is not None else [None] * len(images)

        def one(i: int):
            try:
                return then(images[i], model=name, rect=rects[i])
            except LookalikeError as exc:
                if len(images) > 1:
                    exc.message = f"image {i}: {exc.message}"
                    exc.args = (exc.message,)
                raise

        return [one(0)] if len(images) == 1 else list(self._decoders.map(one, range(len(images))))

    def embed_one(self, image: ImageInput, *, model: str | None = None, rect: Rect | None = None) -> np.ndarray:
        return self.embed([image], model=model, rects=[rect])[0]

    def compare(self, a: ImageInput, b: ImageInput, *, model: str | None = None) -> Comparison:
        """Cosine of the two index-side vectors, and geometric verification when local features are on."""
        start = time.perf_counter()
        name = model or self.settings.model
        images = self._decode_each([a, b], name, None, self.decode)
        vectors = self.run([self.geometry.pixels(im) for im in images], model=name, flip=self.settings.index_flip)
        verification = None
        if self.settings.local_features:
            fa, fb = self._decoders.map(self.local_features, images)
            verification = local.verify(fa, fb)
        return Comparison(scores.cosine(vectors[0], vectors[1]), name, time.perf_counter() - start, verification)
