"""Fits the fast pipeline's calibration and measures the cascade against the full model alone.

The fast pipeline (``LOOKALIKE_FAST_MODEL`` at ``LOOKALIKE_FAST_GEOMETRY``: sscd-small, 224x224)
and the reference (sscd at 288 px, mirror-averaged: what the anchors of src/lookalike/scores.py
were fitted on) embed the same images: every photo of UKBench-1000 and Holidays-811, and an
edited copy of ``--copies`` of them (bench/calibrate.py's edits: re-encodes, resizes, crops,
flips, rotation, colour, overlay). Over all pairs, for each reference anchor (MATCH, COPY,
SAME_IMAGE, and dedup's NEAR), the fast cosine that best agrees with the reference decision
(fewest pairs on the other side) is its crossing point: the :class:`scores.Calibration` to ship.

Then, with that calibration, the cascade as ``Engine.compare`` runs it (the fast opinion, the
full model within ``margin`` of a boundary) is scored against the reference alone, per margin:
verdict agreement over the same-object, copy and unrelated pairs, the share of pairs that
needed the full model, and the AWS similarity's error (0.5 + 0.5 cos, cascade against
reference).

    .venv/bin/python bench/cascade.py                # writes bench/results/cascade.json

Skips cleanly (exit 0) when ../shared/eval is absent.
"""

from __future__ import annotations

import argparse
import io
import random
import time

import numpy as np
from PIL import Image

import calibrate
import common

MARGINS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1)


def embed(engine, images: list[Image.Image], pipeline) -> np.ndarray:
    return np.concatenate([engine.vectors(images[i : i + 32], pipeline) for i in range(0, len(images), 32)])


def pairs_of(groups: np.ndarray, copies: list[tuple[int, int]], unrelated: int, seed: int = 0):
    """Index pairs: every same-group pair, every (original, copy), and ``unrelated`` random
    pairs of different groups."""
    rng = np.random.default_rng(seed)
    same = [(i, j) for g in np.unique(groups) for i, j in _combinations(np.flatnonzero(groups == g))]
    n = len(groups)
    a, b = rng.integers(0, n, unrelated * 2), rng.integers(0, n, unrelated * 2)
    keep = groups[a] != groups[b]
    other = list(zip(a[keep][:unrelated].tolist(), b[keep][:unrelated].tolist(), strict=True))
    return {"same object": same, "copy": copies, "unrelated": other}


def _combinations(members: np.ndarray):
    return [(int(members[x]), int(members[y])) for x in range(len(members)) for y in range(x + 1, len(members))]


def crossing(fast: np.ndarray, ref: np.ndarray, anchor: float) -> tuple[float, int]:
    """The fast cosine whose decision (>=) disagrees least with ``ref >= anchor``."""
    grid = np.round(np.arange(0.0, 1.0, 0.005), 3)
    wrong = [int(np.sum((fast >= t) != (ref >= anchor))) for t in grid]
    best = int(np.argmin(wrong))
    return float(grid[best]), wrong[best]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=400, help="edited copies made (of the first photos of each set)")
    parser.add_argument("--unrelated", type=int, default=200_000)
    parser.add_argument("--out", default="cascade.json")
    args = parser.parse_args()
    root = common.require_eval_sets(common.SETS)
    from lookalike import scores

    engine = common.make_engine()
    reference = engine.pipeline()
    fast = engine.fast_pipeline()
    assert fast is not None, "LOOKALIKE_FAST_MODEL is off"
    images, groups = [], []
    for offset, name in enumerate(common.SETS):
        data = common.load_set(name, root)
        images += [Image.open(io.BytesIO(b)).convert("RGB") for b in data.blobs]
        groups += (data.groups + offset * 100_000).tolist()
    rnd = random.Random(0)
    originals = list(range(0, len(images), max(1, len(images) // args.copies)))[: args.copies]
    copies = []
    for i in originals:
        edit = calibrate.EDITS[len(copies) % len(calibrate.EDITS)]
        buffer = io.BytesIO()
        images[i].save(buffer, "JPEG", quality=95)
        images.append(Image.open(io.BytesIO(calibrate.make_copy(buffer.getvalue(), edit, rnd))).convert("RGB"))
        groups.append(groups[i])
        copies.append((i, len(images) - 1))
    group_ids = np.array(groups)
    start = time.perf_counter()
    ref_vectors = embed(engine, images, reference)
    ref_seconds = time.perf_counter() - start
    start = time.perf_counter()
    fast_vectors = embed(engine, images, fast)
    fast_seconds = time.perf_counter() - start
    print(f"embedded {len(images)} images: reference {ref_seconds:.0f} s, fast {fast_seconds:.0f} s", flush=True)

    kinds = pairs_of(group_ids, copies, args.unrelated)
    everything = [p for ps in kinds.values() for p in ps]
    left, right = np.array([p[0] for p in everything]), np.array([p[1] for p in everything])
    ref_cos = np.einsum("ij,ij->i", ref_vectors[left], ref_vectors[right])
    fast_cos = np.einsum("ij,ij->i", fast_vectors[left], fast_vectors[right])
    anchors = {
        "match": scores.MATCH_COSINE,
        "copy": scores.COPY_COSINE,
        "same_image": scores.SAME_IMAGE_COSINE,
        "near": scores.NEAR_DUPLICATE_COSINE,
    }
    fitted = {k: crossing(fast_cos, ref_cos, a) for k, a in anchors.items()}
    calibration = scores.Calibration(fitted["match"][0], fitted["copy"][0], fitted["same_image"][0])
    print(
        "crossing points: "
        + ", ".join(f"{k} {anchors[k]:.2f} -> {t:.3f} ({w} pairs disagree)" for k, (t, w) in fitted.items())
    )
    mapped = np.asarray(calibration.to_reference(fast_cos))
    near_mapped = calibration.to_reference(fitted["near"][0])
    print(
        f"dedup near {scores.NEAR_DUPLICATE_COSINE} crosses at fast {fitted['near'][0]:.3f}, "
        f"which the fitted map puts at {near_mapped:.3f}"
    )

    verdict = lambda c: np.digitize(c, [scores.MATCH_COSINE, scores.COPY_COSINE, scores.SAME_IMAGE_COSINE])  # noqa: E731
    truth = verdict(ref_cos)
    kind_of = np.concatenate([[k] * len(v) for k, v in kinds.items()])
    rows = []
    for margin in MARGINS:
        defer = (
            np.array([scores.near_boundary(float(c), margin) for c in mapped])
            if margin
            else np.zeros(len(mapped), bool)
        )
        answer = np.where(defer, ref_cos, mapped)
        row = {
            "margin": margin,
            "deferred": float(defer.mean()),
            "aws_error_mean": float(np.mean(np.abs(answer - ref_cos)) / 2),
            "aws_error_p99": float(np.percentile(np.abs(answer - ref_cos), 99) / 2),
        }
        for kind in kinds:
            mask = kind_of == kind
            row[f"agree {kind}"] = float(np.mean(verdict(answer[mask]) == truth[mask]))
            row[f"deferred {kind}"] = float(defer[mask].mean())
        rows.append(row)
    headers = (
        ["margin", "deferred (all)"]
        + [f"agree {k}" for k in kinds]
        + [f"deferred {k}" for k in kinds]
        + ["AWS error mean", "AWS error p99"]
    )
    print(
        common.markdown_table(
            headers,
            [
                [r["margin"], f"{r['deferred']:.3f}"]
                + [f"{r[f'agree {k}']:.4f}" for k in kinds]
                + [f"{r[f'deferred {k}']:.3f}" for k in kinds]
                + [f"{r['aws_error_mean']:.4f}", f"{r['aws_error_p99']:.4f}"]
                for r in rows
            ],
        )
    )
    crossings = {k: {"fast": t, "disagree": w} for k, (t, w) in fitted.items()}
    payload = {"argv": vars(args), "fast": fast.tag, "reference": reference.tag}
    payload |= {"pairs": {k: len(v) for k, v in kinds.items()}, "crossing": crossings, "rows": rows}
    path = common.write_json(args.out, payload | {"seconds": {"reference": ref_seconds, "fast": fast_seconds}})
    print(f"wrote {common.shown(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
