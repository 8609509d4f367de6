"""Unreachable pictures in the HNSW index (islands) and what the store's checks cost.

Builds the store's index (``AnnIndex``: usearch, int8, M 16, ef_construction 128) over sets of
near-copy families (512-d, four pictures a family, noise well inside a family's spread) the way
the merger does, one ``ADD_CHUNK`` at a time, and per build measures:

* **islands without checks**: rows that a search for their own vector, as broad as a store
  search, does not return once the build is done (what issue 18 measured on real SSCD vectors);
* **the checks' cost**: the self-search of each chunk after its add (``AnnIndex.unreachable``)
  and one full sweep of the finished index, against the time of the adds themselves;
* **islands with checks**: rows still unreachable after the chunk checks and a final sweep
  took the found ones out (must be 0: those rows are scanned exactly by every search).

    .venv/bin/python bench/islands.py                 # 20k vectors, 3 builds
    .venv/bin/python bench/islands.py --size 100000 --builds 2

Writes bench/results/islands.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT / "src") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "src"))

import common  # noqa: E402
from lookalike.storage.ann import ADD_CHUNK, AnnIndex  # noqa: E402

DIM = 512
PER_FAMILY = 4


def families(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((size // PER_FAMILY, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = np.repeat(centres, PER_FAMILY, axis=0)
    vectors += 0.5 / np.sqrt(DIM) * rng.standard_normal(vectors.shape).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def build(vectors: np.ndarray, *, checks: bool) -> dict[str, float]:
    index = AnnIndex(DIM)
    keys = np.arange(len(vectors), dtype=np.int64)
    add_s = check_s = 0.0
    stranded: list[np.ndarray] = []
    for start in range(0, len(vectors), ADD_CHUNK):
        chunk = keys[start : start + ADD_CHUNK]
        began = time.perf_counter()
        index.add(chunk, vectors[chunk])
        add_s += time.perf_counter() - began
        if checks:
            began = time.perf_counter()
            lost = index.unreachable(chunk, vectors[chunk])
            index.remove(lost)
            stranded.append(lost)
            check_s += time.perf_counter() - began
    sweep_s = 0.0
    if checks:  # the sweep the merger runs once the index has doubled (or when asked to settle)
        began = time.perf_counter()
        indexed = np.setdiff1d(keys, np.concatenate(stranded))
        lost = np.concatenate([index.unreachable(indexed[s : s + 4096], vectors[indexed[s : s + 4096]])
                               for s in range(0, len(indexed), 4096)])
        index.remove(lost)
        stranded.append(lost)
        sweep_s = time.perf_counter() - began
    out = np.concatenate(stranded) if stranded else np.empty(0, dtype=np.int64)
    indexed = np.setdiff1d(keys, out)
    still = np.concatenate([index.unreachable(indexed[s : s + 4096], vectors[indexed[s : s + 4096]])
                            for s in range(0, len(indexed), 4096)])
    return {"add_s": add_s, "check_s": check_s, "sweep_s": sweep_s, "taken_out": len(out), "unreachable": len(still)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=20_000)
    ap.add_argument("--builds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for seed in range(args.builds):
        vectors = families(args.size, seed)
        plain = build(vectors, checks=False)
        checked = build(vectors, checks=True)
        row = {"seed": seed, "size": args.size, "plain": plain, "checked": checked}
        rows.append(row)
        print(row, flush=True)
    path = common.write_json("islands.json", {"machine": common.machine(), "rows": rows})
    print(f"wrote {path}")
    print(common.markdown_table(
        ["build", "vectors", "islands, no checks", "add s", "chunk checks s", "full sweep s", "taken out",
         "islands left"],
        [[r["seed"], f"{r['size']:,}", r["plain"]["unreachable"], f"{r['checked']['add_s']:.1f}",
          f"{r['checked']['check_s']:.1f}", f"{r['checked']['sweep_s']:.1f}", r["checked"]["taken_out"],
          r["checked"]["unreachable"]] for r in rows],
    ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
