"""Vector search benchmark: the embedded store with 100k-1M synthetic 512-d unit vectors.

The vectors are clustered (Gaussian clouds around 1000 random centres), not uniform: uniform
random vectors in 512-d are all nearly orthogonal, which no real embedding is. Each size runs
in its own process, so its resident memory is its own.

    .venv/bin/python bench/search.py                         # 100k and 1M
    .venv/bin/python bench/search.py --sizes 100000 --crossover

Measures, per size: insert rate through ``SqliteStore.add_image`` (each a durable SQLite
transaction), the time the background HNSW index needs to catch up afterwards, search
latency p50/p99 without and with a tag filter (10% and 1% of the group), recall@10 against
exact search, exact brute force latency at that size, close/reopen time, resident memory
and disk size. ``--crossover`` times exact search against the HNSW index at small sizes.
Writes bench/results/search.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "src"))

import common
from lookalike.storage.ann import EXPANSION_SEARCH, AnnIndex  # noqa: E402
from lookalike.storage.base import GroupRecord, ImageRecord  # noqa: E402
from lookalike.storage.filters import Compare  # noqa: E402
from lookalike.storage.sqlite import EXACT_THRESHOLD, SqliteStore  # noqa: E402

DIM = 512
CLUSTERS = 1000
FILTERS = {
    "none": None,
    "10%": Compare("cat", "=", "c3"),
    "1%": Compare("bucket", "=", 7),
}


def tags_of(i: int) -> dict[str, object]:
    return {"cat": f"c{i % 10}", "bucket": (i * 7919) % 100}


def allowed(name: str, n: int) -> np.ndarray:
    i = np.arange(n)
    if name == "10%":
        return i[i % 10 == 3]
    if name == "1%":
        return i[(i * 7919) % 100 == 7]
    return i


def clustered(seed: int, n: int, dim: int = DIM) -> np.ndarray:
    """Unit vectors around CLUSTERS centres (noise of the same norm as the centre)."""
    return common.unit_mixture(n, seed, centres=CLUSTERS, centres_seed=12345, dim=dim)


def mem_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def exact_tops(x: np.ndarray, rows: np.ndarray, qs: np.ndarray, k: int = 10) -> list[set[str]]:
    """Ground truth: the exact top-k pic names of ``rows`` for every query (one BLAS gemm per
    block, computed before the timed searches so that it does not evict their caches)."""
    out: list[set[str]] = []
    for s in range(0, len(qs), 25):
        scores = np.zeros((len(qs[s : s + 25]), len(rows)), dtype=np.float32)
        for r in range(0, len(rows), 100_000):
            scores[:, r : r + 100_000] = qs[s : s + 25] @ x[rows[r : r + 100_000]].T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        out.extend({f"p{rows[i]}" for i in p} for p in part)
    return out


def self_found(store: SqliteStore, x: np.ndarray, n: int, sample: int) -> dict[str, object]:
    """Issue 18's reachability at this size: ``sample`` stored rows (evenly spread over the
    insert order), each searched through the store with its own vector, top 10; misses are rows
    not returned first with cosine 1 (to float rounding; the store re-scores exactly). The
    whole group is searched this way by bench/reachability.py at 100k; at 1M a sample."""
    rows = np.linspace(0, n - 1, min(sample, n)).astype(int)
    misses = 0
    began = time.perf_counter()
    for i in rows:
        hits = store.search("bench", x[i], limit=10)
        if not hits or hits[0].cosine < 1 - 1e-5 or not any(h.image.pic_name == f"p{i}" for h in hits):
            misses += 1
    log(f"n={n}: {misses} of {len(rows)} sampled rows not found first by their own vector")
    return {"self_sample": len(rows), "self_misses": misses, "self_search_s": time.perf_counter() - began}


def run_one(n: int, queries: int, workdir: Path, rebuild_max: int, sample: int) -> dict[str, object]:
    """One size, in this process (the parent runs each size in a fresh one)."""
    out: dict[str, object] = {"n": n}
    log(f"n={n}: generating data")
    x = clustered(1, n)
    qs = clustered(2, queries)
    base_rss = mem_mb()
    path = workdir / f"search-{n}"
    shutil.rmtree(path, ignore_errors=True)
    store = SqliteStore(path, dim=DIM)
    store.create_group(GroupRecord("bench", "bench"))
    log(f"n={n}: inserting")
    t0 = time.perf_counter()
    for i in range(n):
        store.add_image(ImageRecord("bench", f"e{i}", f"p{i}", tags=tags_of(i)), x[i], max_per_entity=5)
        if i and i % 100_000 == 0:
            log(f"  {i} inserted, {i / (time.perf_counter() - t0):.0f}/s")
    insert_s = time.perf_counter() - t0
    out["insert_per_s"] = n / insert_s
    log(f"n={n}: {n / insert_s:.0f} inserts/s; waiting for the index")
    t1 = time.perf_counter()
    store.wait_for_index()
    out["index_catchup_s"] = time.perf_counter() - t1
    out["index_total_s"] = time.perf_counter() - t0
    handle = store._handles["bench"]
    out["path"] = "hnsw" if handle.ann is not None else "exact"

    log(f"n={n}: searching")
    for name, where in FILTERS.items():
        truths = exact_tops(x, allowed(name, n), qs)
        store.search("bench", qs[0], limit=10, where=where)  # builds the filter's tag column once
        lat: list[float] = []
        found: list[set[str]] = []
        for q in qs:
            t = time.perf_counter()
            hits = store.search("bench", q, limit=10, where=where)
            lat.append(time.perf_counter() - t)
            found.append({h.image.pic_name for h in hits})
        recall = [len(f & t) / 10 for f, t in zip(found, truths, strict=True)]
        out[f"p50_ms_{name}"] = pct(lat, 50)
        out[f"p99_ms_{name}"] = pct(lat, 99)
        out[f"recall10_{name}"] = float(np.mean(recall))
    out["stranded"] = len(handle.stranded)
    out.update(self_found(store, x, n, sample))
    lat = []
    for q in qs[:50]:
        t = time.perf_counter()
        np.argpartition(-np.einsum("ij,j->i", x, q), 10)[:10]
        lat.append(time.perf_counter() - t)
    out["exact_bruteforce_p50_ms"] = pct(lat, 50)
    out["rss_mb"] = mem_mb() - base_rss
    out["rss_peak_mb"] = mem_mb("VmHWM")
    del x

    t = time.perf_counter()
    store.close()
    out["close_s"] = time.perf_counter() - t
    out["disk_mb"] = du_mb(path)
    out["index_file_mb"] = du_mb(path / "ann")
    t = time.perf_counter()
    store = SqliteStore(path, dim=DIM)
    store.search("bench", qs[0], limit=10)
    out["reopen_first_search_s"] = time.perf_counter() - t
    store.close()
    if n <= rebuild_max:
        for f in (path / "ann").glob("*"):
            f.unlink()
        t = time.perf_counter()
        store = SqliteStore(path, dim=DIM)
        store.search("bench", qs[0], limit=10)
        first = time.perf_counter() - t
        store.wait_for_index()
        out["rebuild_first_search_s"] = first
        out["rebuild_index_s"] = time.perf_counter() - t
        store.close()
    shutil.rmtree(path, ignore_errors=True)
    log(f"n={n}: done {json.dumps(out)}")
    return out


def crossover(sizes: list[int], queries: int = 100) -> list[dict[str, float]]:
    """Exact matrix-vector search against the HNSW index (with the store's exact re-scoring of
    its candidates), both single-query, at growing sizes of one index."""
    x = clustered(3, max(sizes))
    qs = clustered(4, queries)
    ann = AnnIndex(DIM)
    done = 0
    out = []
    for n in sizes:
        while done < n:
            step = min(1024, n - done)
            ann.add(np.arange(done, done + step), x[done : done + step])
            done += step
        ex, ap, rec = [], [], []
        for q in qs:
            t = time.perf_counter()
            top = np.argpartition(-np.einsum("ij,j->i", x[:n], q), 10)[:10]
            ex.append(time.perf_counter() - t)
            t = time.perf_counter()
            keys, _ = ann.search(q, EXPANSION_SEARCH)
            best = keys[np.argsort(-(x[keys] @ q))[:10]]
            ap.append(time.perf_counter() - t)
            rec.append(len(set(best.tolist()) & set(top.tolist())) / 10)
        row = {"n": n, "exact_p50_ms": pct(ex, 50), "hnsw_p50_ms": pct(ap, 50), "hnsw_recall10": float(np.mean(rec))}
        log(f"crossover {row}")
        out.append(row)
    return out


def table(results: list[dict[str, object]]) -> str:
    head = (
        "| vectors | insert/s | index catch-up s | p50 / p99 ms | p50 / p99 ms, filter 10% | p50 / p99 ms, filter 1% "
        "| recall@10 (none / 10% / 1%) | own vector not first | stranded | exact brute force p50 ms "
        "| reopen to first hit s | RSS MB | disk MB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        lines.append(
            f"| {r['n']:,} | {r['insert_per_s']:,.0f} | {r['index_catchup_s']:.0f} "
            f"| {r['p50_ms_none']:.2f} / {r['p99_ms_none']:.2f} | {r['p50_ms_10%']:.2f} / {r['p99_ms_10%']:.2f} "
            f"| {r['p50_ms_1%']:.2f} / {r['p99_ms_1%']:.2f} "
            f"| {r['recall10_none']:.3f} / {r['recall10_10%']:.3f} / {r['recall10_1%']:.3f} "
            f"| {r.get('self_misses', '-')} of {r.get('self_sample', '-')} | {r.get('stranded', '-')} "
            f"| {r['exact_bruteforce_p50_ms']:.1f} | {r['reopen_first_search_s']:.1f} | {r['rss_mb']:,.0f} "
            f"| {r['disk_mb']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated group sizes")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-bench")
    ap.add_argument(
        "--rebuild-max", type=int, default=200_000, help="time a rebuild without index file up to this size"
    )
    ap.add_argument("--self-sample", type=int, default=20_000, help="rows searched by their own vector per size")
    ap.add_argument("--crossover", action="store_true", help="also time exact vs HNSW at 1k-100k")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "search.json")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--one-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        res = run_one(args.one, args.queries, args.workdir, args.rebuild_max, args.self_sample)
        args.one_out.write_text(json.dumps(res))
        return
    results: list[dict[str, object]] = []
    for n in [int(s) for s in args.sizes.split(",") if s]:
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            cmd = [sys.executable, __file__, "--one", str(n), "--one-out", tmp.name, "--queries", str(args.queries)]
            cmd += ["--workdir", str(args.workdir), "--rebuild-max", str(args.rebuild_max)]
            cmd += ["--self-sample", str(args.self_sample)]
            subprocess.run(cmd, check=True)
            results.append(json.loads(Path(tmp.name).read_text()))
    cross = crossover([1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000]) if args.crossover else None
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_end": os.getloadavg(),
        },
        "params": {"dim": DIM, "clusters": CLUSTERS, "queries": args.queries, "exact_threshold": EXACT_THRESHOLD},
        "sizes": results,
        "crossover": cross,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists():  # keep what an earlier run measured for other sizes
        old = json.loads(args.out.read_text())
        mine = {r["n"] for r in results}
        report["sizes"] = sorted(
            [r for r in old.get("sizes", []) if r["n"] not in mine] + results, key=lambda r: r["n"]
        )
        if cross is None:
            report["crossover"] = old.get("crossover")
    args.out.write_text(json.dumps(report, indent=2))
    print(table(report["sizes"]))  # type: ignore[arg-type]  # the report holds JSON values
    if report["crossover"]:
        print("\n| vectors | exact p50 ms | HNSW p50 ms | HNSW recall@10 |\n|---|---|---|---|")
        for r in report["crossover"]:  # type: ignore[union-attr]  # JSON values, as above
            print(f"| {r['n']:,} | {r['exact_p50_ms']:.2f} | {r['hnsw_p50_ms']:.2f} | {r['hnsw_recall10']:.3f} |")


if __name__ == "__main__":
    main()
