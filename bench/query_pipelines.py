"""Could a search embed its query more cheaply than the stored side? Self-cosine and ranking.

A gallery stores SSCD at 288 px with the mirror view; a search today embeds its query with SSCD
at 288 px (one view). A cheaper query pipeline (``sscd-small``, a smaller input) would save most
of a search's embedding time, but a search's Score comes from the query's cosine with each stored
vector: a picture searched by its own bytes must still reach "same image" (97-100), and copies
must keep scoring as copies. For each query pipeline this prints the cosine of every image with
its own stored vector (the self-cosine: p1, p5, median) and the exact-ranking quality over half
the groups of UKBench-1000 and Holidays-811 (N-S among the UKBench half, mAP among the Holidays
half; no verification or expansion, so compare rows, not against the gallery path's figures).

    .venv/bin/python bench/query_pipelines.py          # writes bench/results/query_pipelines.json

Skips cleanly (exit 0) when ../shared/eval is absent.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import common

QUERY_PIPELINES = {
    "sscd@short288 (shipped)": ("sscd", "short288"),
    "sscd@short256": ("sscd", "short256"),
    "sscd@short224": ("sscd", "short224"),
    "sscd@stretch256": ("sscd", "stretch256"),
    "sscd-small@short288": ("sscd-small", "short288"),
    "sscd-small@stretch224": ("sscd-small", "stretch224"),
}


def ns_score(sim: np.ndarray, groups: np.ndarray) -> float:
    top = np.argsort(-sim, axis=1)[:, :4]
    return float((groups[top] == groups[:, None]).sum(axis=1).mean())


def mean_ap(sim: np.ndarray, groups: np.ndarray) -> float:
    sim = sim.copy()
    np.fill_diagonal(sim, -9.0)
    aps = []
    for i in range(len(sim)):
        relevant = groups == groups[i]
        relevant[i] = False
        if relevant.any():
            order = np.argsort(-sim[i])[:-1]  # the query itself sorts last
            aps.append(common.average_precision(relevant[order], int(relevant.sum())))
    return float(np.mean(aps))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="query_pipelines.json")
    args = parser.parse_args()
    root = common.require_eval_sets(common.SETS)
    from lookalike.models.inputs import Pipeline

    engine = common.make_engine()
    decoded: dict[str, list] = {}
    groups: dict[str, np.ndarray] = {}
    for name in common.SETS:
        data = common.load_set(name, root)
        keep = [i for i, g in enumerate(data.groups) if g % 2 == 0]  # half the groups: every 2nd
        decoded[name] = [engine.decode(data.blobs[i]) for i in keep]
        groups[name] = data.groups[keep]

    def vectors(images: list, pipeline) -> np.ndarray:
        return np.concatenate([engine.vectors(images[i : i + 32], pipeline) for i in range(0, len(images), 32)])

    stored = {name: vectors(images, engine.pipeline()) for name, images in decoded.items()}
    rows = []
    for label, (model, geometry) in QUERY_PIPELINES.items():
        pipeline = Pipeline.of(model, geometry)
        start = time.perf_counter()
        queries = {name: vectors(images, pipeline) for name, images in decoded.items()}
        per_image = (time.perf_counter() - start) / sum(len(v) for v in decoded.values())
        own = np.concatenate([np.einsum("ij,ij->i", queries[n], stored[n]) for n in decoded])
        ukbench, holidays = common.SETS[0], common.SETS[1]
        row = {
            "query": label,
            "ms_per_image": per_image * 1000,
            "self_cosine_p1": float(np.percentile(own, 1)),
            "self_cosine_p5": float(np.percentile(own, 5)),
            "self_cosine_median": float(np.median(own)),
            "ukbench_ns": ns_score(queries[ukbench] @ stored[ukbench].T, groups[ukbench]),
            "holidays_map": 100 * mean_ap(queries[holidays] @ stored[holidays].T, groups[holidays]),
        }
        rows.append(row)
        print(row, flush=True)
    headers = ["query pipeline", "ms/image", "self-cosine p1 / p5 / median", "UKBench half N-S", "Holidays half mAP"]
    table = [
        [r["query"], f"{r['ms_per_image']:.0f}",
         f"{r['self_cosine_p1']:.3f} / {r['self_cosine_p5']:.3f} / {r['self_cosine_median']:.3f}",
         f"{r['ukbench_ns']:.3f}", f"{r['holidays_map']:.2f}"]
        for r in rows
    ]  # fmt: skip
    print(common.markdown_table(headers, table))
    print(f"wrote {common.shown(common.write_json(args.out, {'rows': rows}))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
