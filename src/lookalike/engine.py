"""The core every interface shares: image references -> pixels -> vectors -> scores."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lookalike import scores
from lookalike.config import Settings, get_settings
from lookalike.errors import LookalikeError
from lookalike.images.decode import Rect, decode_image
from lookalike.limits import ModelGate
from lookalike.models import OnnxEmbedder, get_spec, local
from lookalike.models.inputs import InputGeometry, Pipeline, pipeline_tag

ImageInput = bytes | Image.Image
"""Bytes already fetched (from base64, a URL or a file), or an image already in memory."""


@dataclass(frozen=True)
class Comparison:
    cosine: float
    """On the reference scale (:class:`scores.Calibration`), whichever pipeline measured it."""
    model: str
    """The model whose opinion decided (the fast one when no boundary was close)."""
    seconds: float
    verification: local.Verification | None = None
    """Geometric verification of the pair (None when it did not run: local features off, or a
    cosine where verification cannot change the verdict)."""
    pipeline: str = ""
    """The pipeline that decided (``Pipeline.tag``)."""
    copy_share: float = scores.COPY_INLIER_SHARE
    """The verified-copy share for the side its keypoints were found at (:func:`scores.copy_share`)."""

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
        return scores.similarity(self.cosine, self.inliers, share, self.copy_share)

    @property
    def aws_similarity(self) -> float:
        return scores.aws_similarity(self.cosine)

    @property
    def score(self) -> float:
        return float(scores.calibrated_score(self.similarity))

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
        self.fast_geometry = InputGeometry.parse(s.fast_geometry)

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

    def pipeline(self, model: str | None = None, *, query: bool = False) -> Pipeline:
        """The gallery's pipeline for ``model``: the input geometry, with the mirror view on the
        stored side (``query``: a search's single view)."""
        return Pipeline(model or self.settings.model, self.geometry, self.settings.index_flip and not query)

    def fast_pipeline(self, model: str | None = None) -> Pipeline | None:
        """The cheap first opinion for a job run with ``model`` (None: the full model only, when
        LOOKALIKE_FAST_MODEL is off or another model than the default was asked for)."""
        s = self.settings
        name = model or s.model
        if not s.fast_model or s.fast_model == name or name != s.model:
            return None
        return Pipeline(s.fast_model, self.fast_geometry)

    def vectors(self, images: Sequence[Image.Image], pipeline: Pipeline) -> np.ndarray:
        """Unit vectors of decoded images through ``pipeline``."""
        return self.run([pipeline.geometry.pixels(im) for im in images], model=pipeline.model, flip=pipeline.flip)

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
        """What a JPEG may be draft-decoded to: enough for every pipeline's input. Local features
        take what that leaves (a 12 MP photo decodes at 1/8, 500x375, a third of the time of
        1/4; SIFT finds its keypoints on that as well as on 512x384)."""
        side = max(self.geometry.decode_size[0], self.fast_geometry.decode_size[0])
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

    def pair_cosine(self, images: Sequence[Image.Image], pipeline: Pipeline) -> float:
        """The reference-scale cosine of two decoded images through ``pipeline``."""
        vectors = self.vectors(images, pipeline)
        return float(scores.calibration(pipeline.tag).to_reference(scores.cosine(vectors[0], vectors[1])))

    def compare(
        self,
        a: ImageInput,
        b: ImageInput,
        *,
        model: str | None = None,
        verify: bool | None = None,
        boundaries: tuple[float, ...] = scores.VERDICT_BOUNDARIES,
    ) -> Comparison:
        """How alike two images are: a cascade of opinions, each only where the last left doubt.

        The fast pipeline first (LOOKALIKE_FAST_MODEL); geometric verification (local features
        on) only where its inliers can still change the verdict: from LOOKALIKE_VERIFY_FROM up
        to the copy boundary (``verify`` True: always, False: never); the full pipeline (the
        gallery's stored side) only when the similarity so far lies within
        LOOKALIKE_CASCADE_MARGIN of a verdict boundary and verification did not settle the pair
        as a copy. Both full-model runs of a pair cost more than everything else here.

        ``boundaries``: the verdict boundaries the caller's answer depends on (a wire that only
        says "the same image or not" needs only the copy boundary, one that returns a bare
        cosine none): the full model runs only near those.
        """
        start = time.perf_counter()
        s = self.settings
        name = model or s.model
        images = self._decode_each([a, b], name, None, self.decode)
        full = self.pipeline(name)
        used = self.fast_pipeline(name) or full
        cosine = self.pair_cosine(images, used)
        # A fast opinion just above the copy boundary is verified too: a verified copy settles
        # that boundary without the full model.
        above = s.cascade_margin if used != full and scores.COPY_COSINE in boundaries else 0.0
        verification = self._verify_pair(images, cosine, verify, above)
        copy_share = scores.copy_share(s.pair_feature_side)
        first = Comparison(cosine, used.model, 0.0, verification, used.tag, copy_share)
        if used != full and self._in_doubt(first, boundaries):
            used, cosine = full, self.pair_cosine(images, full)
            if verification is None:
                verification = self._verify_pair(images, cosine, verify)
        return Comparison(cosine, used.model, time.perf_counter() - start, verification, used.tag, copy_share)

    def _verify_pair(
        self, images: Sequence[Image.Image], cosine: float, verify: bool | None, above: float = 0.0
    ) -> local.Verification | None:
        """Geometric verification of a pair when asked, or (None) where it can change the verdict:
        from LOOKALIKE_VERIFY_FROM up to the copy boundary (``above`` it: that much further).
        Keypoints at LOOKALIKE_PAIR_FEATURE_SIDE (docs/benchmarks.md, "Speed")."""
        s = self.settings
        if verify is None:
            verify = s.verify_from <= cosine < scores.COPY_COSINE + above
        if not verify or not s.local_features:
            return None
        fa, fb = self._decoders.map(lambda image: local.extract(image, s.local_features, s.pair_feature_side), images)
        return local.verify(fa, fb)

    def _in_doubt(self, opinion: Comparison, boundaries: tuple[float, ...]) -> bool:
        """Whether the fast opinion leaves the verdict close: its similarity lies within the
        cascade margin of one of ``boundaries``. A verified copy settles every boundary up to the
        copy one; above it only the cosine speaks ("same image")."""
        margin = self.settings.cascade_margin
        share = 0.0 if opinion.verification is None else opinion.verification.share
        if scores.verified_copy(opinion.inliers, share, opinion.copy_share):
            return scores.near_boundary(opinion.cosine, margin, tuple(b for b in boundaries if b > scores.COPY_COSINE))
        return scores.near_boundary(opinion.similarity, margin, boundaries)
