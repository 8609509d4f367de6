"""Retrieval quality through the gallery's own search path, lever by lever.

Every image of UKBench-1000 and Holidays-811 goes into a gallery (``GalleryService.add_images``:
safe decode, embedding, local features, durable SQLite write), then every image is a query
(``GalleryService.search``: decode, embedding, store search, geometric re-ranking, query
expansion, calibrated scores). Each configuration below switches the levers of issue 8 on one at
a time, ending at the shipped defaults; galleries are shared by the configurations that index
the same way. It reports:

* UKBench N-S (each image's top 4, itself included) and Holidays mAP (top 100, query removed);
* copy detection: edited copies (crops, re-encodes, flips, rotation, colour, overlay; built in
  memory from ``--copy-sources`` originals of each set) searched against their set's gallery:
  the share with the original first, and the share scoring >= 80 on it (PAI's "same image");
* search latency p50/p99, end to end per query (one image, the calling thread).

    .venv/bin/python bench/quality.py                          # every configuration, both sets
    .venv/bin/python bench/quality.py --configs baseline,default

Results: bench/results/quality.json (or --out). Skips cleanly (exit 0) when ../shared/eval is absent.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import common

SEARCH_LIMIT = 100
COPY_EDITS = ("jpeg30", "resize50", "crop80", "crop60", "hflip", "rotate", "color", "overlay")
LEGACY = {
    "input_geometry": "stretch224",
    "index_flip": False,
    "local_features": 0,
    "rerank_depth": 0,
    "query_expansion": False,
}


@dataclass(frozen=True)
class Config:
    name: str
    what: str
    settings: dict = field(default_factory=dict)

    @property
    def index_key(self) -> tuple:
        """Configurations with equal keys store the same vectors and features: one gallery."""
        s = self.settings
        return (s.get("input_geometry", "short288"), s.get("index_flip", True), s.get("local_features", 1000) > 0)


CONFIGS = [
    Config("baseline", "pre-0.2 pipeline: stretch to 224x224, plain cosine", dict(LEGACY)),
    Config("short288", "shorter side 288, aspect kept", {**LEGACY, "input_geometry": "short288"}),
    Config(
        "+flip",
        "and stored vectors average the mirror view",
        {**LEGACY, "input_geometry": "short288", "index_flip": True},
    ),
    Config("+verify", "and SIFT + RANSAC re-ranking of the top 20", {"query_expansion": False}),
    Config("+verify10", "the same, top 10 only", {"query_expansion": False, "rerank_depth": 10}),
    Config("default", "and query expansion with the best verified hit (shipped defaults)", {}),
    Config(
        "verify-all",
        "defaults, but every one of the top 20 verified (LOOKALIKE_VERIFY_FROM=-1: the earlier default)",
        {"verify_from": -1.0},
    ),
    Config(
        "fast-query",
        "query keypoints: 500 at 320 px (LOOKALIKE_QUERY_KEYPOINTS, _QUERY_FEATURE_SIDE)",
        {"query_keypoints": 500, "query_feature_side": 320},
    ),
]


def ingest(gallery, group: str, data: common.EvalSet, batch: int = 32) -> float:
    from lookalike.errors import LookalikeError
    from lookalike.gallery import NewImage

    gallery.create_group(group)
    news = [NewImage(Path(n).stem, n, b) for n, b in zip(data.names, data.blobs, strict=True)]
    start = time.perf_counter()
    for i in range(0, len(news), batch):
        refused = [r for r in gallery.add_images(group, news[i : i + batch]) if isinstance(r, LookalikeError)]
        if refused:
            raise SystemExit(f"{data.name}: {refused[0]}")
    return len(news) / (time.perf_counter() - start)


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def retrieval(gallery, group: str, data: common.EvalSet) -> dict:
    index = {n: i for i, n in enumerate(data.names)}
    rankings, seconds = [], []
    for blob in data.blobs:
        start = time.perf_counter()
        hits = gallery.search(group, blob, limit=SEARCH_LIMIT, min_cosine=-1.0)
        seconds.append(time.perf_counter() - start)
        rankings.append([index[h.image.pic_name] for h in hits])
    out: dict = {"latency": percentiles(seconds)}
    if data.name.startswith("ukbench"):
        top4 = np.array([(r + [-1] * 4)[:4] for r in rankings])
        same = (data.groups[np.where(top4 < 0, 0, top4)] == data.groups[:, None]) & (top4 >= 0)
        out["ns_score"] = round(float(same.sum(axis=1).mean()), 4)
    aps = []
    for q, relevant in data.queries.items():
        ranked = [i for i in rankings[q] if i != q]
        rel = set(relevant)
        aps.append(common.average_precision(np.array([i in rel for i in ranked], dtype=bool), len(relevant)))
    out["map"] = round(float(np.mean(aps)), 4)
    out["query_ap"] = [round(a, 5) for a in aps]
    return out


def make_copies(data: common.EvalSet, sources: int, seed: int = 0) -> list[tuple[int, str, bytes]]:
    """(original index, edit, edited bytes), in memory."""
    from calibrate import make_copy

    rng = random.Random(seed)
    picks = sorted(rng.sample(range(len(data)), min(sources, len(data))))
    return [(i, edit, make_copy(data.blobs[i], edit, rng)) for i in picks for edit in COPY_EDITS]


def copy_detection(gallery, group: str, data: common.EvalSet, copies) -> dict:
    per_edit: dict[str, list[tuple[bool, bool]]] = {}
    for original, edit, blob in copies:
        hits = gallery.search(group, blob, limit=5, min_cosine=-1.0)
        name = data.names[original]
        top = bool(hits) and hits[0].image.pic_name == name
        scored = next((h.score for h in hits if h.image.pic_name == name), 0)
        per_edit.setdefault(edit, []).append((top, scored >= 80))
    every = [x for v in per_edit.values() for x in v]
    return {
        "top1": round(float(np.mean([t for t, _ in every])), 4),
        "score80": round(float(np.mean([s for _, s in every])), 4),
        "by_edit": {
            e: {
                "top1": round(float(np.mean([t for t, _ in v])), 3),
                "score80": round(float(np.mean([s for _, s in v])), 3),
            }
            for e, v in per_edit.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(c.name for c in CONFIGS), help="comma-separated (default: all)")
    parser.add_argument("--sets", default=",".join(common.SETS))
    parser.add_argument("--model", default="sscd")
    parser.add_argument("--copy-sources", type=int, default=60, help="originals per set that get edited copies")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default="quality.json")
    args = parser.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    root = common.require_eval_sets(sets)
    wanted = [c for c in CONFIGS if c.name in args.configs.split(",")]

    from lookalike.config import Settings
    from lookalike.engine import Engine
    from lookalike.gallery import GalleryService
    from lookalike.storage import open_store

    data = {name: common.load_set(name, root) for name in sets}
    copies = {name: make_copies(data[name], args.copy_sources) for name in sets}
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="lookalike-quality-") as tmp:
        base = Settings(data_dir=Path(tmp) / "data", threads=args.threads, model=args.model, group_qps=False)
        store = open_store(base)
        ingested: dict[tuple, dict] = {}
        try:
            for config in wanted:
                gallery = GalleryService(store, Engine(base.model_copy(update=config.settings)))
                gallery.engine.embedder(args.model)  # load outside the timings
                row: dict = {"config": config.name, "what": config.what, "settings": config.settings}
                for name in sets:
                    group = f"q{abs(hash(config.index_key)) % 10**8}_{name}"
                    key = (config.index_key, name)
                    if key not in ingested:
                        ingested[key] = {"ingest_images_per_s": round(ingest(gallery, group, data[name]), 2)}
                    r = dict(ingested[key])
                    r.update(retrieval(gallery, group, data[name]))
                    r["copies"] = copy_detection(gallery, group, data[name], copies[name])
                    row[name] = r
                    metric = f"N-S {r['ns_score']:.3f}" if "ns_score" in r else f"mAP {100 * r['map']:.2f}"
                    print(
                        f"{config.name:<10} {name:<12} {metric}  copies top1 {r['copies']['top1']:.3f} "
                        f">=80 {r['copies']['score80']:.3f}  p50 {r['latency']['p50_ms']} ms  "
                        f"ingest {r['ingest_images_per_s']} img/s",
                        flush=True,
                    )
                results.append(row)
        finally:
            store.close()
    path = common.write_json(args.out, {"argv": vars(args), "machine": common.machine(), "results": results})
    print(f"wrote {path}")
    base_row = next((r for r in results if r["config"] == "baseline"), None)

    def latency(row):
        return float(np.mean([row[n]["latency"]["p50_ms"] for n in sets]))

    headers = [
        "config",
        "lever",
        "UKBench N-S",
        "Holidays mAP",
        "copies top-1",
        "copies >= 80",
        "search p50 ms",
        "vs baseline",
        "ingest img/s",
    ]
    rows = []
    for row in results:
        uk, ho = row.get("ukbench1000", {}), row.get("holidays811", {})
        parts = [x for x in (uk, ho) if x]
        rows.append(
            [
                row["config"],
                row["what"],
                f"{uk['ns_score']:.3f}" if uk else "-",
                f"{100 * ho['map']:.2f}" if ho else "-",
                f"{np.mean([x['copies']['top1'] for x in parts]):.3f}",
                f"{np.mean([x['copies']['score80'] for x in parts]):.3f}",
                f"{latency(row):.1f}",
                f"{latency(row) / latency(base_row):.2f}x" if base_row else "-",
                f"{np.mean([x['ingest_images_per_s'] for x in parts]):.1f}",
            ]
        )
    print(common.markdown_table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
