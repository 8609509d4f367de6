"""Gallery search end to end: ingest each evaluation set into a gallery, query every image back.

Unlike bench/quality.py (vectors and an exact cosine ranking in numpy), every step here is the
product's own path: ``GalleryService.add_images`` (safe decode, solid-colour check, thumbnail,
embedding, durable store write) and ``GalleryService.search`` (decode, embedding, store search,
calibrated scores). It reports:

* UKBench N-S: each image's top 4 from the gallery (itself included), how many share its object;
* Holidays mAP: each query's ranking (top 100, itself removed), as bench/common.py computes it;
* ingest images/s, and search latency p50/p99: end to end, and the store lookup alone.

    .venv/bin/python bench/gallery.py                         # sscd, both sets
    .venv/bin/python bench/gallery.py --models sscd,sscd-small

Results: bench/results/gallery.json. Skips cleanly (exit 0) when ../shared/eval is absent.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import common

SEARCH_LIMIT = 100


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2), "mean_ms": round(float(ms.mean()), 2)}


def run_set(gallery, data: common.EvalSet, model: str, batch: int) -> dict:
    from lookalike.errors import LookalikeError
    from lookalike.gallery import NewImage

    group = f"bench_{data.name}_{model.replace('-', '_')}"
    gallery.create_group(group, model=model)
    news = [NewImage(Path(name).stem, name, blob) for name, blob in zip(data.names, data.blobs)]
    start = time.perf_counter()
    refused = 0
    for i in range(0, len(news), batch):
        refused += sum(isinstance(r, LookalikeError) for r in gallery.add_images(group, news[i : i + batch]))
    ingest_s = time.perf_counter() - start
    if refused:
        raise SystemExit(f"{refused} images of {data.name} were refused")

    index = {name: i for i, name in enumerate(data.names)}
    record = gallery.get_group(group)
    rankings: list[list[int]] = []
    end_to_end: list[float] = []
    lookup: list[float] = []
    for blob in data.blobs:
        t0 = time.perf_counter()
        hits = gallery.search(group, blob, limit=SEARCH_LIMIT, min_cosine=-1.0)
        end_to_end.append(time.perf_counter() - t0)
        rankings.append([index[h.image.pic_name] for h in hits])
        vector = gallery.embed_query(record, blob)
        t1 = time.perf_counter()
        gallery.store.search(group, vector, limit=SEARCH_LIMIT, min_cosine=-1.0)
        lookup.append(time.perf_counter() - t1)

    out: dict = {
        "images": len(data),
        "ingest_images_per_s": round(len(data) / ingest_s, 2),
        "search_end_to_end": _percentiles(end_to_end),
        "search_store_lookup": _percentiles(lookup),
    }
    if data.name.startswith("ukbench"):
        top4 = np.array([r[:4] for r in rankings])
        out["ns_score"] = round(float((data.groups[top4] == data.groups[:, None]).sum(axis=1).mean()), 4)
    aps = []
    for q, relevant in data.queries.items():
        ranked = [i for i in rankings[q] if i != q]
        is_rel = np.zeros(len(ranked), dtype=bool)
        rel = set(relevant)
        is_rel[[k for k, i in enumerate(ranked) if i in rel]] = True
        aps.append(common.average_precision(is_rel, len(relevant)))
    out["map"] = round(float(np.mean(aps)), 4)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sscd", help="comma-separated: sscd, sscd-small")
    parser.add_argument("--sets", default=",".join(common.SETS))
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32, help="images per add_images call")
    parser.add_argument("--out", default="gallery.json")
    args = parser.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    root = common.require_eval_sets(sets)

    from lookalike.config import Settings
    from lookalike.engine import Engine
    from lookalike.gallery import GalleryService
    from lookalike.index import open_store

    results = []
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", threads=args.threads)
        gallery = GalleryService(open_store(settings), Engine(settings))
        try:
            for model in [m for m in args.models.split(",") if m]:
                gallery.engine.embedder(model)  # load outside the timings
                row: dict = {"model": model}
                for name in sets:
                    data = common.load_set(name, root)
                    row[name] = run_set(gallery, data, model, args.batch)
                    print(f"{model} {name}: {row[name]}", flush=True)
                results.append(row)
        finally:
            gallery.close()
    path = common.write_json(args.out, {"argv": vars(args), "search_limit": SEARCH_LIMIT, "results": results})
    print(f"wrote {path}")
    headers = ["model", "UKBench N-S", "Holidays mAP", "ingest img/s", "search p50 ms", "search p99 ms", "lookup p50 ms", "lookup p99 ms"]
    rows = []
    for row in results:
        uk, ho = row.get("ukbench1000", {}), row.get("holidays811", {})
        latency = (ho or uk)["search_end_to_end"]
        lookup = (ho or uk)["search_store_lookup"]
        ingest = np.mean([r["ingest_images_per_s"] for r in (uk, ho) if r])
        rows.append([row["model"], uk.get("ns_score", "-"), ho.get("map", "-"), round(float(ingest), 1),
                     latency["p50_ms"], latency["p99_ms"], lookup["p50_ms"], lookup["p99_ms"]])
    print(common.markdown_table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
