"""Product groups' subject: the region of a picture that is embedded, stored and searched.

Tencent's product image search (GroupType 5, 7 and 8; versions 1.0, 2.0, 3.0 of its product
search) finds the picture's subject when ``EnableDetect`` is on (the default), or the subject of
a ``CategoryId`` (0 tops, 1 skirts and dresses, 2 bottoms, 3 bags, 4 shoes, 5 accessories), and
uses that region on both sides: the stored picture and the query. A caller's ``ImageRect`` wins.

How the subject is found (measured by bench/clutter.py, docs/benchmarks.md "Product search"):

* a stored picture: the detector's largest box (of the category asked for, where the detector
  knows it), else the whole picture. Catalogue photos show the product alone, and a box that
  cuts into it would cost more than the background it removes;
* a query: the detector's boxes and the windows of the picture's region map
  (:mod:`lookalike.models.regions`: one ``sscd-small`` run over the whole picture at
  LOOKALIKE_SUBJECT_SIDE, every window's vector pooled from it) compete; the stored pictures
  nearest to the whole picture, the boxes and 18 seed windows are looked up once, and every
  window is scored against them. When neither the whole picture nor a box is confidently close
  to a stored picture, the best window (class-agnostic: the detector knows 23 Open Images
  classes, none of them a garment or a bag) is refined and grown to the subject
  (:mod:`lookalike.gallery.windows`); its box is the answer.

  Before, each window was cropped and embedded (13 windows and 9 tighter ones at 288 px): on
  the 250 clutter queries R@1 0.976, Object.Box IoU >= 0.5 for 68.8%, +144% search time. The
  region map costs one run at 512 px instead of 22 (docs/benchmarks.md, "Product search").

General (4) and pattern (6) groups never look for a subject: they search the whole picture (or
the ImageRect), as Tencent's general and pattern search do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from lookalike import errors
from lookalike.config import Settings
from lookalike.gallery.windows import Cells, best_window, grid
from lookalike.images.decode import Rect
from lookalike.models.detector import CATEGORY_NONE, TENCENT_CATEGORIES, Detection, SubjectDetector
from lookalike.models.regions import RegionEmbedder

PRODUCT_GROUP_TYPES = frozenset({5, 7, 8})
DETECT_MAX_SIDE = 2000
"""Tencent: with subject detection on, pictures up to 2000x2000."""
DETECT_MAX_ASPECT = 10.0
"""Tencent: with subject detection on, an aspect ratio under 10."""
SEED_SCALES = (0.5, 0.7)
SEED_PLACES = 3
"""The windows (besides the whole picture and the detector's boxes) whose nearest stored
pictures are the candidates every window is scored against: 0.5 and 0.7 of the picture on a
3 x 3 grid of places (18 store searches at most)."""
NEIGHBOURS = 4
"""Stored pictures kept per seed window."""
CONFIDENT_COSINE = 0.4
"""A query whose whole picture (or a detector box) is this close to a stored picture needs no
windows: on the clutter set the whole clean photo's best cosine (sscd-small against SSCD
vectors) was >= 0.43 for 90% of the queries, the pasted scenes' never above 0.36."""


@dataclass(frozen=True)
class Subject:
    """The region used, in the pixels of the (oriented) picture as it was given."""

    box: Rect
    score: float
    """The detector's confidence (0..1); for a window or the whole picture chosen by closeness, its
    cosine with the closest stored picture; 1 for an ImageRect; 0 for a stored whole picture."""
    category: int
    """Tencent's CategoryId of the box; -1 when it is none of the six (or unknown)."""
    label: str
    """The detector's class, or "region" (a class-agnostic window), "image" (nothing smaller won), "ImageRect"."""
    boxes: tuple[Detection, ...] = ()
    """Everything the detector found (Tencent's AllBox)."""
    requested: int | None = None
    """The CategoryId asked for."""

    @property
    def honoured(self) -> bool:
        """Whether the box is of the category asked for (True when none was asked)."""
        return self.requested is None or self.category == self.requested


def is_product(group_type: int) -> bool:
    return group_type in PRODUCT_GROUP_TYPES


def category_id(value: object) -> int | None:
    """CategoryId: None, or one of Tencent's six product categories."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value not in TENCENT_CATEGORIES:
        known = ", ".join(f"{k} {v}" for k, v in TENCENT_CATEGORIES.items())
        raise errors.InvalidParameter(
            f"CategoryId must be one of {known}; got {value!r}", code="InvalidParameter.InvalidParameter"
        )
    return value


def check_detectable(width: int, height: int) -> None:
    """Tencent's limits of subject detection: up to 2000x2000, aspect ratio under 10."""
    if max(width, height) > DETECT_MAX_SIDE:
        raise errors.ImageResolutionExceed(
            f"subject detection takes pictures up to {DETECT_MAX_SIDE}x{DETECT_MAX_SIDE}, not {width}x{height}"
            " (turn EnableDetect off, or give ImageRect)"
        )
    if max(width, height) / max(1, min(width, height)) >= DETECT_MAX_ASPECT:
        raise errors.ImageUnqualified(
            f"subject detection needs an aspect ratio under {DETECT_MAX_ASPECT:g}; {width}x{height} is not"
        )


def whole(image: Image.Image, requested: int | None, boxes: tuple[Detection, ...] = ()) -> Subject:
    return Subject(Rect(0, 0, *image.size), 0.0, CATEGORY_NONE, "image", boxes, requested)


def caller_rect(rect: Rect, requested: int | None) -> Subject:
    return Subject(rect, 1.0, CATEGORY_NONE if requested is None else requested, "ImageRect", (), requested)


def _from_detection(d: Detection, boxes: tuple[Detection, ...], requested: int | None) -> Subject:
    return Subject(Rect(d.x, d.y, d.width, d.height), round(d.score, 4), d.category, d.label, boxes, requested)


def pick(detections: list[Detection], requested: int | None) -> Detection | None:
    """The largest subject, of the category asked for where there is one."""
    if requested is not None:
        of_kind = [d for d in detections if d.category == requested]
        detections = of_kind or detections
    return max(detections, key=lambda d: d.area, default=None)


def crop(image: Image.Image, box: Rect) -> Image.Image:
    return image.crop((box.x, box.y, box.x + box.width, box.y + box.height))


class SubjectFinder:
    """Loads the detector and the region model on first use (ModelUnavailable, naming the
    install command, when they are not installed). Thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._detector: SubjectDetector | None = None
        self._regions: RegionEmbedder | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="subject")

    @property
    def detector(self) -> SubjectDetector:
        with self._lock:
            if self._detector is None:
                self._detector = SubjectDetector(self.settings.detector_dir, threads=1)
            return self._detector

    @property
    def regions(self) -> RegionEmbedder:
        with self._lock:
            if self._regions is None:
                self._regions = RegionEmbedder(self.settings.detector_dir, threads=self.settings.threads)
            return self._regions

    def for_picture(self, image: Image.Image, requested: int | None) -> Subject:
        """A stored picture's subject: the detector's pick, else the whole picture."""
        check_detectable(*image.size)
        boxes = tuple(self.detector.detect(image))
        best = pick(list(boxes), requested)
        return whole(image, requested, boxes) if best is None else _from_detection(best, boxes, requested)

    def for_query(
        self,
        image: Image.Image,
        requested: int | None,
        neighbours: Callable[[np.ndarray], np.ndarray],
    ) -> Subject:
        """A query's subject: of the whole picture, the detector's boxes and the windows of its
        region map, the region closest to a stored picture (``neighbours``: the stored unit
        vectors nearest to each of the given query vectors, stacked). A CategoryId the
        detector can tell limits the choice to its boxes."""
        check_detectable(*image.size)
        detector, regions = self.detector, self.regions
        if requested is None:
            # The detector (one core) runs beside the region map: on 2 cores the query waits
            # for the longer of the two instead of both.
            detecting = self._pool.submit(detector.detect, image)
            region_map = regions.map(image, self.settings.subject_side)
            boxes = tuple(detecting.result())
        else:
            boxes = tuple(detector.detect(image))
            if any(d.category == requested for d in boxes):
                return _from_detection(pick(list(boxes), requested), boxes, requested)  # type: ignore[arg-type]
            region_map = regions.map(image, self.settings.subject_side)
        columns, rows = region_map.columns, region_map.rows
        fixed = [(0, 0, columns, rows)] + [region_map.to_cells(Rect(d.x, d.y, d.width, d.height)) for d in boxes]
        seeds = fixed + (grid(columns, rows, SEED_SCALES, SEED_PLACES) if self.settings.subject_windows else [])
        stored = neighbours(region_map.vectors(np.asarray(seeds)))
        if not len(stored):
            return whole(image, requested, boxes)

        def score(cells: list[Cells]) -> np.ndarray:
            return (region_map.vectors(np.asarray(cells)) @ stored.T).max(axis=1)

        fixed_scores = score(fixed)
        best = int(np.argmax(fixed_scores))
        best_score = float(fixed_scores[best])
        if self.settings.subject_windows and best_score < CONFIDENT_COSINE:
            cells, window_score = best_window(score, columns, rows)
            if window_score > best_score and cells != fixed[0]:
                clipped = round(float(np.clip(window_score, 0.0, 1.0)), 4)
                return Subject(region_map.to_rect(cells), clipped, CATEGORY_NONE, "region", boxes, requested)
        if best == 0:
            return replace(whole(image, requested, boxes), score=round(float(np.clip(best_score, 0.0, 1.0)), 4))
        return _from_detection(boxes[best - 1], boxes, requested)
