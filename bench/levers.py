"""Each retrieval lever of issue 8 alone and together, on vectors in numpy (fast to sweep).

bench/quality.py measures the shipped path end to end; this script explains its defaults. Every
image of UKBench-1000 and Holidays-811 is embedded with the engine's own geometry code
(``InputGeometry``) and local features (``models.local``), then the levers are applied to exact
cosine rankings:

* geometry: stretch to 224x224 (pre-0.2) or shorter side 288;
* flip: gallery vectors average the mirror view (queries stay one view);
* centring: gallery and query vectors minus the gallery's mean (unsupervised; not shipped);
* verify: the top ``--depth`` re-ranked by ``scores.similarity`` with inliers >= T, bonus B;
* QE: a second pass with the query plus its best (re-ranked) hit, weighted by its similarity.

    .venv/bin/python bench/levers.py          # writes bench/results/levers.json

Skips cleanly (exit 0) when ../shared/eval is absent.
"""

from __future__ import annotations

import argparse
import io
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from PIL import Image, ImageOps

import common


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def embed(engine, images: list[Image.Image], geometry: str, mirror: bool) -> np.ndarray:
    from lookalike.models.inputs import InputGeometry

    g = InputGeometry.parse(geometry)
    pixels = [g.pixels(ImageOps.mirror(im) if mirror else im) for im in images]
    return np.concatenate([engine.run(pixels[i : i + 32]) for i in range(0, len(pixels), 32)])


def evaluate(data: common.EvalSet, scores: np.ndarray) -> float:
    """N-S for UKBench (the query counted in its own top 4), mAP in percent for Holidays."""
    s = scores.copy()
    if data.name.startswith("ukbench"):
        np.fill_diagonal(s, np.inf)
        top = np.argsort(-s, axis=1)[:, :4]
        return float((data.groups[top] == data.groups[:, None]).sum(axis=1).mean())
    aps = []
    for q, relevant in data.queries.items():
        row = s[q].copy()
        row[q] = -np.inf
        order = np.argsort(-row, kind="stable")[:-1]
        hit = np.zeros(len(row), dtype=bool)
        hit[relevant] = True
        aps.append(common.average_precision(hit[order], len(relevant)))
    return 100 * float(np.mean(aps))


def rank(q, x, inliers, *, depth, threshold, bonus, expand, queries):
    """Similarity matrix after verification (top ``depth`` of the first pass) and QE."""

    def fused(s, verified):
        out = s.copy()
        for i in queries:
            for j in verified[i]:
                n = inliers.get((i, j), 0)
                if n >= threshold:
                    out[i, j] = s[i, j] + bonus * (1 + min(n - threshold, 50) / 50)
        return out

    s = q @ x.T
    np.fill_diagonal(s, -9)  # a query never verifies itself; evaluate() puts it back for N-S
    verified = {i: [int(j) for j in np.argsort(-s[i])[:depth]] for i in queries} if depth else {i: [] for i in queries}
    f = fused(s, verified)
    if expand:
        best = f.argmax(axis=1)
        weight = np.clip(f[np.arange(len(f)), best], 0, 1)
        s = unit(q + weight[:, None] * x[best]) @ x.T
        np.fill_diagonal(s, -9)
        f = fused(s, verified)
    return f


def _inliers(features: list, pair: tuple[int, int]) -> int:
    from lookalike.models.local import verify

    return verify(features[pair[0]], features[pair[1]]).inliers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--out", default="levers.json")
    args = parser.parse_args()
    root = common.require_eval_sets(common.SETS)
    from lookalike.models.local import extract

    engine = common.make_engine()
    rows: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}
    for name in common.SETS:
        data = common.load_set(name, root)
        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in data.blobs]
        queries = list(range(len(data))) if name.startswith("ukbench") else list(data.queries)
        start = time.perf_counter()
        v = {
            "stretch224": embed(engine, images, "stretch224", False),
            "short288": embed(engine, images, "short288", False),
            "short288m": embed(engine, images, "short288", True),
        }
        timings[f"{name}_embed_s"] = time.perf_counter() - start
        start = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            features = list(pool.map(extract, images))
            q, x = v["short288"], unit(v["short288"] + v["short288m"])
            s = q @ x.T
            np.fill_diagonal(s, -9)
            pairs = {(i, int(j)) for i in queries for j in np.argsort(-s[i])[: args.depth]}
            pairs = sorted(pairs)
            inliers = dict(zip(pairs, pool.map(partial(_inliers, features), pairs), strict=True))
        timings[f"{name}_verify_s"] = time.perf_counter() - start

        def put(label: str, value: float, name: str = name) -> None:
            rows.setdefault(label, {})[name] = value

        plain = dict(depth=0, threshold=99, bonus=0.0, expand=False, queries=queries)
        put("stretch224 (pre-0.2)", evaluate(data, rank(v["stretch224"], v["stretch224"], {}, **plain)))
        put("short288", evaluate(data, rank(q, v["short288"], {}, **plain)))
        put("short288 + flip", evaluate(data, rank(q, x, {}, **plain)))
        mu = x.mean(axis=0)
        put("short288 + flip + centring", evaluate(data, rank(unit(q - mu), unit(x - mu), {}, **plain)))
        put("short288 + flip + QE", evaluate(data, rank(q, x, {}, **{**plain, "expand": True})))
        put(
            "short288 + flip + centring + QE",
            evaluate(data, rank(unit(q - mu), unit(x - mu), {}, **{**plain, "expand": True})),
        )
        for threshold in (7, 8, 10, 15):
            for bonus in (0.05, 0.1):
                knobs = dict(depth=args.depth, threshold=threshold, bonus=bonus, queries=queries)
                put(
                    f"short288 + flip + verify T{threshold} B{bonus}",
                    evaluate(data, rank(q, x, inliers, expand=False, **knobs)),
                )
                put(
                    f"short288 + flip + verify T{threshold} B{bonus} + QE",
                    evaluate(data, rank(q, x, inliers, expand=True, **knobs)),
                )
        put(
            "short288 + flip + centring + verify T7 B0.1 + QE",
            evaluate(
                data,
                rank(
                    unit(q - mu),
                    unit(x - mu),
                    inliers,
                    expand=True,
                    depth=args.depth,
                    threshold=7,
                    bonus=0.1,
                    queries=queries,
                ),
            ),
        )
        print(f"{name}: done ({timings})", flush=True)

    path = common.write_json(
        args.out, {"argv": vars(args), "machine": common.machine(), "rows": rows, "timings": timings}
    )
    print(f"wrote {path}")
    print(
        common.markdown_table(
            ["levers", "UKBench N-S", "Holidays mAP"],
            [
                [label, f"{r.get('ukbench1000', float('nan')):.3f}", f"{r.get('holidays811', float('nan')):.2f}"]
                for label, r in rows.items()
            ],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
