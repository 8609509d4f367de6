"""Every score lookalike reports comes from one similarity, through one calibration.

The similarity is the cosine of two unit vectors, raised where geometric verification found the
same content (:func:`similarity`). The anchors below were fitted on it over ../shared/eval (see
docs/benchmarks.md, "Calibration", and bench/calibrate.py): ``MATCH_COSINE`` separates photos of
the same object or scene from unrelated photos; ``COPY_COSINE`` separates copies (re-encoded,
resized, cropped, flipped, edited) from other photos. The calibrated 0..100 scale maps them to 60 and 80, so that PAI's
contract holds ("100 is the same image, below 80 is not the same image") and Tencent's default
MatchThreshold is 60.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

MATCH_COSINE = 0.41  # best F1, same object/scene vs unrelated (sscd, verified): P 0.953, R 0.886
COPY_COSINE = 0.91  # best F1, copies vs non-copies (sscd, verified): P 0.698, R 0.902
SAME_IMAGE_COSINE = 0.93  # best F1, re-encodes/resizes vs edits + non-copies (sscd): P 0.584, R 0.725

NEAR_DUPLICATE_COSINE = 0.81  # dedup "near" (vectors only, no verification): bench/dedup_levels.py
# dedup "scene": grouped photos of one scene/object, UKBench-t P 1.000 R 0.956, Holidays P 0.960
SAME_SCENE_COSINE = 0.5

MATCH_SCORE = 60.0
COPY_SCORE = 80.0
SAME_IMAGE_SCORE = 97.0

_ANCHORS_X = (-1.0, 0.0, MATCH_COSINE, COPY_COSINE, SAME_IMAGE_COSINE, 1.0)
_ANCHORS_Y = (0.0, 0.0, MATCH_SCORE, COPY_SCORE, SAME_IMAGE_SCORE, 100.0)

VERIFIED_INLIERS = 7
"""Geometric verification passed: this many SIFT matches agree on one homography (bench/levers.py)."""
VERIFIED_BONUS = 0.1
"""Added to the cosine of a verified pair, and up to as much again as inliers reach +50."""
COPY_INLIERS = 20
COPY_INLIER_SHARE = 0.4
"""A verified copy (a crop, a partial copy) whatever its cosine: at least COPY_INLIERS inliers
that are at least this share of the keypoints in the region both images show. Re-shot photos of
one object also verify, but with a small share (bench/calibrate.py: copies other than mirror
images 98%, other photos of the same object 10.4%; docs/benchmarks.md, "Calibration")."""
SMALL_SIDE_COPY_SHARE = 0.45
"""COPY_INLIER_SHARE for keypoints found on a smaller image than the 512 px it was fitted at
(pairs, LOOKALIKE_PAIR_FEATURE_SIDE): fewer, stronger keypoints raise every pair's share, and
at 320 px 0.45 calls as many edited copies (0.87) and re-shot photos of one object (9.8%) copies
as 0.4 does at 512 px (10.7%); 0.4 at 320 px would call 15.3% of them copies (bench/pair_agreement.py)."""
_MARGIN = 0.005

DEFAULT_MATCH_THRESHOLD = int(MATCH_SCORE)
"""Tencent's MatchThreshold when the caller sends 0: the calibrated same-object boundary."""


@dataclass(frozen=True)
class Calibration:
    """Where one embedding pipeline's cosines cross the reference anchors above.

    The anchors were fitted on the reference pipeline (the full model at the gallery's input
    geometry, mirror-averaged: ``sscd@short288+flip``). A cheaper pipeline (another model or
    input) puts the same pairs at other cosines; its three crossing points, fitted on the same
    pairs so that each decision agrees best with the reference's (bench/cascade.py), map its
    cosines onto the reference scale piecewise-linearly. Every score, verdict and dedup level
    then means the same whatever pipeline measured the pair.
    """

    match: float
    copy: float
    same_image: float

    @property
    def _points(self) -> tuple[float, ...]:
        return (-1.0, 0.0, self.match, self.copy, self.same_image, 1.0)

    def to_reference(self, cos: float | np.ndarray) -> float | np.ndarray:
        """This pipeline's cosine (or an array of them) on the reference scale (monotonic; -1,
        0 and 1 stay put)."""
        out = np.interp(cos, self._points, _REFERENCE_X)
        return float(out) if np.ndim(out) == 0 else out

    def from_reference(self, cos: float) -> float:
        """The inverse: a reference-scale threshold as this pipeline's cosine."""
        return float(np.interp(cos, _REFERENCE_X, self._points))


_REFERENCE_X = (-1.0, 0.0, MATCH_COSINE, COPY_COSINE, SAME_IMAGE_COSINE, 1.0)
REFERENCE = Calibration(MATCH_COSINE, COPY_COSINE, SAME_IMAGE_COSINE)
CALIBRATIONS: dict[str, Calibration] = {
    "sscd@short288+flip": REFERENCE,
    "sscd-small@stretch224": Calibration(0.375, 0.895, 0.92),
}
"""Measured pipelines (``Pipeline.tag``) -> their crossing points (bench/cascade.py)."""


def calibration(tag: str) -> Calibration:
    """A pipeline's calibration; one not measured is taken at the reference anchors."""
    return CALIBRATIONS.get(tag, REFERENCE)


class Verdict(StrEnum):
    SAME_IMAGE = "same image"
    NEAR_COPY = "near copy"
    SAME_OBJECT = "same object or scene"
    DIFFERENT = "different"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.clip(np.dot(a, b), -1.0, 1.0))


def aws_similarity(cos: float) -> float:
    """AWS AI Solution Kit's scale: 0.5 + 0.5 * cosine, in [0, 1]."""
    return min(1.0, max(0.0, 0.5 + 0.5 * cos))


def l2_distance(cos: float) -> float:
    """Euclidean distance between two unit vectors with this cosine."""
    return math.sqrt(max(0.0, 2.0 - 2.0 * cos))


def copy_share(side: int) -> float:
    """The share of keypoints a copy's inliers reach, by the side the keypoints were found at."""
    return COPY_INLIER_SHARE if side >= 512 else SMALL_SIDE_COPY_SHARE


def similarity(cos: float, inliers: int | None, share: float = 0.0, copy_share: float = COPY_INLIER_SHARE) -> float:
    """The one number every score comes from: the cosine, raised by geometric verification.

    ``inliers`` None: no verification ran (local features off), the cosine stands alone.
    Verification raises a pair within "same object or scene", and a verified copy (``share``:
    inliers over the smaller keypoint count) to at least "near copy"; only the cosine itself says
    "same image", so that a crop or a re-shot photo never scores as the very same picture.
    """
    if inliers is None or inliers < VERIFIED_INLIERS:
        return cos
    raised = cos + VERIFIED_BONUS * (1.0 + min(inliers - VERIFIED_INLIERS, 50) / 50)
    ceiling = COPY_COSINE - _MARGIN
    if verified_copy(inliers, share, copy_share):
        raised, ceiling = max(raised, COPY_COSINE), SAME_IMAGE_COSINE - _MARGIN
    return max(cos, min(raised, ceiling))


VERDICT_BOUNDARIES = (MATCH_COSINE, COPY_COSINE, SAME_IMAGE_COSINE)
"""Where a verdict changes, on the reference scale."""
SAME_OR_NOT = (COPY_COSINE,)
"""The one boundary PAI's answer promises: 80 and above is the same image, below it is not.
Where a pair lies within either side (97 or 90, 30 or 70) it does not promise."""
NO_BOUNDARY = ()
"""A wire that returns a bare cosine (AWS) and no verdict."""


def verified_copy(inliers: int | None, share: float, copy_share: float = COPY_INLIER_SHARE) -> bool:
    """Geometric verification alone makes the pair a copy (a crop, a partial copy); ``copy_share``
    by the side the keypoints were found at (:func:`copy_share`)."""
    return inliers is not None and inliers >= COPY_INLIERS and share >= copy_share


def near_boundary(cos: float, margin: float, boundaries: tuple[float, ...] = VERDICT_BOUNDARIES) -> bool:
    """Whether a cosine lies within ``margin`` of a boundary: a cheap opinion there is not enough."""
    return any(abs(cos - b) < margin for b in boundaries)


def expanded(similarity: float) -> float:
    """A similarity against an expanded query (the query averaged with one of its hits) orders
    hits, but is no comparison with the query itself: it stays below "near copy", which only the
    query's own comparison says (the hit it was expanded with would otherwise look like a copy)."""
    return min(similarity, COPY_COSINE - _MARGIN)


def calibrated_score(cos: float | np.ndarray) -> float | np.ndarray:
    """The 0..100 scale shared by PAI's similarity and Tencent's Score."""
    out = np.interp(cos, _ANCHORS_X, _ANCHORS_Y)
    return float(out) if np.ndim(out) == 0 else out


def cosine_for_score(score: float) -> float:
    """Inverse of :func:`calibrated_score`, for turning a score threshold into a cosine one."""
    return float(np.interp(score, _ANCHORS_Y[1:], _ANCHORS_X[1:]))


def verdict(cos: float) -> Verdict:
    if cos >= SAME_IMAGE_COSINE:
        return Verdict.SAME_IMAGE
    if cos >= COPY_COSINE:
        return Verdict.NEAR_COPY
    if cos >= MATCH_COSINE:
        return Verdict.SAME_OBJECT
    return Verdict.DIFFERENT
