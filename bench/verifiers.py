"""Geometric verifiers compared: homography estimators for SIFT, and ORB in SIFT's place.

Every image of UKBench-1000 and Holidays-811 is embedded as the galleries do (shorter side 288,
stored vectors mirror-averaged); each query's top 20 by cosine is verified and re-ranked as
``bench/levers.py`` does (inliers >= T raise the cosine by B = 0.1 to 0.2, then query expansion).
Printed per verifier: the time a pair takes (one thread) and the quality after re-ranking.

* SIFT (``models.local``, what ships) with RANSAC (500 iterations), RANSAC 200, RHO, USAC_FAST;
* ORB, 1000 keypoints at the same 512 px, Hamming matching (OpenCV brute force), the same ratio
  test, one match per keypoint and RANSAC, at inlier thresholds 7 to 20.

    .venv/bin/python bench/verifiers.py        # writes bench/results/verifiers.json

Skips cleanly (exit 0) when ../shared/eval is absent.
"""

from __future__ import annotations

import io
import threading
import time
from functools import partial

import numpy as np
from PIL import Image

import common
import levers

ESTIMATORS = {
    "RANSAC 500": ("RANSAC", 500),
    "RANSAC 200": ("RANSAC", 200),
    "RHO": ("RHO", None),
    "USAC_FAST": ("USAC_FAST", None),
}
_local = threading.local()


def sift_with(estimator: str, iters: int | None):
    """``models.local.verify`` with another homography estimator (its matching unchanged)."""
    import cv2

    from lookalike.models import local

    real = cv2.findHomography

    def verify(a, b) -> int:
        def estimate(src, dst, _method, tolerance, **_):
            kw = {"maxIters": iters} if iters else {}
            return real(src, dst, getattr(cv2, estimator), tolerance, **kw)

        cv2.findHomography = estimate
        try:
            return local.verify(a, b).inliers
        finally:
            cv2.findHomography = real

    return verify


def orb_extract(image: Image.Image, side: int = 512, points: int = 1000):
    import cv2

    gray = image.convert("L")
    scale = side / max(gray.size)
    if scale < 0.98:
        gray = gray.resize((round(gray.width * scale), round(gray.height * scale)), Image.Resampling.BILINEAR)
    orb = getattr(_local, "orb", None) or cv2.ORB_create(nfeatures=points)
    _local.orb = orb
    keypoints, desc = orb.detectAndCompute(np.asarray(gray), None)
    if desc is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    return np.array([k.pt for k in keypoints], np.float32), desc


def orb_verify(a, b, ratio: float = 0.8) -> int:
    import cv2

    (pa, da), (pb, db) = a, b
    if len(da) < 6 or len(db) < 2:
        return 0
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(da, db, k=2)
    best: dict[int, object] = {}
    for m in (p[0] for p in knn if len(p) == 2 and p[0].distance < ratio * p[1].distance):
        if m.trainIdx not in best or m.distance < best[m.trainIdx].distance:
            best[m.trainIdx] = m
    if len(best) < 6:
        return 0
    src = pa[[m.queryIdx for m in best.values()]]
    dst = pb[[m.trainIdx for m in best.values()]]
    _, mask = cv2.findHomography(src, dst, cv2.RANSAC, 8.0, maxIters=500)
    return 0 if mask is None else int(mask.sum())


def _measure(rows, name, data, pairs, queries, q, x, label: str, features: list, verify, thresholds=(7,)) -> None:
    """One verifier on one set: its re-ranked quality at each threshold and its cost a pair."""
    start = time.perf_counter()
    inliers = {p: verify(features[p[0]], features[p[1]]) for p in pairs}
    per_pair = (time.perf_counter() - start) / len(pairs) * 1000
    for t in thresholds:
        knobs = dict(depth=20, threshold=t, bonus=0.1, queries=queries, expand=True)
        quality = levers.evaluate(data, levers.rank(q, x, inliers, **knobs))
        row = rows.setdefault(f"{label} T{t}", {})
        row[name], row[f"{name}_ms_per_pair"] = quality, per_pair
        print(f"{name:<12} {label:<18} T{t:<3} {quality:8.3f}  {per_pair:5.2f} ms a pair", flush=True)


def main() -> int:
    import cv2

    from lookalike.models.local import extract

    cv2.setNumThreads(1)
    root = common.require_eval_sets(common.SETS)
    engine = common.make_engine()
    rows: dict[str, dict[str, float]] = {}
    for name in common.SETS:
        data = common.load_set(name, root)
        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in data.blobs]
        queries = list(range(len(data))) if name.startswith("ukbench") else list(data.queries)
        q = levers.embed(engine, images, "short288", False)
        x = levers.unit(q + levers.embed(engine, images, "short288", True))
        s = q @ x.T
        np.fill_diagonal(s, -9)
        pairs = sorted({(i, int(j)) for i in queries for j in np.argsort(-s[i])[:20]})
        measure = partial(_measure, rows, name, data, pairs, queries, q, x)

        start = time.perf_counter()
        sift = [extract(im) for im in images]
        rows.setdefault("extract ms", {})[f"{name}_sift"] = (time.perf_counter() - start) / len(images) * 1000
        for label, (estimator, iters) in ESTIMATORS.items():
            measure(f"SIFT {label}", sift, sift_with(estimator, iters))
        start = time.perf_counter()
        orb = [orb_extract(im) for im in images]
        rows["extract ms"][f"{name}_orb"] = (time.perf_counter() - start) / len(images) * 1000
        measure("ORB RANSAC 500", orb, orb_verify, thresholds=(7, 10, 15, 20))
        print(f"{name:<12} extraction ms an image: {rows['extract ms']}", flush=True)

    path = common.write_json("verifiers.json", {"machine": common.machine(), "rows": rows})
    print(f"wrote {path}")
    print(common.markdown_table(
        ["verifier", "UKBench N-S", "ms a pair", "Holidays mAP", "ms a pair"],
        [[label, f"{r['ukbench1000']:.3f}", f"{r['ukbench1000_ms_per_pair']:.2f}", f"{r['holidays811']:.2f}",
          f"{r['holidays811_ms_per_pair']:.2f}"] for label, r in rows.items() if label != "extract ms"],
    ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
