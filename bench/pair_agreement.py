"""What the pair wires answer, against the full model alone, on the same pairs.

The pair endpoints run the cost cascade (``Engine.compare``): the fast opinion, verification
where it can change the answer, the full model (SSCD at 288 px with the mirror view) only near
the boundaries the wire's answer has. PAI's answer promises one thing, "80 and above is the same
image" (``scores.SAME_OR_NOT``); AWS returns a bare cosine (``scores.NO_BOUNDARY``). For each kind
of pair this prints how often the PAI answer lands on the same side of 80 as the full model's,
how many pairs ran the full model, and how far the PAI similarity and the AWS similarity are
from the full model's.

Pairs: 640x480 photos with an edited copy of each and with an unrelated photo (bench/speed.py's
pair wires' set, built in a scratch folder), edited copies of UKBench/Holidays images
(bench/calibrate.py's edits) and other photos of the same UKBench object or Holidays scene.

    .venv/bin/python bench/pair_agreement.py            # writes bench/results/pair_agreement.json

Skips cleanly (exit 0) when ../shared/eval is absent.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

import calibrate
import common
import speed


def pairs_by_kind(scratch: Path, count: int, seed: int = 0) -> dict[str, list[tuple[bytes, bytes]]]:
    rnd, rng = random.Random(seed), np.random.default_rng(seed)
    wire = speed.pair_bodies(scratch / "photos-640", count)
    sets = [common.load_set(name) for name in common.SETS]
    blobs = [b for s in sets for b in s.blobs]
    groups = np.concatenate([s.groups + k * 100_000 for k, s in enumerate(sets)])
    edits = []
    for n, i in enumerate(rng.choice(len(blobs), 2 * count, replace=False)):
        edits.append((blobs[i], calibrate.make_copy(blobs[i], calibrate.EDITS[n % len(calibrate.EDITS)], rnd)))
    same = [
        (i, j)
        for g in np.unique(groups)
        for i in np.flatnonzero(groups == g)
        for j in np.flatnonzero(groups == g)
        if i < j
    ]
    picked = [same[k] for k in rng.choice(len(same), 2 * count, replace=False)]
    return {
        "photo + edited copy, 640x480": wire["copies"],
        "unrelated photos, 640x480": wire["unrelated"],
        "edited copies (calibrate.py edits)": edits,
        "same object or scene": [(blobs[i], blobs[j]) for i, j in picked],
    }


def sides_table(engine, kinds: dict[str, list[tuple[bytes, bytes]]], sides: str) -> str:
    """The pair's keypoint side (LOOKALIKE_PAIR_FEATURE_SIDE) against 512 px, the search
    side: the verdict of the fast cosine raised by each side's verification, and SIFT's cost."""
    from lookalike import scores
    from lookalike.models import local

    fast = engine.fast_pipeline()
    calibration = scores.calibration(fast.tag)
    rows = []
    for kind, pairs in kinds.items():
        decoded = [(engine.decode(a), engine.decode(b)) for a, b in pairs]
        cosines = [calibration.to_reference(scores.cosine(*engine.vectors(list(p), fast))) for p in decoded]
        verdicts = {}
        for side in [512] + [int(x) for x in sides.split(",")]:
            start = time.perf_counter()
            features = [[local.extract(image, engine.settings.local_features, side) for image in p] for p in decoded]
            ms = (time.perf_counter() - start) / len(decoded) * 1000
            found = [local.verify(fa, fb) for fa, fb in features]
            need = scores.copy_share(side)
            verdicts[side] = [
                scores.verdict(scores.similarity(c, v.inliers, v.share, need))
                for c, v in zip(cosines, found, strict=True)
            ]
            copies = np.mean([scores.verified_copy(v.inliers, v.share, need) for v in found])
            agree = np.mean([x == y for x, y in zip(verdicts[side], verdicts[512], strict=True)])
            rows.append([kind, side, f"{ms:.0f}", f"{copies:.3f}", f"{agree:.3f}"])
    headers = ["pairs", "keypoints at (px)", "SIFT ms a pair (one thread)", "verified copies", "verdict as at 512 px"]
    return common.markdown_table(headers, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--count", type=int, default=100, help="640x480 photos; twice as many edits and same-object pairs"
    )
    parser.add_argument("--sides", default="384,320,256", help="pair keypoint sides compared with 512 px")
    parser.add_argument("--out", default="pair_agreement.json")
    args = parser.parse_args()
    common.require_eval_sets(common.SETS)
    from lookalike import scores

    cascade, full = common.make_engine(), common.make_engine(fast_model="")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lookalike-pairs-") as tmp:
        kinds = pairs_by_kind(Path(tmp), args.count)
    for kind, pairs in kinds.items():
        same_side = deferred = 0
        pai_gap, aws_gap = [], []
        for a, b in pairs:
            pai, aws = (
                cascade.compare(a, b, boundaries=scores.SAME_OR_NOT),
                cascade.compare(a, b, verify=False, boundaries=scores.NO_BOUNDARY),
            )
            alone = full.compare(a, b)
            same_side += (pai.score >= scores.COPY_SCORE) == (alone.score >= scores.COPY_SCORE)
            deferred += pai.model != cascade.fast_pipeline().model
            pai_gap.append(abs(pai.score - alone.score))
            aws_gap.append(abs(aws.aws_similarity - alone.aws_similarity))
        row = {
            "pairs": kind,
            "count": len(pairs),
            "pai_same_side_of_80": same_side / len(pairs),
            "pai_full_model": deferred / len(pairs),
            "pai_gap_mean": float(np.mean(pai_gap)),
            "pai_gap_p95": float(np.percentile(pai_gap, 95)),
            "aws_gap_mean": float(np.mean(aws_gap)),
            "aws_gap_p99": float(np.percentile(aws_gap, 99)),
        }
        rows.append(row)
        print(row, flush=True)
    print(sides_table(cascade, kinds, args.sides))
    headers = [
        "pairs",
        "n",
        "PAI: same side of 80",
        "PAI: ran the full model",
        "PAI gap mean / p95",
        "AWS gap mean / p99",
    ]
    table = [
        [r["pairs"], r["count"], f"{r['pai_same_side_of_80']:.3f}", f"{r['pai_full_model']:.3f}",
         f"{r['pai_gap_mean']:.1f} / {r['pai_gap_p95']:.1f}", f"{r['aws_gap_mean']:.3f} / {r['aws_gap_p99']:.3f}"]
        for r in rows
    ]  # fmt: skip
    print(common.markdown_table(headers, table))
    path = common.write_json(args.out, {"argv": vars(args), "rows": rows})
    print(f"wrote {common.shown(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
