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
from lookalike.images.decode import Rect, decode_image, to_pixels
from lookalike.limits import ModelGate
from lookalike.models import OnnxEmbedder, get_spec

ImageInput = bytes | Image.Image
"""Bytes already fetched (from base64, a URL or a file), or an image already in memory."""


@dataclass(frozen=True)
class Comparison:
    cosine: float
    model: str
    seconds: float

    @property
    def aws_similarity(self) -> float:
        return scores.aws_similarity(self.cosine)

    @property
    def score(self) -> float:
        return scores.calibrated_score(self.cosine)

    @property
    def l2_distance(self) -> float:
        return scores.l2_distance(self.cosine)

    @property
    def verdict(self) -> scores.Verdict:
        return scores.verdict(self.cosine)


class Engine:
    """Loads models lazily, decodes safely, embeds in batches. Thread-safe."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._embedders: dict[str, OnnxEmbedder] = {}
        self._lock = threading.Lock()
        workers = self.settings.threads or os.cpu_count() or 2
        self._decoders = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        s = self.settings
        self.gate = ModelGate(s.model_concurrency, s.model_queue, s.model_queue_timeout_s)

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

    def run(self, batch: np.ndarray, *, model: str | None = None) -> np.ndarray:
        """Pixels (n, h, w, 3) -> unit vectors, through the bounded queue (ServerBusy when full)."""
        embedder = self.embedder(model)
        with self.gate.slot():
            return embedder.embed(batch)

    def loaded_models(self) -> list[str]:
        return list(self._embedders)

    def decode(self, image: ImageInput, *, model: str | None = None, rect: Rect | None = None) -> Image.Image:
        """Validated RGB image, cropped to ``rect``, decoded no larger than the model needs."""
        spec = get_spec(model or self.settings.model)
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
            min_size=spec.input_size,
        )

    def pixels(self, image: ImageInput, *, model: str | None = None, rect: Rect | None = None) -> np.ndarray:
        spec = get_spec(model or self.settings.model)
        return to_pixels(self.decode(image, model=spec.name, rect=rect), spec.input_size)

    def embed(
        self,
        images: Sequence[ImageInput],
        *,
        model: str | None = None,
        rects: Sequence[Rect | None] | None = None,
    ) -> np.ndarray:
        """float32 (n, dim), unit rows. A bad image raises its error, its position in the message."""
        name = model or self.settings.model
        self.embedder(name)  # an unknown or missing model fails before any decoding
        rects = list(rects) if rects is not None else [None] * len(images)

        def one(i: int) -> np.ndarray:
            try:
                return self.pixels(images[i], model=name, rect=rects[i])
            except LookalikeError as exc:
                if len(images) > 1:
                    exc.message = f"image {i}: {exc.message}"
                    exc.args = (exc.message,)
                raise

        if len(images) == 1:
            batch = one(0)[None]
        else:
            batch = np.stack(list(self._decoders.map(one, range(len(images)))))
        return self.run(batch, model=name)

    def embed_one(self, image: ImageInput, *, model: str | None = None, rect: Rect | None = None) -> np.ndarray:
        return self.embed([image], model=model, rects=[rect])[0]

    def compare(self, a: ImageInput, b: ImageInput, *, model: str | None = None) -> Comparison:
        start = time.perf_counter()
        name = model or self.settings.model
        vectors = self.embed([a, b], model=name)
        return Comparison(scores.cosine(vectors[0], vectors[1]), name, time.perf_counter() - start)
