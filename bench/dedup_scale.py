"""``lookalike dedup`` on 100k images: time and peak memory, cold and with a warm cache.

The folder is synthetic transforms of the 1,811 photos in ../shared/eval (UKBench-1000 and
Holidays-811), written outside the repository (default ``~/.cache/lookalike/bench-data/
scale-<n>-seed<seed>``): each photo becomes a family of about n/1811 files, the photo itself
(longest side 320) plus random copies: crops, flips, small rotations, resizes, re-encodes at
other JPEG qualities, brightness and colour changes, a few PNG re-encodes (same pixels) and byte
copies. A true duplicate pair is two files of one family, so precision and recall come out too.

Runs, each ``lookalike dedup DIR --level near --format json`` in its own process (peak RSS of
that process via ``wait4``):

1. cold: an empty data dir, every image embedded;
2. warm: the same folder again (digests and vectors from the cache: the cost after embedding);
3. warm on subsets of 10% and 30% of the folder (by sub-folder), for time and memory against n.

    .venv/bin/python bench/dedup_scale.py                 # 100,000 images (about 35 minutes on 2 cores)
    .venv/bin/python bench/dedup_scale.py --count 5000    # a quick run

Writes bench/results/dedup_scale.json and prints the table in docs/benchmarks.md ("Dedup at scale").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

import common

CACHE_ROOT = Path("~/.cache/lookalike/bench-data").expanduser()
PER_FOLDER = 1000
LONGEST_SIDE = 320
VERSION = 1


def _originals() -> list[Path]:
    root = common.require_eval_sets(["ukbench1000", "holidays811"])
    return sorted((root / "ukbench1000" / "images").iterdir()) + sorted((root / "holidays811" / "images").iterdir())


def _copy(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One random edit of ``image``."""
    kind = str(rng.choice(["crop", "flip", "rotate", "resize", "quality", "bright", "colour", "crop+quality"]))
    w, h = image.size
    if kind.startswith("crop"):
        f = rng.uniform(0.7, 0.95)
        cw, ch = int(w * f), int(h * f)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image = image.crop((x, y, x + cw, y + ch))
    elif kind == "flip":
        image = ImageOps.mirror(image)
    elif kind == "rotate":
        image = image.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BILINEAR)
    elif kind == "resize":
        f = rng.uniform(0.5, 0.9)
        image = image.resize((max(32, int(w * f)), max(32, int(h * f))), Image.Resampling.BILINEAR)
    elif kind == "bright":
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    elif kind == "colour":
        image = ImageEnhance.Color(image).enhance(rng.uniform(0.3, 1.6))
    return image


def _make_family(job: tuple[int, str, int, int, int, str]) -> dict[str, int]:
    """Writes one original's family, spread over the sub-folders; returns file name -> family id."""
    family, source, size, folders, seed, out = job
    rng = np.random.default_rng(seed * 1_000_003 + family)
    image = Image.open(source).convert("RGB")
    image.thumbnail((LONGEST_SIDE, LONGEST_SIDE), Image.Resampling.BILINEAR)
    files = {}
    for k in range(size):
        folder = Path(out) / f"{int(rng.integers(0, folders)):04d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{family:04d}-{k:03d}"
        if k == 0:
            path = folder / f"{name}.jpg"
            image.save(path, quality=90)
            first = path
        elif rng.random() < 0.03:  # a byte copy
            path = folder / f"{name}.jpg"
            shutil.copyfile(first, path)
        elif rng.random() < 0.03:  # the same pixels, another format
            path = folder / f"{name}.png"
            Image.open(first).save(path)
        else:
            path = folder / f"{name}.jpg"
            _copy(image, rng).save(path, quality=int(rng.integers(50, 95)))
        files[path.relative_to(out).as_posix()] = family
    return files


def build(count: int, seed: int, out: Path | None) -> tuple[Path, dict[str, int]]:
    originals = _originals()
    out = (out or CACHE_ROOT / f"scale-{count}-seed{seed}").expanduser().resolve()
    if common.REPO_ROOT.resolve() in (out, *out.parents):
        raise SystemExit(f"refusing to write derived evaluation images inside the repository: {out}")
    truth_path = out / "truth.json"
    params = {"count": count, "seed": seed, "version": VERSION}
    if truth_path.is_file():
        truth = json.loads(truth_path.read_text())
        if truth.get("params") == params:
            return out / "images", truth["files"]
    if out.exists():
        shutil.rmtree(out)
    per = [count // len(originals) + (1 if i < count % len(originals) else 0) for i in range(len(originals))]
    folders = max(1, count // PER_FOLDER)
    jobs = [
        (i, str(p), n, folders, seed, str(out / "images"))
        for i, (p, n) in enumerate(zip(originals, per, strict=True))
        if n
    ]
    files: dict[str, int] = {}
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for done, part in enumerate(pool.map(_make_family, jobs, chunksize=8), 1):
            files.update(part)
            if done % 200 == 0:
                print(
                    f"  {done}/{len(jobs)} families, {len(files):,} files, {time.perf_counter() - start:.0f} s",
                    file=sys.stderr,
                )
    truth_path.write_text(json.dumps({"params": params, "files": files}))
    return out / "images", files


def run_dedup(folder: Path, data_dir: Path, threads: int, model: str | None = None) -> dict:
    """``lookalike dedup`` in a child process: its report, wall time and peak RSS."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        report_path = Path(tmp.name)
    cmd = [sys.executable, "-m", "lookalike.cli", "dedup", str(folder), "--level", "near", "--format", "json",
           "--out", str(report_path), "--data-dir", str(data_dir), *(["--model", model] if model else [])]
    env = {**os.environ, "LOOKALIKE_THREADS": str(threads)}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty child never blocks
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"lookalike dedup failed: {stderr[-2000:]}")
    report = json.loads(report_path.read_text())
    report_path.unlink()
    return {"report": report, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def quality(report: dict, fam: dict[str, int]) -> dict:
    """Pair precision/recall of the reported groups against the families."""
    counts = np.bincount(np.array(list(fam.values())))
    n_true = int(np.sum(counts * (counts - 1) // 2))
    tp = pairs = 0
    for group in report["groups"]:
        ids = np.array([fam[group["keep"]["path"]]] + [fam[d["path"]] for d in group["duplicates"]])
        _, c = np.unique(ids, return_counts=True)
        pairs += len(ids) * (len(ids) - 1) // 2
        tp += int(np.sum(c * (c - 1) // 2))
    return {"pairs": pairs, "precision": tp / pairs if pairs else 1.0, "recall": tp / n_true if n_true else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=None, help="where the images are built")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="the model lookalike dedup uses (default: its default, sscd)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="data dir for lookalike's cache, kept afterwards (default: a temporary one)")
    args = parser.parse_args()

    load = {"start": os.getloadavg()[0]}
    start = time.perf_counter()
    folder, truth = build(args.count, args.seed, args.data)
    print(f"{len(truth):,} files in {folder} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    runs = []
    with tempfile.TemporaryDirectory(prefix="dedup-scale-") as scratch:
        data_dir = str(args.cache or scratch)
        if args.cache and any(args.cache.glob("dedup-cache.sqlite*")):
            raise SystemExit(f"{args.cache} already holds a cache: the cold run needs an empty one")
        for name in ("cold", "warm"):
            print(f"{name} run on {folder} ...", file=sys.stderr)
            result = run_dedup(folder, Path(data_dir), args.threads, args.model)
            runs.append(
                {
                    "run": name,
                    "files": result["report"]["files"],
                    **_summary(result),
                    **quality(result["report"], truth),
                }
            )
            print(f"  {runs[-1]}", file=sys.stderr)
        # subsets by sub-folder (a warm cache: the cost after embedding against n)
        subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
        for share in (0.1, 0.3):
            subset = Path(scratch) / f"subset-{share}"  # hard links: the same files, no copying
            for real in subfolders[: max(1, round(len(subfolders) * share))]:
                (subset / real.name).mkdir(parents=True)
                for f in real.iterdir():
                    os.link(f, subset / real.name / f.name)
            result = run_dedup(subset, Path(data_dir), args.threads, args.model)
            runs.append({"run": f"warm, {share:.0%} subset", "files": result["report"]["files"], **_summary(result)})
            print(f"  {runs[-1]}", file=sys.stderr)
    load["end"] = os.getloadavg()[0]
    rows = [[r["run"], f"{r['files']:,}", f"{r['wall_s']:.0f}", r.get("embed_s", ""), r.get("match_s", ""),
             f"{r['peak_rss_mb']:.0f}", r.get("groups", ""), f"{r['precision']:.3f}" if "precision" in r else "",
             f"{r['recall']:.3f}" if "recall" in r else ""] for r in runs]
    print(common.markdown_table(
        ["run", "files", "wall s", "embed s", "match s", "peak RSS MB", "groups", "pair precision", "pair recall"], rows
    ))
    path = common.write_json(
        "dedup_scale.json",
        {
            "count": args.count,
            "model": args.model or "sscd",
            "runs": runs,
            "load_average": load,
            "machine": common.machine(),
        },
    )
    print(f"wrote {common.shown(path)}")
    return 0


def _summary(result: dict) -> dict:
    seconds = result["report"]["seconds"]
    return {
        "wall_s": result["wall_s"],
        "peak_rss_mb": result["peak_rss_mb"],
        "embed_s": round(seconds.get("embed", 0.0), 1),
        "match_s": round(seconds.get("match", 0.0), 1),
        "scan_s": round(seconds.get("scan", 0.0), 1),
        "embedded": result["report"]["embedded"],
        "groups": len(result["report"]["groups"]),
        "duplicates": result["report"]["duplicates"],
    }


if __name__ == "__main__":
    sys.exit(main())
