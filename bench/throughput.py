"""End-to-end speed: bytes in, vector out, through ``Engine.embed``; decode-only; model-only; server.

    .venv/bin/python bench/throughput.py                 # both models, threads 1 and 2
    .venv/bin/python bench/throughput.py --server        # + requests/s of POST /image_similarity (uvicorn)

Inputs are synthetic (noise + gradients, made with Pillow in memory): 640x480, 1920x1080 and
4096x3072 JPEG (q90) and a 1920x1080 PNG. Each figure is the median of timed rounds lasting at
least --seconds. Results: bench/results/throughput.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import statistics
import subprocess
import sys
import time
from functools import partial

import numpy as np
from PIL import Image

import common

BATCH = 16
INPUTS = (("640x480", "JPEG"), ("1920x1080", "JPEG"), ("4096x3072", "JPEG"), ("1920x1080", "PNG"))


def synthetic_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like test card: smooth colour gradients, blotches at several scales, fine grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            255 * x / width,
            255 * y / height,
            127.5 + 127.5 * np.sin((x + y) / max(width, height) * 6.0),
        ],
        axis=-1,
    )
    for cells, amplitude in ((8, 60.0), (48, 25.0)):
        coarse = rng.uniform(-amplitude, amplitude, (cells * height // width + 1, cells, 3)).astype(np.float32)
        channels = [
            np.asarray(Image.fromarray(coarse[..., c], "F").resize((width, height), Image.Resampling.BICUBIC))
            for c in range(3)
        ]
        base += np.stack(channels, axis=-1)
    base += 4.0 * rng.standard_normal(base.shape, dtype=np.float32)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def make_inputs() -> dict[str, bytes]:
    out = {}
    for i, (size, fmt) in enumerate(INPUTS):
        w, h = (int(v) for v in size.split("x"))
        im = synthetic_image(w, h, seed=i)
        out[f"{size} {fmt}"] = common.jpeg_bytes(im, 90) if fmt == "JPEG" else common.png_bytes(im)
    return out


def timed(fn, items_per_call: int, seconds: float, min_rounds: int = 3, best: bool = False) -> float:
    """Median (``best``: highest) items/s over rounds of ``fn`` repeated for ``seconds / (2 * min_rounds)``."""
    fn()  # warm-up
    rates = []
    deadline = time.perf_counter() + seconds
    while len(rates) < min_rounds or time.perf_counter() < deadline:
        start, calls = time.perf_counter(), 0
        while True:
            fn()
            calls += 1
            if time.perf_counter() - start >= seconds / (min_rounds * 2):
                break
        rates.append(calls * items_per_call / (time.perf_counter() - start))
        if len(rates) >= 50:
            break
    return max(rates) if best else statistics.median(rates)


# --------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_available() -> str | None:
    """None when ``lookalike.api.app:create_app`` can be imported, else why not."""
    try:
        from lookalike.api import app as app_module
    except Exception as exc:  # still being written, or broken
        return f"lookalike.api.app cannot be imported ({type(exc).__name__}: {exc})"
    if not callable(getattr(app_module, "create_app", None)):
        return "lookalike.api.app has no create_app()"
    return None


def bench_server(model: str, requests: int, concurrency: int, threads: int) -> dict | None:
    import httpx

    port = _free_port()
    env = {**os.environ, "LOOKALIKE_MODEL": model, "LOOKALIKE_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory", "lookalike.api.app:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    log = open(common.RESULTS_DIR / f"server-{model}.log", "w")
    proc = subprocess.Popen(cmd, cwd=common.REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                print(f"server exited with {proc.returncode}; see {log.name}")
                return None
            try:
                httpx.get(base + "/", timeout=2.0)
                break
            except httpx.TransportError:
                if time.time() > deadline:
                    print("server did not start within 120 s; skipping")
                    return None
                time.sleep(0.5)
        out = {}
        for size in ("640x480", "1920x1080"):
            a = synthetic_image(*(int(v) for v in size.split("x")), seed=10)
            b = synthetic_image(*(int(v) for v in size.split("x")), seed=11)
            payload = {
                "img_1": base64.b64encode(common.jpeg_bytes(a, 90)).decode(),
                "img_2": base64.b64encode(common.jpeg_bytes(b, 90)).decode(),
            }
            r = asyncio.run(common.hammer(base + "/image_similarity", [payload] * requests, concurrency))
            out[f"{size} JPEG pair"] = r
            print(
                f"server {model:<11} {size:<10} {r['requests_per_s']:6.1f} req/s  "
                f"p50 {r['latency_ms_p50']:.0f} ms  p95 {r['latency_ms_p95']:.0f} ms  statuses {r['statuses']}",
                flush=True,
            )
            if "first_error" in r:
                print(f"  first non-200 body: {r['first_error']}")
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(common.MODELS))
    parser.add_argument("--threads", default="1,2", help="engine thread counts to try (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default: %(default)s)")
    parser.add_argument("--server", action="store_true", help="also measure POST /image_similarity through uvicorn")
    parser.add_argument("--requests", type=int, default=200, help="server requests per input size")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="first wait up to S seconds for the 1-minute load average to fall below 0.5",
    )
    parser.add_argument("--out", default="throughput.json", help="file name under bench/results/")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]

    deadline = time.time() + args.wait_quiet
    while os.getloadavg()[0] >= 0.5 and time.time() < deadline:
        time.sleep(5)
    if os.getloadavg()[0] >= 0.5:
        print(
            f"warning: load average {os.getloadavg()[0]:.2f} before starting: other processes share the "
            f"{os.cpu_count()} cores, so these figures are low (threads=2 most of all)"
        )

    inputs = make_inputs()
    sizes = {k: len(v) for k, v in inputs.items()}
    print("inputs: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()))
    results: dict = {
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "inputs_bytes": sizes,
        "batch": BATCH,
        "end_to_end": [],
        "decode": [],
        "model": [],
        "server": {},
    }

    # Decode + resize only (one image at a time, the calling thread): independent of model and threads.
    engine = common.make_engine(1)
    for name, data in inputs.items():
        rate = timed(partial(engine.pixels, data, model="sscd"), 1, args.seconds)
        results["decode"].append({"input": name, "ms": 1000 / rate})
        print(f"decode+resize {name:<15} {1000 / rate:7.2f} ms", flush=True)

    for threads in thread_counts:
        engine = common.make_engine(threads)
        for model in models:
            embedder = engine.embedder(model)
            pixels = np.stack([engine.pixels(inputs["640x480 JPEG"], model=model)] * BATCH)
            for batch in (1, BATCH):
                rate = timed(partial(embedder.embed, pixels[:batch]), batch, args.seconds)
                results["model"].append({"model": model, "threads": threads, "batch": batch, "ms": 1000 / rate})
                print(f"model {model:<11} threads={threads} batch={batch:<3} {1000 / rate:7.2f} ms/image", flush=True)
            for name, data in inputs.items():
                single = timed(partial(engine.embed, [data], model=model), 1, args.seconds)
                batched = timed(partial(engine.embed, [data] * BATCH, model=model), BATCH, args.seconds)
                results["end_to_end"].append(
                    {
                        "model": model,
                        "threads": threads,
                        "input": name,
                        "single_per_s": single,
                        "batched_per_s": batched,
                        "loadavg_1min": round(os.getloadavg()[0], 2),
                    }
                )
                print(
                    f"embed {model:<11} threads={threads} {name:<15} single {single:6.1f} img/s  batched "
                    f"{batched:6.1f} img/s",
                    flush=True,
                )

    if args.server:
        why = server_available()
        if why:
            print(f"server benchmark skipped: {why}")
            results["server"] = {"skipped": why}
        else:
            common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            for model in models:
                r = bench_server(model, args.requests, args.concurrency, 0)
                results["server"][model] = r if r is not None else {"skipped": "server failed to start"}

    print("\nEnd to end, images/s (Engine.embed: bytes in, unit vector out)\n")
    headers = ["model", "threads"] + [f"{n} single" for n in inputs] + [f"{n} batch {BATCH}" for n in inputs]
    rows = []
    for model in models:
        for threads in thread_counts:
            cells = {r["input"]: r for r in results["end_to_end"] if r["model"] == model and r["threads"] == threads}
            rows.append(
                [model, threads]
                + [f"{cells[n]['single_per_s']:.1f}" for n in inputs]
                + [f"{cells[n]['batched_per_s']:.1f}" for n in inputs]
            )
    print(common.markdown_table(headers, rows))
    print("\nDecode + resize only, ms per image (Engine.pixels, one thread)\n")
    print(
        common.markdown_table(
            ["input", "bytes", "ms"], [[r["input"], sizes[r["input"]], f"{r['ms']:.2f}"] for r in results["decode"]]
        )
    )
    print("\nModel only, ms per image (one 640x480 JPEG's pixels at the default input geometry, vector out)\n")
    rows = []
    for model in models:
        for threads in thread_counts:
            cell = {r["batch"]: r["ms"] for r in results["model"] if r["model"] == model and r["threads"] == threads}
            rows.append([model, threads, f"{cell[1]:.2f}", f"{cell[BATCH]:.2f}"])
    print(common.markdown_table(["model", "threads", "batch 1", f"batch {BATCH}"], rows))
    if args.server:
        print(f"\nServer: POST /image_similarity, {args.requests} requests, concurrency {args.concurrency}\n")
        rows = []
        for model, r in results["server"].items():
            if not isinstance(r, dict) or "skipped" in r:
                continue
            for name, x in r.items():
                rows.append(
                    [
                        model,
                        name,
                        f"{x['requests_per_s']:.1f}",
                        f"{x['latency_ms_p50']:.0f}",
                        f"{x['latency_ms_p95']:.0f}",
                        x["statuses"],
                    ]
                )
        if rows:
            print(common.markdown_table(["model", "input", "requests/s", "p50 ms", "p95 ms", "statuses"], rows))
        else:
            print(f"skipped: {results['server'].get('skipped', 'no result')}")

    path = common.write_json(args.out, {"argv": vars(args), **results})
    print(f"\nwrote {common.shown(path)}")


if __name__ == "__main__":
    main()
