"""Shared by the bench scripts: evaluation sets, pipeline variants, embedding, metrics, output.

The evaluation sets are research-only and never live in the repository: they are read from
``../shared/eval`` (relative to the repository root) or from ``$LOOKALIKE_EVAL_DIR``, and a
script that needs them exits cleanly with a message when they are absent.
"""

from __future__ import annotations

import io
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
MODELS = ("sscd", "sscd-small")
SETS = ("ukbench1000", "holidays811")

if str(REPO_ROOT / "src") not in sys.path:  # run from a checkout without an install
    sys.path.append(str(REPO_ROOT / "src"))


# --------------------------------------------------------------------------- evaluation sets


def eval_dir() -> Path:
    env = os.environ.get("LOOKALIKE_EVAL_DIR")
    return Path(env).expanduser() if env else (REPO_ROOT / ".." / "shared" / "eval").resolve()


def require_eval_sets(names: Sequence[str]) -> Path:
    """The evaluation directory, or a clean exit (status 0) when a needed set is missing."""
    root = eval_dir()
    missing = [n for n in names if not (root / n / "groundtruth.json").is_file()]
    if missing:
        print(
            f"evaluation data not found: {', '.join(missing)} under {root} "
            "(set LOOKALIKE_EVAL_DIR to the folder holding ukbench1000/ and holidays811/); skipping"
        )
        raise SystemExit(0)
    return root


@dataclass
class EvalSet:
    name: str
    names: list[str]
    blobs: list[bytes]
    groups: np.ndarray
    """Group id per image (same object / scene = same id)."""
    queries: dict[int, list[int]] = field(default_factory=dict)
    """Query index -> indices of its relevant images (the query excluded)."""

    def __len__(self) -> int:
        return len(self.names)


def load_set(name: str, root: Path | None = None) -> EvalSet:
    root = root or eval_dir()
    folder = root / name
    truth = json.loads((folder / "groundtruth.json").read_text())
    names: list[str] = list(truth["images"])
    index = {n: i for i, n in enumerate(names)}
    blobs = [(folder / "images" / n).read_bytes() for n in names]
    groups = np.full(len(names), -1, dtype=np.int64)
    if "groups" in truth:  # UKBench: explicit groups of 4
        for gid, (_, members) in enumerate(sorted(truth["groups"].items(), key=lambda kv: int(kv[0]))):
            for m in members:
                groups[index[m]] = gid
    queries = {index[q]: [index[r] for r in rel] for q, rel in truth["queries"].items()}
    if "groups" not in truth:  # Holidays: a query and its relevant images form one group
        for gid, (q, rel) in enumerate(sorted(queries.items())):
            for i in (q, *rel):
                groups[i] = gid
    # Images in no group (Holidays distractors, if any) get singleton ids.
    next_id = int(groups.max()) + 1
    for i in np.flatnonzero(groups < 0):
        groups[i] = next_id
        next_id += 1
    return EvalSet(name, names, blobs, groups, queries)


# --------------------------------------------------------------------------- embedding


def make_engine(threads: int = 0, **overrides):
    from lookalike.config import Settings
    from lookalike.engine import Engine

    return Engine(Settings(threads=threads, **overrides))


def embed_all(engine, blobs: Sequence[bytes], model: str, *, batch: int = 32) -> tuple[np.ndarray, float]:
    """Unit index-side vectors (n, dim) through ``Engine.embed``, and the seconds it took."""
    start = time.perf_counter()
    out = [engine.embed(list(blobs[i : i + batch]), model=model) for i in range(0, len(blobs), batch)]
    return np.concatenate(out), time.perf_counter() - start


# --------------------------------------------------------------------------- metrics


def ns_score(vectors: np.ndarray, groups: np.ndarray) -> float:
    """UKBench N-S: for each image, how many of its group (itself included) are in its top 4; mean."""
    sims = vectors @ vectors.T
    top = np.argpartition(-sims, 3, axis=1)[:, :4]
    return float((groups[top] == groups[:, None]).sum(axis=1).mean())


def average_precision(ranked_relevant: np.ndarray, n_relevant: int) -> float:
    """Plain non-interpolated AP over a full ranking (``ranked_relevant``: bools, best first)."""
    if n_relevant == 0:
        return 0.0
    hits = np.flatnonzero(ranked_relevant)
    return float(np.sum(np.arange(1, len(hits) + 1) / (hits + 1)) / n_relevant)


def retrieval_map(vectors: np.ndarray, queries: dict[int, list[int]]) -> float:
    """mAP over ``queries``, each against every image with the query removed from its own ranking."""
    return float(np.mean(query_aps(vectors, queries)))


def query_aps(vectors: np.ndarray, queries: dict[int, list[int]]) -> np.ndarray:
    """AP of every query (in ``queries`` order), the query removed from its own ranking."""
    aps = []
    for q, relevant in queries.items():
        sims = vectors @ vectors[q]
        sims[q] = -np.inf
        order = np.argsort(-sims, kind="stable")[:-1]  # the query itself ranks last: drop it
        is_rel = np.zeros(len(vectors), dtype=bool)
        is_rel[relevant] = True
        aps.append(average_precision(is_rel[order], len(relevant)))
    return np.array(aps)


def paired_difference(new: np.ndarray, base: np.ndarray, *, rounds: int = 2000, seed: int = 0) -> dict:
    """Mean per-query difference ``new - base``, queries better/worse, and a 95% bootstrap interval."""
    diff = np.asarray(new, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    rng = np.random.default_rng(seed)
    boots = diff[rng.integers(0, len(diff), (rounds, len(diff)))].mean(axis=1)
    return {
        "mean": float(diff.mean()),
        "better": int(np.sum(diff > 1e-9)),
        "worse": int(np.sum(diff < -1e-9)),
        "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
    }


def pair_masks(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangle (i < j) masks of same-group and different-group pairs."""
    same = groups[:, None] == groups[None, :]
    upper = np.triu(np.ones_like(same, dtype=bool), k=1)
    return same & upper, ~same & upper


def threshold_table(pos: np.ndarray, neg: np.ndarray, thresholds: Sequence[float]) -> list[dict]:
    """Precision/recall/F1/false-positive rate of ``score >= t`` for each threshold."""
    pos, neg = np.sort(pos), np.sort(neg)
    rows = []
    for t in thresholds:
        tp = len(pos) - np.searchsorted(pos, t, side="left")
        fp = len(neg) - np.searchsorted(neg, t, side="left")
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / len(pos) if len(pos) else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {
                "threshold": round(float(t), 4),
                "precision": float(precision),
                "recall": float(recall),
                "f1": float(f1),
                "fpr": float(fp / len(neg)) if len(neg) else 0.0,
                "tp": int(tp),
                "fp": int(fp),
            }
        )
    return rows


# --------------------------------------------------------------------------- output


async def hammer(url: str, bodies: list[dict], concurrency: int) -> dict:
    """POST each JSON body once from ``concurrency`` clients (after one warm-up round, which
    loads the models): requests/s, latency percentiles, status counts, the first error's body."""
    import asyncio

    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    first_error: list[str] = []
    queue = iter(bodies)

    async def worker(client: httpx.AsyncClient) -> None:
        for body in queue:
            start = time.perf_counter()
            response = await client.post(url, json=body)
            latencies.append(time.perf_counter() - start)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code != 200 and not first_error:
                first_error.append(response.text[:300])

    async with httpx.AsyncClient(timeout=120.0) as client:
        for body in bodies[:concurrency]:
            await client.post(url, json=body)
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "requests": len(bodies),
        "concurrency": concurrency,
        "requests_per_s": len(bodies) / elapsed,
        "latency_ms_p50": float(np.percentile(lat, 50)),
        "latency_ms_p95": float(np.percentile(lat, 95)),
        "statuses": {str(k): v for k, v in statuses.items()},
        **({"first_error": first_error[0]} if first_error else {}),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The flags that decide int8 speed (``grep -o 'avx512[a-z_]*\\|avx_vnni\\|avx2' /proc/cpuinfo``):
    SSCD's int8 graph runs about 3x faster with VNNI (avx512_vnni or avx_vnni) than on AVX2 alone."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return sorted(w for w in words if w == "avx2" or w == "avx_vnni" or w.startswith("avx512"))


def machine() -> dict:
    import onnxruntime
    import PIL

    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    payload = {"machine": machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def shown(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside it."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def unit_mixture(n: int, seed: int, *, centres: int, centres_seed: int, dim: int = 512) -> np.ndarray:
    """Unit vectors around ``centres`` random centres, the noise of the centre's norm (seeded):
    synthetic embeddings with cluster structure, for the vector-store benchmarks."""
    middle = np.random.default_rng(centres_seed).standard_normal((centres, dim)).astype(np.float32)
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 50_000):
        m = min(50_000, n - s)
        x = middle[rng.integers(0, centres, m)] + rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out
