"""Where the dedup levels draw their lines: precision and recall of ``near`` and ``scene`` by cosine.

Measured as the user sees it: the groups ``lookalike dedup`` would report (nearest-neighbour pairs
above the threshold, joined into groups), every pair inside a reported group counting as found.

- near, on UKBench transformed (bench/ukbench_transformed.py: each photo with a crop, flips, a
  25 degree rotation and a square resize): a true pair is two files of one family (a photo and
  its copies). Other photos of the same object count against precision.
- scene, on the same set: a true pair is two files of one UKBench object (4 photos of it and
  their copies); and on Holidays-811: two photos of one scene.

    .venv/bin/python bench/dedup_levels.py [--limit 1000] [--model sscd]

Writes bench/results/dedup_levels.json and prints the tables in docs/benchmarks.md ("Dedup").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import common
import ukbench_transformed

NEAR_THRESHOLDS = (0.6, 0.65, 0.7, 0.75, 0.8, 0.81, 0.85, 0.9)
SCENE_THRESHOLDS = (0.33, 0.4, 0.45, 0.5, 0.55, 0.6)


def reported_pairs(vectors: np.ndarray, cosine: float) -> tuple[np.ndarray, np.ndarray, int]:
    """All pairs (i < j) inside the groups dedup reports at ``cosine``, and the largest group."""
    from lookalike.dedup.matching import group_pairs, similar_pairs

    left, right, largest = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)], 0
    for members in group_pairs(len(vectors), similar_pairs(vectors, cosine)):
        m = np.array(members)
        i, j = np.triu_indices(len(m), k=1)
        left.append(m[i])
        right.append(m[j])
        largest = max(largest, len(m))
    return np.concatenate(left), np.concatenate(right), largest


def score(vectors: np.ndarray, label: np.ndarray, thresholds, *, also: np.ndarray | None = None) -> list[dict]:
    """Group-level precision/recall of ``label`` pairs (same id = true), per threshold; with
    ``also`` (a coarser id), how many false pairs still share it (e.g. same scene at near)."""
    n_true = int(sum(c * (c - 1) // 2 for c in np.unique(label, return_counts=True)[1]))
    rows = []
    for t in thresholds:
        a, b, largest = reported_pairs(vectors, t)
        tp = int(np.sum(label[a] == label[b]))
        row = {
            "cosine": t,
            "pairs": len(a),
            "precision": tp / len(a) if len(a) else 1.0,
            "recall": tp / n_true,
            "largest_group": largest,
        }
        if also is not None:
            false = label[a] != label[b]
            row["false_same_scene"] = int(np.sum(false & (also[a] == also[b])))
            row["false_unrelated"] = int(np.sum(false & (also[a] != also[b])))
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="originals of UKBench transformed (default all 1000)")
    parser.add_argument("--data", type=Path, default=None, help="where UKBench transformed is built")
    parser.add_argument("--model", default="sscd")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    truth = ukbench_transformed.build(args.data, args.limit)
    folder = Path(truth["images"])
    names = sorted(truth["files"])
    family_ids = {f: i for i, f in enumerate(sorted({truth["files"][n]["family"] for n in names}))}
    family = np.array([family_ids[truth["files"][n]["family"]] for n in names])
    obj = np.array([int(truth["files"][n]["object"]) for n in names])
    engine = common.make_engine(args.threads)
    saved = folder.parent / f"vectors-{args.model}.npy"  # beside the images, outside the repository
    if saved.is_file() and np.load(saved).shape[0] == len(names):
        vectors, seconds = np.load(saved), 0.0
    else:
        print(f"embedding {len(names)} files of UKBench transformed ({args.model}) ...", file=sys.stderr)
        vectors, seconds = common.embed_all(engine, [(folder / n).read_bytes() for n in names], args.model)
        np.save(saved, vectors)
    near = score(vectors, family, NEAR_THRESHOLDS, also=obj)
    scene_ukt = score(vectors, obj, SCENE_THRESHOLDS)
    holidays = common.load_set("holidays811")
    hol_vectors, _ = common.embed_all(engine, holidays.blobs, args.model)
    scene_hol = score(hol_vectors, holidays.groups, SCENE_THRESHOLDS)

    print(f"\nnear: UKBench transformed, {len(names)} files, a true pair = one photo's family\n")
    print(common.markdown_table(
        ["cosine", "pairs reported", "precision", "recall", "false: same scene", "false: unrelated", "largest group"],
        [[r["cosine"], r["pairs"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", r["false_same_scene"],
          r["false_unrelated"], r["largest_group"]] for r in near],
    ))
    print("\nscene: a true pair = one object (UKBench transformed) / one scene (Holidays-811)\n")
    print(common.markdown_table(
        ["cosine", "UKBench-t precision", "UKBench-t recall", "largest group", "Holidays precision", "Holidays recall",
         "largest group"],
        [[a["cosine"], f"{a['precision']:.3f}", f"{a['recall']:.3f}", a["largest_group"], f"{b['precision']:.3f}",
          f"{b['recall']:.3f}", b["largest_group"]] for a, b in zip(scene_ukt, scene_hol, strict=True)],
    ))
    path = common.write_json("dedup_levels.json", {
        "model": args.model, "files": len(names), "embed_seconds": seconds, "near": near,
        "scene_ukbench_transformed": scene_ukt, "scene_holidays811": scene_hol, "machine": common.machine(),
    })
    print(f"\nwrote {common.shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
