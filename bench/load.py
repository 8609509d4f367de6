"""Load: mixed compare / search / create traffic against a real server on loopback.

Starts ``python -m lookalike.cli serve`` on 127.0.0.1 with a fresh data dir and the default model,
seeds one gallery (native ``POST /v1/groups`` with ``max_qps`` 100000 so a per-group MaxQps does not
throttle the run), then drives it with a small closed-loop asyncio client (httpx) at a fixed
concurrency for a fixed time. The mix, by default:

* 40% compare, split evenly over AWS ``POST /image_similarity`` (``img_1``/``img_2``), PAI
  ``POST /api/predict/svc`` (``imagea``/``imageb``) and native ``POST /v1/compare`` (JSON base64);
* 40% search, split evenly over native ``POST /v1/groups/{g}/search`` and the Tencent dialect's
  ``SearchImage`` (``POST /`` with ``X-TC-Action``/``X-TC-Version: 2019-05-29``), limit 10;
* 20% create: native ``POST /v1/groups/{g}/images``, one picture, unique EntityId and PicName.

It reports requests/s (overall and per operation), p50/p95/p99 latency per operation, errors by
HTTP status and error code (a Tencent error is HTTP 200 with ``Response.Error``: counted too), the
server's RSS (``VmRSS`` of its process, sampled every second) at the start of the measured phase
(after a warm-up), its peak and end, and the pictures in the gallery against acknowledged creates.
Any error in the warm-up or measured phase (a 5xx above all), a transport error, or a gallery that
does not hold exactly the acknowledged creates fails the run (exit status 1).

``--overload`` adds a phase at a concurrency far above the server's model queue
(``LOOKALIKE_MODEL_CONCURRENCY`` + ``LOOKALIKE_MODEL_QUEUE``): excess requests should be shed at
once with ``ServerBusy`` (503; the Tencent dialect sends it as ``RequestLimitExceeded``) rather than
queued while memory grows. It reports the shed count and how fast sheds come back, the latency of
admitted requests, and RSS over the phase; then 20 s of the normal mix show the server recovered.
Sheds are expected there; a 5xx other than ServerBusy or a transport error still fails the run.

Every phase also reports the CPU cores the server, this client and other work on the machine used
(/proc), since these figures are only comparable on a quiet machine; ``--wait-quiet S`` waits for one.

    .venv/bin/python bench/load.py                          # 180 s at concurrency 8
    .venv/bin/python bench/load.py --quick                  # 20 s, for a smoke check
    .venv/bin/python bench/load.py --overload               # + the overload phase
    .venv/bin/python bench/load.py --overload --model-queue 8 --overload-concurrency 198

Pictures: ``../shared/eval`` (UKBench for the gallery, queries and pairs; Holidays for creates) when
present, read in place and never copied; else synthetic photos from tests/support.py.
Results: bench/results/load.json (and the server's log next to it, server-PORT-1.log).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

import common

sys.path.insert(0, str(common.REPO_ROOT / "tests"))
from support import ServerProcess, encode, synthetic_photo

GROUP = "load"
TC_VERSION = "2019-05-29"
OPS = ("compare_aws", "compare_pai", "compare_native", "search_native", "search_tencent", "create_native")


# --------------------------------------------------------------------------- the server


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (KiB) and Threads of a process, from /proc/<pid>/status; {} once it is gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores; /proc/stat, idle and iowait excluded)."""
    try:
        values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class RssSampler(threading.Thread):
    """Every ``interval`` seconds: the server's RSS and threads, and the CPU cores it used since the
    last sample next to those the whole machine used (the rest is this client and other work)."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.phase = "setup"
        self.samples: list[tuple[float, str, float, int, float, float]] = []
        """(t, phase, rss MB, threads, server cores, machine busy cores)"""
        self.t0 = time.monotonic()
        self._last = (self.t0, proc_cpu_s(pid), machine_busy_s())
        self._halt = threading.Event()

    def sample(self) -> tuple[float, int]:
        st = proc_status(self.pid)
        rss = st.get("VmRSS", 0) / 1024
        now, cpu, busy = time.monotonic(), proc_cpu_s(self.pid), machine_busy_s()
        dt = max(now - self._last[0], 1e-3)
        server_cores, machine_cores = (cpu - self._last[1]) / dt, (busy - self._last[2]) / dt
        self._last = (now, cpu, busy)
        self.samples.append((round(now - self.t0, 2), self.phase, round(rss, 1), st.get("Threads", 0),
                             round(server_cores, 2), round(machine_cores, 2)))  # fmt: skip
        return rss, st.get("Threads", 0)

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def of(self, phase: str) -> list[tuple]:
        return [s for s in self.samples if s[1] == phase]


# --------------------------------------------------------------------------- pictures


@dataclass
class Pictures:
    source: str
    seed: list[bytes]  # the gallery before the run
    queries: list[bytes]  # search queries and compare pairs
    creates: list[bytes]  # added during the run (cycled; PicNames stay unique)
    b64: dict[int, bytes] = field(default_factory=dict)

    def encoded(self, blob: bytes) -> bytes:
        key = id(blob)
        if key not in self.b64:
            self.b64[key] = base64.b64encode(blob)
        return self.b64[key]


def load_pictures(seed_count: int) -> Pictures:
    root = common.eval_dir()
    uk, ho = root / "ukbench1000" / "images", root / "holidays811" / "images"
    if uk.is_dir() and ho.is_dir():
        uk_files = sorted(uk.iterdir())
        ho_files = sorted(ho.iterdir())
        # UKBench holds 4 consecutive photos per object. The gallery gets 2 photos of each of the
        # first seed_count/2 objects; the queries are their other 2 photos (a match in the gallery)
        # and every photo of the remaining objects (none), so searches return hits and empty lists.
        if seed_count <= len(uk_files) // 2:
            objects = (seed_count + 1) // 2
            seed_files = [f for i, f in enumerate(uk_files[: 4 * objects]) if i % 4 < 2][:seed_count]
        else:
            seed_files = uk_files[:seed_count]
        chosen = set(seed_files)
        seed = [p.read_bytes() for p in seed_files]
        queries = [p.read_bytes() for p in uk_files if p not in chosen] or seed
        creates = [p.read_bytes() for p in ho_files]
        source = f"{root} (ukbench1000: gallery, queries, pairs; holidays811: creates)"
        return Pictures(source, seed, queries, creates)

    def jpeg(i: int) -> bytes:
        return encode(synthetic_photo(i, (512, 384)), quality=90)

    print(f"evaluation data not found under {root}: synthetic pictures", flush=True)
    seed = [jpeg(i) for i in range(seed_count)]
    queries = [jpeg(10_000 + i) for i in range(150)]
    creates = [jpeg(20_000 + i) for i in range(150)]
    return Pictures("synthetic (tests/support.py synthetic_photo, 512x384 JPEG q90)", seed, queries, creates)


# --------------------------------------------------------------------------- requests


@dataclass
class Result:
    op: str
    start: float
    seconds: float
    status: int  # HTTP status; 0 = no answer (transport error)
    code: str  # "" on success, else the error code (or the transport exception's name)
    hits: int = -1  # searches: results returned
    message: str = ""

    @property
    def shed(self) -> bool:
        """Refused by the model queue: ServerBusy, or the Tencent dialect's mapping of it
        (RequestLimitExceeded, which the SDK retries with back-off) told apart by its message."""
        return self.code == "ServerBusy" or (self.code == "RequestLimitExceeded" and "busy" in self.message)


def _error_of(op: str, status: int, body: object) -> tuple[str, str]:
    """(code, message) of an answer in any dialect; ("", "") when it is a success."""
    if not isinstance(body, dict):
        return ("", "") if status < 400 else (f"HTTP{status}", "")
    if op == "search_tencent":
        err = (body.get("Response") or {}).get("Error")
        if err:
            return str(err.get("Code")), str(err.get("Message", ""))
        return ("", "") if status < 400 else (f"HTTP{status}", "")
    if op == "compare_pai":
        if body.get("success") is True and status < 400:
            return "", ""
        return str(body.get("error_code") or f"HTTP{status}"), str(body.get("error_msg", ""))
    if status < 400:
        return "", ""
    if op == "compare_aws":
        return str(body.get("Code") or f"HTTP{status}"), str(body.get("Message", ""))
    err = body.get("error") or {}
    return str(err.get("code") or f"HTTP{status}"), str(err.get("message", ""))


class Workload:
    """Builds each operation's request from the pictures; one instance per run."""

    def __init__(self, pics: Pictures, weights: dict[str, float]) -> None:
        self.pics = pics
        self.ops = [op for op in OPS if weights.get(op, 0) > 0]
        self.weights = [weights[op] for op in self.ops]
        self.created = 0

    def request(self, op: str, rng: random.Random, worker: int) -> tuple[str, str, bytes, dict[str, str]]:
        """(method, path, body, headers)."""
        json_h = {"content-type": "application/json"}
        q = self.pics.queries
        if op.startswith("compare"):
            a, b = (self.pics.encoded(x) for x in rng.sample(q, 2))
            if op == "compare_aws":
                return "POST", "/image_similarity", b'{"img_1":"' + a + b'","img_2":"' + b + b'"}', json_h
            if op == "compare_pai":
                return "POST", "/api/predict/svc", b'{"imagea":"' + a + b'","imageb":"' + b + b'"}', json_h
            return "POST", "/v1/compare", b'{"a":{"base64":"' + a + b'"},"b":{"base64":"' + b + b'"}}', json_h
        if op == "search_native":
            img = self.pics.encoded(rng.choice(q))
            return "POST", f"/v1/groups/{GROUP}/search", b'{"image":{"base64":"' + img + b'"},"limit":10}', json_h
        if op == "search_tencent":
            img = self.pics.encoded(rng.choice(q))
            headers = {**json_h, "X-TC-Action": "SearchImage", "X-TC-Version": TC_VERSION}
            body = b'{"GroupId":"' + GROUP.encode() + b'","ImageBase64":"' + img + b'","Limit":10,"Filter":"batch<5"}'
            return "POST", "/", body, headers
        if op == "create_native":
            n = self.created
            self.created += 1
            img = self.pics.encoded(self.pics.creates[n % len(self.pics.creates)])
            meta = json.dumps({"entity_id": f"w{worker}-{n}", "pic_name": f"w{worker}-{n}.jpg",
                               "tags": {"batch": n % 10, "src": "load"}})  # fmt: skip
            body = meta[:-1].encode() + b',"image":{"base64":"' + img + b'"}}'
            return "POST", f"/v1/groups/{GROUP}/images", body, json_h
        raise ValueError(op)


async def one_request(client: httpx.AsyncClient, work: Workload, op: str, rng: random.Random, worker: int) -> Result:
    method, path, body, headers = work.request(op, rng, worker)
    t0 = time.perf_counter()
    try:
        resp = await client.request(method, path, content=body, headers=headers)
    except httpx.HTTPError as exc:
        cause = exc.__cause__ or exc.__context__
        detail = f"{exc!r}" + (f" <- {cause!r}" if cause is not None else "")
        return Result(op, t0, time.perf_counter() - t0, 0, type(exc).__name__, message=detail[:300])
    seconds = time.perf_counter() - t0
    try:
        data = resp.json()
    except ValueError:
        data = None
    code, message = _error_of(op, resp.status_code, data)
    hits = -1
    if not code and isinstance(data, dict):
        if op == "search_native":
            hits = len(data.get("results", []))
        elif op == "search_tencent":
            hits = len(data["Response"].get("ImageInfos", []))
    return Result(op, t0, seconds, resp.status_code, code, hits, message[:200])


async def drive(
    base_url: str, work: Workload, concurrency: int, seconds: float, seed: int, timeout: float
) -> tuple[list[Result], float, float]:
    """Closed loop: ``concurrency`` workers, each sends its next request when the last answers."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results: list[Result] = []
    start = time.perf_counter()
    deadline = start + seconds
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:

        async def worker(i: int) -> None:
            rng = random.Random(seed * 1000 + i)
            while time.perf_counter() < deadline:
                op = rng.choices(work.ops, work.weights)[0]
                results.append(await one_request(client, work, op, rng, i))

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return results, time.perf_counter() - start, start


# --------------------------------------------------------------------------- figures


def _pct(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.asarray(seconds) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1), "p99_ms": round(float(p99), 1),
            "max_ms": round(float(ms.max()), 1)}  # fmt: skip


def summarise(results: list[Result], wall_s: float, start: float) -> dict:
    per_op: dict[str, dict] = {}
    by_op: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_op[r.op].append(r)
    for op in OPS:
        rs = by_op.get(op, [])
        if not rs:
            continue
        ok = [r for r in rs if not r.code]
        row = {"requests": len(rs), "ok": len(ok), "req_per_s": round(len(rs) / wall_s, 2),
               "ok_per_s": round(len(ok) / wall_s, 2), **_pct([r.seconds for r in ok])}  # fmt: skip
        if op.startswith("search") and ok:
            row["with_hits"] = round(sum(r.hits > 0 for r in ok) / len(ok), 3)
        shed = [r for r in rs if r.shed]
        if shed:
            row["shed"] = len(shed)
        per_op[op] = row
    ok_all = [r for r in results if not r.code]
    errors = Counter(f"{r.status} {r.code}" for r in results if r.code)
    examples: dict[str, str] = {}
    for r in results:
        if r.code:
            examples.setdefault(f"{r.status} {r.code}", f"{r.op}: {r.message}")
    shed = [r for r in results if r.shed]
    return {
        "wall_s": round(wall_s, 2),
        "requests": len(results),
        "ok": len(ok_all),
        "req_per_s": round(len(results) / wall_s, 2),
        "ok_per_s": round(len(ok_all) / wall_s, 2),
        "latency_ok": _pct([r.seconds for r in ok_all]),
        "per_op": per_op,
        "errors": dict(errors.most_common()),
        "error_examples": examples,
        "error_count": sum(errors.values()),
        "server_errors_5xx": sum(1 for r in results if r.status >= 500 and not r.shed),
        "transport_errors": sum(1 for r in results if r.status == 0),
        "shed": len(shed),
        "shed_share": round(len(shed) / max(1, len(results)), 3),
        "shed_latency": _pct([r.seconds for r in shed]),
        "acknowledged_creates": sum(1 for r in results if r.op == "create_native" and r.status == 201),
        "uncertain_creates": sum(1 for r in results if r.op == "create_native" and r.status == 0),
        "transport_error_detail": [
            {"op": r.op, "sent_at_s": round(r.start - start, 2), "after_s": round(r.seconds, 2), "error": r.message}
            for r in results if r.status == 0
        ][:20],
    }


def rss_figures(samples: list[tuple], start_mb: float, end_mb: float) -> dict:
    rss = [s[2] for s in samples] or [start_mb]
    out = {"start_mb": round(start_mb, 1), "peak_mb": round(max(rss + [start_mb, end_mb]), 1),
           "end_mb": round(end_mb, 1), "growth_mb": round(end_mb - start_mb, 1), "samples": len(samples)}  # fmt: skip
    if len(samples) >= 10:
        t = np.array([s[0] for s in samples])
        slope = np.polyfit(t - t[0], np.array(rss), 1)[0]
        out["slope_mb_per_min"] = round(float(slope * 60), 2)
        half = len(samples) // 2
        out["second_half_growth_mb"] = round(samples[-1][2] - samples[half][2], 1)
    threads = [s[3] for s in samples]
    if threads:
        out["threads_start_end_max"] = [threads[0], threads[-1], max(threads)]
    return out


def gallery_count(base_url: str) -> dict:
    with httpx.Client(base_url=base_url, timeout=60) as c:
        group = c.get(f"/v1/groups/{GROUP}").json()
        listing = c.get(f"/v1/groups/{GROUP}/images", params={"offset": 0, "limit": 1}).json()
    return {"pic_count": group.get("pic_count"), "listed_total": listing.get("total")}


# --------------------------------------------------------------------------- the run


def seed_gallery(base_url: str, pics: Pictures, batch: int = 32) -> dict:
    with httpx.Client(base_url=base_url, timeout=300) as c:
        r = c.post("/v1/groups", json={"group_id": GROUP, "group_name": "load benchmark", "max_qps": 100000})
        if r.status_code != 201:
            raise SystemExit(f"creating the group failed: {r.status_code} {r.text[:500]}")
        t0 = time.perf_counter()
        created = 0
        for i in range(0, len(pics.seed), batch):
            items = [
                {"entity_id": f"seed-{j}", "pic_name": f"seed-{j}.jpg", "tags": {"batch": j % 10, "src": "seed"},
                 "image": {"base64": pics.encoded(blob).decode()}}
                for j, blob in enumerate(pics.seed[i : i + batch], start=i)
            ]  # fmt: skip
            r = c.post(f"/v1/groups/{GROUP}/images", json=items)
            if r.status_code not in (201, 207):
                raise SystemExit(f"seeding failed: {r.status_code} {r.text[:500]}")
            created += r.json()["created"]
        seconds = time.perf_counter() - t0
    return {"images": created, "seconds": round(seconds, 2), "images_per_s": round(created / seconds, 2)}


def server_limits(env: dict[str, str]) -> dict:
    """The model-queue settings the server runs with, when this checkout has them."""
    try:
        from lookalike.config import Settings

        fields = Settings.model_fields
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            s = Settings()
        finally:
            for k, val in saved.items():
                if val is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = val
        names = ("model_concurrency", "model_queue", "model_queue_timeout_s", "group_qps", "auth", "threads", "model")
        return {n: getattr(s, n) for n in names if n in fields}
    except Exception as exc:  # an older or half-edited checkout: report, do not fail
        return {"error": repr(exc)}


def run_phase(name: str, server: ServerProcess, sampler: RssSampler, work: Workload, concurrency: int, seconds: float,
              seed: int, timeout: float) -> dict:  # fmt: skip
    pid = server.proc.pid
    sampler.phase = name
    start_mb, _ = sampler.sample()
    cpu0, client0, busy0, load0 = proc_cpu_s(pid), time.process_time(), machine_busy_s(), os.getloadavg()[0]
    results, wall, started = asyncio.run(drive(server.base_url, work, concurrency, seconds, seed, timeout))
    end_mb, _ = sampler.sample()
    cpu1, client1, busy1 = proc_cpu_s(pid), time.process_time(), machine_busy_s()
    sampler.phase = "between"
    out = summarise(results, wall, started)
    out.update({
        "concurrency": concurrency,
        "duration_s": seconds,
        "rss": rss_figures(sampler.of(name), start_mb, end_mb),
        "server_cpu_s": round(cpu1 - cpu0, 1),
        "server_cpu_cores": round((cpu1 - cpu0) / wall, 2),
        "client_cpu_cores": round((client1 - client0) / wall, 2),
        "other_cpu_cores": round((busy1 - busy0 - (cpu1 - cpu0) - (client1 - client0)) / wall, 2),
        "loadavg_1m_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
    })  # fmt: skip
    return out


def print_phase(name: str, s: dict) -> None:
    print(f"\n== {name}: {s['requests']} requests in {s['wall_s']} s at concurrency {s['concurrency']}: "
          f"{s['req_per_s']} req/s ({s['ok_per_s']} ok/s); server {s['server_cpu_cores']} cores, "
          f"client {s['client_cpu_cores']}, other work {s['other_cpu_cores']} (of {os.cpu_count()}); "
          f"load average {s['loadavg_1m_start_end']}")  # fmt: skip
    headers = ["operation", "requests", "ok", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "shed"]
    rows = [[op, r["requests"], r["ok"], r["req_per_s"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"],
             r.get("shed", 0)]
            for op, r in s["per_op"].items()]  # fmt: skip
    lat = s["latency_ok"]
    rows.append(
        [
            "all (ok)",
            s["requests"],
            s["ok"],
            s["req_per_s"],
            lat["p50_ms"],
            lat["p95_ms"],
            lat["p99_ms"],
            lat["max_ms"],
            s["shed"],
        ]
    )
    print(common.markdown_table(headers, rows))
    print(f"errors: {s['error_count']} {s['errors'] or ''}; 5xx (other than ServerBusy): {s['server_errors_5xx']}; "
          f"transport: {s['transport_errors']}")  # fmt: skip
    for key, example in s["error_examples"].items():
        print(f"  {key}: e.g. {example}")
    for d in s["transport_error_detail"][:5]:
        print(f"  transport: {d['op']} sent at {d['sent_at_s']} s, failed after {d['after_s']} s: {d['error']}")
    hits = [f"{op} {r['with_hits']:.0%}" for op, r in s["per_op"].items() if "with_hits" in r]
    if hits:
        print("searches with at least one hit: " + ", ".join(hits))
    if s["shed"]:
        print(
            f"shed (ServerBusy): {s['shed']}, answered in p50 {s['shed_latency']['p50_ms']} ms / p99 "
            f"{s['shed_latency']['p99_ms']} ms"
        )
    r = s["rss"]
    print(f"server RSS: start {r['start_mb']} MB, peak {r['peak_mb']} MB, end {r['end_mb']} MB, "
          f"growth {r['growth_mb']:+} MB"
          + (f", slope {r['slope_mb_per_min']:+} MB/min" if "slope_mb_per_min" in r else "")
          + (f", threads {r['threads_start_end_max']}" if "threads_start_end_max" in r else ""))  # fmt: skip


def parse_mix(text: str) -> dict[str, float]:
    """``compare=40,search=40,create=20`` (groups split evenly over their dialects) or per op."""
    groups = {"compare": OPS[:3], "search": OPS[3:5], "create": OPS[5:]}
    weights: dict[str, float] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        members = groups.get(key, (key,) if key in OPS else None)
        if members is None:
            raise SystemExit(f"unknown operation {key!r} in --mix; use {', '.join([*groups, *OPS])}")
        for op in members:
            weights[op] = weights.get(op, 0.0) + float(value) / len(members)
    return weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=180.0, help="measured seconds (default 180)")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds of the same mix before measuring")
    parser.add_argument("--quick", action="store_true", help="20 s measured, 5 s warm-up, 15 s overload")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--mix", default="compare=40,search=40,create=20")
    parser.add_argument("--seed-images", type=int, default=300, help="pictures in the gallery before the run")
    parser.add_argument("--model", default=None, help="LOOKALIKE_MODEL for the server (default: its default)")
    parser.add_argument("--threads", type=int, default=None, help="LOOKALIKE_THREADS for the server")
    parser.add_argument("--timeout", type=float, default=120.0, help="client time-out per request, seconds")
    parser.add_argument("--overload", action="store_true", help="add a phase far above the model queue")
    parser.add_argument("--overload-concurrency", type=int, default=0,
                        help="default: 3 x (model concurrency + queue), at least 64")  # fmt: skip
    parser.add_argument("--overload-duration", type=float, default=60.0)
    parser.add_argument("--overload-mix", default="compare=50,search=50", help="model-bound requests only by default")
    parser.add_argument(
        "--model-concurrency", type=int, default=None, help="LOOKALIKE_MODEL_CONCURRENCY for the server"
    )
    parser.add_argument("--model-queue", type=int, default=None, help="LOOKALIKE_MODEL_QUEUE for the server")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                        help="first wait up to S seconds for the 1-minute load average to fall below 1")  # fmt: skip
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", default="load.json")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.overload_duration = 20.0, 5.0, 15.0

    env: dict[str, str] = {}
    for name, value in (("MODEL", args.model), ("THREADS", args.threads), ("MODEL_CONCURRENCY", args.model_concurrency),
                        ("MODEL_QUEUE", args.model_queue)):  # fmt: skip
        if value is not None:
            env[f"LOOKALIKE_{name}"] = str(value)
    limits = server_limits(env)
    if args.overload and args.overload_concurrency <= 0:
        queue = limits.get("model_concurrency", 0) + limits.get("model_queue", 0) if "model_queue" in limits else 0
        args.overload_concurrency = max(64, 3 * queue)

    deadline = time.time() + args.wait_quiet
    while os.getloadavg()[0] >= 1.0 and time.time() < deadline:
        time.sleep(5)
    load_at_start = os.getloadavg()
    if load_at_start[0] >= 1.0:
        print(f"warning: load average {load_at_start[0]:.2f} before starting: other work shares the {os.cpu_count()} "
              "cores, so throughput and latency come out pessimistic (see other_cpu_cores per phase)")  # fmt: skip

    pics = load_pictures(args.seed_images)
    mix = parse_mix(args.mix)
    print(
        f"pictures: {pics.source}; gallery {len(pics.seed)}, queries {len(pics.queries)}, creates {len(pics.creates)}"
    )
    print(f"server settings: {limits}; env {env or '{}'}", flush=True)

    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload: dict = {
        "argv": vars(args), "loadavg_at_start": [round(x, 2) for x in load_at_start], "mix": mix,
        "pictures": pics.source, "server_env": env, "server_settings": limits,
    }  # fmt: skip
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=common.REPO_ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=common.REPO_ROOT, capture_output=True, text=True
        )
        payload["git"] = {"head": head.stdout.strip(), "src_uncommitted_files": len(dirty.stdout.splitlines())}
    except OSError:
        pass

    failures: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-load-"))
    # Threads as the server's own default (all cores), not the test suite's 2, unless --threads.
    server = ServerProcess(tmp / "data", {"LOOKALIKE_THREADS": "0", **env}, log_dir=common.RESULTS_DIR)
    sampler: RssSampler | None = None
    try:
        t0 = time.perf_counter()
        server.start(timeout=180)
        payload["server_start_s"] = round(time.perf_counter() - t0, 2)
        sampler = RssSampler(server.proc.pid)
        sampler.start()
        payload["rss_after_start_mb"] = round(sampler.sample()[0], 1)
        payload["seed"] = seed_gallery(server.base_url, pics)
        payload["rss_after_seed_mb"] = round(sampler.sample()[0], 1)
        print(f"server ready in {payload['server_start_s']} s (RSS {payload['rss_after_start_mb']} MB); "
              f"seeded {payload['seed']['images']} pictures at {payload['seed']['images_per_s']}/s "
              f"(RSS {payload['rss_after_seed_mb']} MB)", flush=True)  # fmt: skip

        work = Workload(pics, mix)
        phases: dict[str, dict] = {}
        if args.warmup > 0:
            print(f"warm-up {args.warmup:g} s ...", flush=True)
            phases["warmup"] = run_phase(
                "warmup", server, sampler, work, args.concurrency, args.warmup, args.seed, args.timeout
            )
        print(f"measuring {args.duration:g} s at concurrency {args.concurrency} ...", flush=True)
        phases["main"] = run_phase(
            "main", server, sampler, work, args.concurrency, args.duration, args.seed + 1, args.timeout
        )
        print_phase("main", phases["main"])

        acked = sum(p["acknowledged_creates"] for p in phases.values())
        uncertain = sum(p["uncertain_creates"] for p in phases.values())
        count = gallery_count(server.base_url)
        expected = payload["seed"]["images"] + acked
        payload["gallery_after_main"] = {
            **count,
            "expected": expected,
            "acknowledged_creates": acked,
            "uncertain_creates": uncertain,
        }
        print(f"gallery: {count['pic_count']} pictures (listed {count['listed_total']}); "
              f"seed {payload['seed']['images']} + acknowledged creates {acked} = {expected}"
              + (f"; {uncertain} creates without an answer" if uncertain else ""))  # fmt: skip
        if not (expected <= (count["pic_count"] or 0) <= expected + uncertain):
            failures.append(f"gallery holds {count['pic_count']} pictures, expected {expected} (+ up to {uncertain})")

        for name in ("warmup", "main"):
            p = phases.get(name)
            if p and p["error_count"]:
                failures.append(f"{name}: {p['error_count']} errors {p['errors']} (5xx: {p['server_errors_5xx']})")

        if args.overload:
            over_work = Workload(pics, parse_mix(args.overload_mix))
            over_work.created = work.created
            print(f"\noverload {args.overload_duration:g} s at concurrency {args.overload_concurrency} "
                  f"(model concurrency {limits.get('model_concurrency', '?')}, queue "
                  f"{limits.get('model_queue', '?')}) ...",
                  flush=True)  # fmt: skip
            phases["overload"] = run_phase("overload", server, sampler, over_work, args.overload_concurrency,
                                           args.overload_duration, args.seed + 2, args.timeout)  # fmt: skip
            print_phase("overload", phases["overload"])
            # The server after the storm: answers normally again, and its memory comes back down.
            work.created = over_work.created
            sampler.phase = "cooldown"
            time.sleep(5)
            phases["recovery"] = run_phase("recovery", server, sampler, work, args.concurrency,
                                           min(20.0, args.duration), args.seed + 3, args.timeout)  # fmt: skip
            print_phase("recovery (normal load after the overload)", phases["recovery"])
            o = phases["overload"]
            if o["server_errors_5xx"] or o["transport_errors"]:
                failures.append(
                    f"overload: {o['server_errors_5xx']} 5xx other than ServerBusy, {o['transport_errors']} "
                    "transport errors"
                )
            rec = phases["recovery"]
            if rec["error_count"]:
                failures.append(
                    f"recovery: {rec['error_count']} errors {rec['errors']} (5xx: {rec['server_errors_5xx']})"
                )
            acked = sum(p["acknowledged_creates"] for p in phases.values())
            uncertain = sum(p["uncertain_creates"] for p in phases.values())
            count = gallery_count(server.base_url)
            expected = payload["seed"]["images"] + acked
            payload["gallery_after_all"] = {
                **count,
                "expected": expected,
                "acknowledged_creates": acked,
                "uncertain_creates": uncertain,
            }
            if not (expected <= (count["pic_count"] or 0) <= expected + uncertain):
                failures.append(f"after overload: gallery holds {count['pic_count']} pictures, expected {expected}")
        payload["phases"] = phases
        if not server.alive():
            failures.append(f"the server died (exit {server.proc.returncode})")
    finally:
        try:
            if sampler is not None:
                sampler.stop()
                payload["timeline_columns"] = [
                    "t_s",
                    "phase",
                    "rss_mb",
                    "threads",
                    "server_cores",
                    "machine_busy_cores",
                ]
                payload["timeline"] = [list(s) for s in sampler.samples]
            if server.alive():
                hwm = proc_status(server.proc.pid).get("VmHWM")
                payload["server_peak_rss_mb_vmhwm"] = round(hwm / 1024, 1) if hwm else None
        finally:
            server.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    payload["failures"] = failures
    path = common.write_json(args.out, payload)
    print(f"\nwrote {common.shown(path)} (server log: {common.shown(server.log_path) if server.log_path else '-'})")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("ok: no 5xx, no transport errors, every acknowledged create is in the gallery")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
