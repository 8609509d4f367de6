"""Dedup's second opinions: what settles the pairs the fast model leaves in doubt.

The fast pipeline (LOOKALIKE_FAST_MODEL, a distilled MobileNetV4 in SSCD's vector space) embeds
every file for a fraction of SSCD's cost; its cosine, mapped to the reference scale, decides the
clear pairs either way. A pair in doubt gets, cheapest first:

1. geometric verification (near level, local features on): SIFT keypoints of both files and a
   homography. A verified copy (``scores.COPY_INLIERS`` inliers over ``COPY_INLIER_SHARE`` of the
   keypoints both show) is a duplicate, the way a crop is, whatever its cosine. Re-shot photos
   of one object verify too, but with a small share, so they do not pass.
2. the full pipeline (the gallery's stored side, SSCD mirror-averaged) when the fast cosine
   lies within the cascade margin of the threshold and verification did not settle it.

On camera photos with a crop of each (bench/speed.py) the fast cosine alone leaves about a
quarter of the copies under the near threshold; verification finds them (docs/benchmarks.md,
"Speed").
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from lookalike import scores
from lookalike.models import local
from lookalike.models.inputs import Pipeline

VERIFY_FROM = 0.6
"""Reference-scale cosine from which dedup's near level verifies: the lowest edited copy (a crop
of 55% of a 12 MP photo, resized and re-encoded) measured 0.65 (bench/speed.py's camera set);
unrelated photos stay below 0.55 (99.99th percentile 0.47)."""


@dataclass
class SecondOpinion:
    """Callable as ``cascade_pairs`` wants it: rows' pairs in, reference-scale cosines out."""

    decode: Callable[[int], Image.Image | None]
    """A row's image, decoded at the engine's decode size (None: it no longer decodes)."""
    vectors: Callable[[list[int]], dict[int, np.ndarray]]
    """The full pipeline's vectors of rows (missing: no vector)."""
    full: Pipeline
    threshold: float
    margin: float
    keypoints: int
    """SIFT keypoints per image; 0: no verification."""
    threads: int = 2
    verified: int = field(default=0, init=False)
    """Pairs settled as verified copies."""
    deferred: int = field(default=0, init=False)
    """Pairs settled by the full pipeline."""

    def window(self, level: str) -> tuple[float, float]:
        """The reference-scale cosines whose pairs are in doubt: from the lowest cosine an
        edited copy was measured at when verification can find copies there (near), else
        within the margin of the threshold; up to the threshold plus the margin."""
        low = min(VERIFY_FROM, self.threshold - self.margin) if self.keypoints else self.threshold - self.margin
        return (low, self.threshold + self.margin)

    def __call__(self, left: np.ndarray, right: np.ndarray, first: np.ndarray) -> np.ndarray:
        out = np.full(len(left), np.nan, dtype=np.float32)
        if self.keypoints:
            self._verify(left, right, first, out)
        close = [n for n in range(len(left)) if np.isnan(out[n]) and abs(first[n] - self.threshold) < self.margin]
        if close:
            rows = sorted({int(left[n]) for n in close} | {int(right[n]) for n in close})
            vectors = self.vectors(rows)
            calibration = scores.calibration(self.full.tag)
            for n in close:
                a, b = vectors.get(int(left[n])), vectors.get(int(right[n]))
                if a is not None and b is not None:
                    out[n] = calibration.to_reference(scores.cosine(a, b))
                    self.deferred += 1
        return out

    def _verify(self, left: np.ndarray, right: np.ndarray, first: np.ndarray, out: np.ndarray) -> None:
        rows = sorted(set(left.tolist()) | set(right.tolist()))

        def features(row: int) -> local.LocalFeatures | None:
            image = self.decode(row)
            return None if image is None else local.extract(image, self.keypoints)

        with ThreadPoolExecutor(max_workers=max(1, self.threads)) as pool:
            found = dict(zip(rows, pool.map(features, rows), strict=True))
            pairs = [(n, found[int(a)], found[int(b)]) for n, (a, b) in enumerate(zip(left, right, strict=True))]
            pairs = [(n, fa, fb) for n, fa, fb in pairs if fa is not None and fb is not None]
            checks = pool.map(lambda p: local.verify(p[1], p[2]), pairs)
            for (n, _, _), check in zip(pairs, checks, strict=True):
                if check.inliers >= scores.COPY_INLIERS and check.share >= scores.COPY_INLIER_SHARE:
                    out[n] = max(float(first[n]), scores.COPY_COSINE)
                    self.verified += 1
