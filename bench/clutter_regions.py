"""The query's region map on the clutter set, in process: box overlap and plain-cosine R@1.

bench/clutter.py measures product search through the Tencent wire (minutes per configuration:
every gallery picture is stored through the server). This one measures what the region map's
settings change, cheaply: the gallery's vectors are computed once as a product group stores
them (the detector's subject, SSCD at short288 with the mirror view), then for each query and
each ``--sides`` x ``--margins``:

* the subject finder's box (:meth:`SubjectFinder.for_query`, real detector and region model,
  the stored neighbours looked up by brute force), its IoU with the pasted box;
* R@1 of the box's crop embedded by SSCD, by plain cosine (no geometric re-ranking, which the
  wire adds), and of the pasted box itself (the oracle);
* the whole picture's score (the confidence that skips the windows) for cluttered and clean
  queries;
* the finder's milliseconds (detector, region map, pooling, scoring).

    .venv/bin/python bench/clutter_regions.py --objects 60 --sides 384,512 --margins 0.03,0.04,0.05

Writes bench/results/clutter_regions.json (or --out). Skips cleanly when ../shared/eval is absent.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import clutter_set
import common


def gallery_vectors(engine, finder, data, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, entities) of the gallery as a product group stores it."""
    from lookalike.gallery import subject as sj

    if cache is not None and cache.is_file():
        saved = np.load(cache)
        return saved["G"], saved["ents"]
    crops = []
    for _, _, data_bytes in data.gallery:
        image = Image.open(io.BytesIO(data_bytes)).convert("RGB")
        crops.append(sj.crop(image, finder.for_picture(image, None).box))
    vectors = engine.vectors(crops, engine.pipeline())
    entities = np.array([entity for entity, _, _ in data.gallery])
    if cache is not None:
        np.savez(cache, G=vectors, ents=entities)
    return vectors, entities


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=60)
    parser.add_argument("--sides", default="512")
    parser.add_argument("--margins", default="0.04")
    parser.add_argument("--cache", type=Path, default=None, help="an .npz to keep the gallery's vectors in")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "clutter_regions.json")
    args = parser.parse_args()
    root = common.require_eval_sets(["ukbench1000", "holidays811"])

    from lookalike.config import Settings
    from lookalike.engine import Engine
    from lookalike.gallery import subject as sj
    from lookalike.gallery import windows
    from lookalike.models.inputs import InputGeometry

    data = clutter_set.build(root, objects=args.objects)
    engine = Engine(Settings())
    stored, entities = gallery_vectors(engine, sj.SubjectFinder(engine.settings), data, args.cache)
    query_geometry = InputGeometry.parse("short288")

    def nearest(vector: np.ndarray) -> str:
        return str(entities[int(np.argmax(stored @ vector))])

    def neighbours(vectors: np.ndarray) -> np.ndarray:
        top = np.argsort(-(vectors @ stored.T), axis=1)[:, : sj.NEIGHBOURS]
        return stored[np.unique(top)]

    def crop_top1(image: Image.Image, box: tuple[int, int, int, int]) -> str:
        x, y, w, h = box
        return nearest(engine.run([query_geometry.pixels(image.crop((x, y, x + w, y + h)))], model="sscd")[0])

    rows = []
    images = [Image.open(io.BytesIO(q.jpeg)).convert("RGB") for q in data.queries]
    oracle = np.mean([crop_top1(im, q.box) == q.entity for im, q in zip(images, data.queries, strict=True)])
    print(f"oracle crop (pasted box), plain cosine: R@1 {oracle:.3f}", flush=True)
    for side in [int(s) for s in args.sides.split(",")]:
        for margin in [float(m) for m in args.margins.split(",")]:
            windows.GROW_MARGIN = margin  # best_window's default, read at each call
            finder = sj.SubjectFinder(Settings(subject_side=side))
            ious, hits, seconds = [], [], []
            for image, q in zip(images, data.queries, strict=True):
                start = time.perf_counter()
                found = finder.for_query(image, None, neighbours)
                seconds.append(time.perf_counter() - start)
                box = (found.box.x, found.box.y, found.box.width, found.box.height)
                ious.append(clutter_set.iou(box, q.box))
                hits.append(crop_top1(image, box) == q.entity)
            row = {"side": side, "margin": margin, "r1_plain": round(float(np.mean(hits)), 4),
                   "iou_ge_0_5": round(float(np.mean(np.array(ious) >= 0.5)), 4),
                   "iou_mean": round(float(np.mean(ious)), 4), "finder_ms": round(1000 * float(np.mean(seconds)), 1)}
            rows.append(row)
            print(row, flush=True)
    side = int(args.sides.split(",")[-1])
    regions = sj.SubjectFinder(Settings(subject_side=side)).regions

    def whole_score(image: Image.Image) -> float:
        region_map = regions.map(image, side)
        vector = region_map.vectors(np.array([(0, 0, region_map.columns, region_map.rows)]))[0]
        return float((stored @ vector).max())

    cluttered = [whole_score(im) for im in images]
    clean = [whole_score(Image.open(io.BytesIO(q.clean)).convert("RGB")) for q in data.queries]
    def share(values: list[float]) -> float:
        return round(float(np.mean(np.array(values) >= sj.CONFIDENT_COSINE)), 4)

    confidence = {
        "side": side,
        "cluttered_max": round(max(cluttered), 4),
        "cluttered_q90": round(float(np.quantile(cluttered, 0.9)), 4),
        "clean_q10": round(float(np.quantile(clean, 0.1)), 4),
        "clean_share_confident": share(clean),
        "cluttered_share_confident": share(cluttered),
    }
    print("whole-picture score:", confidence, flush=True)
    common.write_json(args.out.name, {
        "objects": args.objects, "oracle_r1_plain": round(float(oracle), 4), "rows": rows, "confidence": confidence,
        "cpu": common.cpu_model(), "cpu_flags": common.cpu_flags(), "machine": common.machine(),
        "command": "bench/clutter_regions.py " + " ".join(sys.argv[1:]),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
