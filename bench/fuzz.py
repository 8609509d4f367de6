"""Fuzzing at scale: the hostile corpus through every image route, then schemathesis on every
operation of the server's own OpenAPI, against one real server; the figure is the 5xx count
(must be 0) and whether the server is still healthy afterwards.

1. Hostile files (tests/hostile_files.py: a few hundred built in memory, plus ``--mutants``
   random mutations of the valid ones) to the 13 image-taking routes of the test
   (tests/test_hostile_files.py) plus 3 more (the file in the second slot of AWS and PAI, and in
   the middle of a /v1/embed batch), ``--workers`` at a time. Every answer is checked as in the
   test: no 5xx / InternalError, a documented code with its documented status, valid pictures
   accepted. A gallery seeded before the run must hold exactly its pictures afterwards.
2. Schemathesis (tests/test_schemathesis.py): ``--examples`` positive and negative cases per
   operation, plus cases aimed at an existing group, from a random seed (printed, and kept in
   the results, so a run can be replayed with ``--seed``).
3. Health: /healthz, /readyz, a valid comparison, the seeded gallery; the server's log searched
   for tracebacks; its peak memory (VmHWM).

    .venv/bin/python bench/fuzz.py                       # sscd-small, 500 mutants, 300 examples
    .venv/bin/python bench/fuzz.py --model sscd --mutants 2000 --examples 300 --seed 1

Results: bench/results/fuzz.json (and the server's log, fuzz-server.log).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from common import RESULTS_DIR, markdown_table, shown, write_json
from hostile_files import corpus, mutants
from support import ServerProcess
from test_hostile_files import (
    EXTRA_ROUTES,
    ROUTES,
    SEEDS,
    check_gallery_after,
    check_health,
    run_corpus,
    seed_gallery,
    server_log_tracebacks,
)
from test_schemathesis import fuzz


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def metrics_5xx(client: httpx.Client) -> int:
    text = client.get("/metrics").text
    return int(
        sum(float(m.group(1)) for m in re.finditer(r'lookalike_requests_total\{[^}]*status="5\d\d"[^}]*\} (\S+)', text))
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sscd-small", help="the server's default model (decoding is the same)")
    parser.add_argument("--mutants", type=int, default=500, help="random mutations of the valid files, added")
    parser.add_argument("--examples", type=int, default=300, help="schemathesis examples per operation and pass")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None, help="mutations and schemathesis (default: random)")
    parser.add_argument("--keep-data", action="store_true", help="keep the server's data dir")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"seed {seed}, model {args.model}")

    items = corpus()
    extra = mutants(args.mutants, seed) if args.mutants else []
    routes = ROUTES + EXTRA_ROUTES
    data_dir = Path(tempfile.mkdtemp(prefix="lookalike-fuzz-")) / "data"
    server = ServerProcess(data_dir, {"LOOKALIKE_MODEL": args.model})
    started = time.perf_counter()
    base = server.start()
    problems: list[str] = []
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            seed_gallery(client)

        # 1. the hostile corpus (and its mutants) through every route
        print(f"hostile files: {len(items)} + {len(extra)} mutants, {len(routes)} routes, {args.workers} workers")
        run = run_corpus(base, items + extra, routes, workers=args.workers)
        problems += run.problems
        with httpx.Client(base_url=base, timeout=60) as client:
            gallery_problems = check_gallery_after(client, run)
        problems += gallery_problems
        latencies = sorted(o.seconds for o in run.outcomes)
        print(
            f"  {len(run.outcomes)} requests in {run.seconds:.1f} s, {run.server_errors} 5xx, "
            f"{len(run.problems)} answers not as documented, gallery {'intact' if not gallery_problems else 'DAMAGED'}"
        )

        # 2. schemathesis on every operation
        print(f"schemathesis: {args.examples} examples per operation and pass")
        st = fuzz(base, examples=args.examples, seed=seed)
        st_errors = st.server_errors
        print(f"  {len(st.records)} requests over {len(st.operations)} operations in {st.seconds:.1f} s, "
              f"{len(st_errors)} 5xx or hangs")
        for r in st_errors[:10]:
            print(f"    {r.operation} [{r.mode}] -> {r.status}: {r.curl[:300]}")

        # 3. health afterwards
        alive = server.proc is not None and server.proc.poll() is None
        with httpx.Client(base_url=base, timeout=60) as client:
            health = check_health(client) if alive else ["the server died"]
            seeds_left = None
            if alive:
                from test_hostile_files import gallery_pictures

                seeds_left = sorted(gallery_pictures(client))
                counted_5xx = metrics_5xx(client)
        log = server.log_dir / f"server-{server.port}-{server.starts}.log"
        tracebacks = server_log_tracebacks(log)
        rss = peak_rss_mb(server.proc.pid) if alive else None
    finally:
        server.stop()
    total = time.perf_counter() - started
    healthy = alive and not health and seeds_left == sorted(SEEDS)
    hostile_5xx = run.server_errors
    st_5xx = sum(1 for r in st.records if r.status >= 500 or r.failure.startswith("Tencent error"))
    st_hangs = sum(1 for r in st.records if r.status == 0)

    per_route = {route: dict(sorted(counts.items())) for route, counts in run.by_route().items()}
    rows = []
    for route in (r.name for r in routes):
        counts = run.by_route().get(route, Counter())
        ok = sum(n for k, n in counts.items() if k.endswith(" ok"))
        fivexx = sum(
            n
            for k, n in counts.items()
            if k[:1] == "5" or k.startswith("0 ") or "InternalError" in k or "InnerError" in k
        )
        top = ", ".join(f"{k.split(' ', 1)[1]} {n}" for k, n in counts.most_common(4) if not k.endswith(" ok"))
        rows.append((route, sum(counts.values()), ok, fivexx, top))
    print()
    print(markdown_table(["route", "requests", "accepted", "5xx", "most frequent refusals"], rows))
    st_rows = [
        (op, sum(c.values()), ", ".join(f"{s}: {n}" for s, n in sorted(c.items())))
        for op, c in st.by_operation().items()
    ]
    print()
    print(markdown_table(["operation", "requests", "statuses"], st_rows))
    print()
    print(
        f"requests sent: {len(run.outcomes) + len(st.records)} ({len(run.outcomes)} hostile files, {len(st.records)} "
        "schemathesis)"
    )
    print(
        f"5xx: {hostile_5xx} hostile, {st_5xx} schemathesis, {st_hangs} without an answer; /metrics counted "
        f"{counted_5xx if alive else '?'}"
    )
    print(f"server after: {'healthy' if healthy else 'NOT healthy'}; health checks {health or 'ok'}; "
          f"seeded gallery {seeds_left}; tracebacks in its log: {len(tracebacks)}; peak RSS {rss} MB")
    for p in problems[:20]:
        print("  problem:", p)

    payload = {
        "command": "python bench/fuzz.py " + " ".join(sys.argv[1:]),
        "seed": seed,
        "model": args.model,
        "seconds": round(total, 1),
        "hostile": {
            "files": len(items),
            "mutants": len(extra),
            "categories": dict(Counter(h.category for h in items + extra)),
            "routes": [r.name for r in routes],
            "requests": len(run.outcomes),
            "seconds": round(run.seconds, 1),
            "server_errors": hostile_5xx,
            "not_as_documented": len(run.problems),
            "problems": run.problems[:50],
            "gallery_problems": gallery_problems,
            "latency_s": {
                "p50": round(latencies[len(latencies) // 2], 4),
                "p99": round(latencies[int(len(latencies) * 0.99)], 4),
                "max": round(latencies[-1], 4),
            },
            "slowest": [
                (o.route, o.item.name, round(o.seconds, 3)) for o in sorted(run.outcomes, key=lambda o: -o.seconds)[:10]
            ],
            "per_route": per_route,
        },
        "schemathesis": {
            "examples": args.examples,
            "operations": st.operations,
            "added_to_the_document": st.added,
            "requests": len(st.records),
            "seconds": round(st.seconds, 1),
            "server_errors": st_5xx,
            "no_answer": st_hangs,
            "failures": [
                {"operation": r.operation, "mode": r.mode, "status": r.status, "failure": r.failure, "curl": r.curl}
                for r in st_errors[:50]
            ],
            "per_operation": {op: dict(sorted(c.items())) for op, c in st.by_operation().items()},
            "skipped": st.skipped,
            "generation_errors": st.errors,
        },
        "after": {
            "alive": alive,
            "healthy": healthy,
            "health_problems": health,
            "seeded_gallery": seeds_left,
            "metrics_5xx": counted_5xx if alive else None,
            "log_tracebacks": len(tracebacks),
            "log_traceback_tails": tracebacks[:10],
            "peak_rss_mb": rss,
        },
        "requests": len(run.outcomes) + len(st.records),
        "server_errors": hostile_5xx + st_5xx + st_hangs,
    }
    path = write_json("fuzz.json", payload)
    shutil.copy(log, RESULTS_DIR / "fuzz-server.log")
    print(f"results: {shown(path)}")
    if not args.keep_data:
        shutil.rmtree(data_dir.parent, ignore_errors=True)
    return 0 if payload["server_errors"] == 0 and healthy and not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
