"""The "UKBench transformed" duplicate-detection set, built from ``../shared/eval/ukbench1000``.

The protocol of imagededup's benchmarks (https://idealo.github.io/imagededup/user_guide/benchmarks/),
scaled to this 512x384 subset: every original photo plus five transformed copies of it,

    crop     random crop keeping the aspect ratio, 7/8 of each side (448x336; imagededup: 560x420 of 640x480)
    hflip    horizontal flip
    vflip    vertical flip
    rot25    25 degree rotation (counter-clockwise) on the same canvas (Pillow's default: the corners
             cut, black wedges; a canvas expanded to keep them is harder still for SSCD)
    square   resize to 1:1 aspect ratio (384x384, Lanczos)

so each original makes a family of 6 files, and every pair inside a family is a true duplicate
(15 pairs a family). The 4 UKBench photos of one object are the same scene taken again, NOT
duplicates: ``truth.json`` records both, per file, so that a benchmark can count "same scene" pairs
apart from unrelated ones. Deterministic: the crop offsets come from ``--seed``; the originals are
copied byte for byte, the copies are JPEG quality 90 (4:2:0, Pillow).

The evaluation images are research-only: the set is written to a scratch folder outside the
repository (default ``~/.cache/lookalike/bench-data/ukbench-transformed-<n>-seed<seed>``), never
into it. Layout::

    OUT/images/ukbench00000.jpg          the original (a byte copy)
    OUT/images/ukbench00000_crop.jpg     ... _hflip, _vflip, _rot25, _square
    OUT/truth.json                       written last: per file its family, object and transform

    .venv/bin/python bench/ukbench_transformed.py                  # all 1000 originals: 6000 files
    .venv/bin/python bench/ukbench_transformed.py --limit 100      # the first 100 originals (25 objects)
    .venv/bin/python bench/ukbench_transformed.py --out /tmp/ukt   # elsewhere

An existing folder built with the same source, limit, seed and protocol version is reused as it is.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import common

SET = "ukbench1000"
VERSION = 1
"""Bump when the transforms change: a cached folder of another version is rebuilt."""
TRANSFORMS = ("crop", "hflip", "vflip", "rot25", "square")
CROP_FRACTION = 7 / 8  # imagededup: 560x420 out of 640x480
ROTATION_DEGREES = 25
JPEG_QUALITY = 90
CACHE_ROOT = Path("~/.cache/lookalike/bench-data").expanduser()


def default_out(limit: int | None, seed: int) -> Path:
    return CACHE_ROOT / f"ukbench-transformed-{limit or 'all'}-seed{seed}"


def transform(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One transformed copy of ``image`` (RGB)."""
    w, h = image.size
    if kind == "crop":
        cw, ch = round(w * CROP_FRACTION), round(h * CROP_FRACTION)
        x = int(rng.integers(0, w - cw + 1))
        y = int(rng.integers(0, h - ch + 1))
        return image.crop((x, y, x + cw, y + ch))
    if kind == "hflip":
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if kind == "vflip":
        return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    if kind == "rot25":
        return image.rotate(ROTATION_DEGREES, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=(0, 0, 0))
    if kind == "square":
        side = min(w, h)
        return image.resize((side, side), Image.Resampling.LANCZOS)
    raise ValueError(f"unknown transform {kind!r}")


def _params(limit: int | None, seed: int, source: Path) -> dict:
    return {
        "protocol": "ukbench-transformed",
        "version": VERSION,
        "source": str(source),
        "limit": limit,
        "seed": seed,
        "transforms": {
            "crop": f"random crop keeping the aspect ratio, {CROP_FRACTION:g} of each side",
            "hflip": "horizontal flip",
            "vflip": "vertical flip",
            "rot25": f"{ROTATION_DEGREES} degree rotation on the same canvas, black corners (bicubic)",
            "square": "resize to the shorter side squared (aspect ratio 1:1, Lanczos)",
        },
        "jpeg_quality": JPEG_QUALITY,
    }


def load_truth(out: Path) -> dict:
    return json.loads((Path(out) / "truth.json").read_text())


def build(out: Path | None = None, limit: int | None = None, *, seed: int = 0, quiet: bool = False) -> dict:
    """Build (or reuse) the set under ``out``; returns the parsed ``truth.json``.

    ``truth["files"]`` maps each file name (relative to ``truth["images"]``) to ``{"family": the
    original's file name, "object": UKBench object id, "transform": "original" | crop | ...}``.
    Raises SystemExit(0) with a message when the evaluation set is absent.
    """
    eval_root = common.require_eval_sets([SET])
    source = eval_root / SET
    out = Path(out).expanduser() if out else default_out(limit, seed)
    out = out.resolve()
    if common.REPO_ROOT.resolve() in (out, *out.parents):
        raise SystemExit(f"refusing to write the research-only evaluation images inside the repository: {out}")
    params = _params(limit, seed, source)
    images = out / "images"
    truth_path = out / "truth.json"
    if truth_path.is_file():
        try:
            truth = load_truth(out)
        except (OSError, ValueError):
            truth = {}
        if truth.get("params") == params and all((images / name).is_file() for name in truth.get("files", {})):
            if not quiet:
                print(f"reusing {out} ({len(truth['files'])} files)")
            truth["images"] = str(images)
            return truth

    groundtruth = json.loads((source / "groundtruth.json").read_text())
    names: list[str] = sorted(groundtruth["images"])
    if limit:
        names = names[:limit]
    object_of = {}
    for gid, members in groundtruth["groups"].items():
        for m in members:
            object_of[m] = int(gid)

    start = time.perf_counter()
    if truth_path.exists():
        truth_path.unlink()
    if images.exists():
        shutil.rmtree(images)
    images.mkdir(parents=True)
    files: dict[str, dict] = {}
    for i, name in enumerate(names):
        stem, ext = os.path.splitext(name)
        shutil.copyfile(source / "images" / name, images / name)
        files[name] = {"family": name, "object": object_of[name], "transform": "original"}
        rng = np.random.default_rng([seed, i])
        with Image.open(source / "images" / name) as im:
            im = im.convert("RGB")
            for kind in TRANSFORMS:
                copy = f"{stem}_{kind}.jpg"
                buf = io.BytesIO()
                transform(im, kind, rng).save(buf, "JPEG", quality=JPEG_QUALITY)
                (images / copy).write_bytes(buf.getvalue())
                files[copy] = {"family": name, "object": object_of[name], "transform": kind}
        if not quiet and (i + 1) % 200 == 0:
            print(f"  {i + 1}/{len(names)} originals", flush=True)

    families = len(names)
    truth = {
        "params": params,
        "files": files,
        "originals": families,
        "objects": len({object_of[n] for n in names}),
        "duplicate_pairs": families * (len(TRANSFORMS) + 1) * len(TRANSFORMS) // 2,
    }
    tmp = truth_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(truth, indent=1) + "\n")
    tmp.replace(truth_path)
    if not quiet:
        print(f"wrote {len(files)} files under {images} in {time.perf_counter() - start:.1f} s")
    truth["images"] = str(images)
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default: ~/.cache/lookalike/bench-data/ukbench-transformed-<n>-seed<seed>)",
    )
    parser.add_argument("--limit", type=int, help="only the first N originals, in name order (4 per object)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crop offsets (default: %(default)s)")
    args = parser.parse_args()
    truth = build(args.out, args.limit, seed=args.seed)
    print(
        f"{len(truth['files'])} files, {truth['originals']} originals of {truth['objects']} objects, "
        f"{truth['duplicate_pairs']} true duplicate pairs: {truth['images']}"
    )


if __name__ == "__main__":
    sys.exit(main())
