"""Where a product search's extra time goes (issue 17's time target), in process.

bench/clutter.py measures detection's cost through the Tencent wire as one figure. This one
splits it: a product group and a general group of ``--objects`` x 3 gallery views (the clutter
set, bench/clutter_set.py), then each cluttered query searched three ways (product group with
EnableDetect, the same without, the general group), with timers around the subject finder's
parts: the region map (``RegionEmbedder.map``), the detector (``SubjectDetector.detect``, in
its thread beside the map), the stored neighbours of the seed windows, the windows' refine and
grow, and the ranked search itself. Then the region map and the detector alone, at each of
``--sides`` and 1 or 2 threads.

    .venv/bin/python bench/subject_cost.py --objects 20

Prints the table (ms per query) and writes bench/results/subject_cost.json. Needs the detector
(``lookalike models install detector``); skips cleanly when ../shared/eval is absent.
"""

from __future__ import annotations

import argparse
import functools
import io
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

import clutter_set
import common

TIMERS: dict[tuple[str, str], list[float]] = {}
MODE = [""]


def timed(name: str, fn):
    """``fn`` with its seconds added to TIMERS under (the current search mode, ``name``)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMERS.setdefault((MODE[0], name), []).append(time.perf_counter() - began)

    return wrapper


def searches(data, rounds: int) -> dict[str, float]:
    from lookalike.config import Settings
    from lookalike.engine import Engine
    from lookalike.gallery import models, subject
    from lookalike.gallery.service import GalleryService
    from lookalike.models import detector, regions
    from lookalike.storage import open_store

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="lookalike-subject-")), threads=2, group_qps=False)
    service = GalleryService(open_store(settings), Engine(settings))
    service.create_group("product", group_type=5)
    service.create_group("general", group_type=4)
    for entity, name, data_bytes in data.gallery:
        service.add_image("product", models.NewImage(entity, name, data_bytes))
        service.add_image("general", models.NewImage(entity, name, data_bytes))
    regions.RegionEmbedder.map = timed("region map", regions.RegionEmbedder.map)
    detector.SubjectDetector.detect = timed("detector", detector.SubjectDetector.detect)
    subject.best_window = timed("refine and grow", subject.best_window)
    service._neighbours = timed("seed neighbours", service._neighbours)
    service._ranked = timed("ranked search", service._ranked)
    ways = {"product": ("product", {}), "product, EnableDetect off": ("product", {"detect": False}),
            "general": ("general", {})}
    for _ in range(rounds):  # the last round's figures are kept (the first warms the sessions)
        TIMERS.clear()
        for query in data.queries:
            for mode, (group, options) in ways.items():
                MODE[0] = mode
                began = time.perf_counter()
                service.search_subject(group, query.jpeg, **options)
                TIMERS.setdefault((mode, "whole search"), []).append(time.perf_counter() - began)
    service.close()
    return {f"{mode}: {name}": round(1000 * float(np.mean(v)), 1) for (mode, name), v in sorted(TIMERS.items())}


def alone(data, sides: list[int]) -> dict[str, float]:
    from lookalike.config import Settings
    from lookalike.models.detector import SubjectDetector
    from lookalike.models.regions import RegionEmbedder

    directory = Settings().detector_dir
    images = [Image.open(io.BytesIO(q.jpeg)).convert("RGB") for q in data.queries]

    def per_image(fn) -> float:
        for image in images[:2]:
            fn(image)
        began = time.perf_counter()
        for image in images:
            fn(image)
        return round(1000 * (time.perf_counter() - began) / len(images), 1)

    out = {}
    for side in sides:
        for threads in (2, 1):
            embedder = RegionEmbedder(directory, threads=threads)
            out[f"region map {side} px, {threads} thread(s)"] = per_image(functools.partial(embedder.map, side=side))
    one = SubjectDetector(directory, threads=1)
    out["detector, 1 thread"] = per_image(one.detect)
    both = RegionEmbedder(directory, threads=2)
    pool = ThreadPoolExecutor(1)

    def side_by_side(image: Image.Image) -> None:
        detecting = pool.submit(one.detect, image)
        both.map(image, sides[0])
        detecting.result()

    out[f"detector beside region map {sides[0]} px"] = per_image(side_by_side)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sides", default="512,448,384")
    args = parser.parse_args()
    root = common.require_eval_sets(["ukbench1000", "holidays811"])
    from lookalike.engine import _single_threaded_blas

    _single_threaded_blas()
    data = clutter_set.build(root, objects=args.objects)
    rows = {**searches(data, args.rounds), **alone(data, [int(s) for s in args.sides.split(",")])}
    print("CPU flags:", " ".join(common.cpu_flags()))
    for name, ms in rows.items():
        print(f"| {name} | {ms} |")
    path = common.write_json("subject_cost.json", {"objects": args.objects, "ms": rows, "cpu_flags": common.cpu_flags(),
                                                   "machine": common.machine()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
