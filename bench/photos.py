"""Camera-sized photo sets for the cost benchmarks, built from ../shared/eval in a scratch folder.

The evaluation sets are small (512x384 and 400x300 JPEGs); what a user dedups or indexes is
camera output. :func:`camera_set` turns distinct scenes (:func:`distinct_sources`) into 12 MP
(4000x3000) JPEGs with sensor-like grain, q92, about 1.5-2.5 MB each, the pixel count and
decode cost of a phone photo, plus an edited copy of each: a crop of 55-85% of the area at a random place,
resized to 1200-2400 px on the longer side, re-encoded at q70-85. :func:`sized_set` makes
photos of one size (640x480 for the pair endpoints, 1024 px for search queries).

Nothing is copied into the repository: the files go to the folder the caller gives (a
temporary one by default) and are rebuilt from the same seed byte for byte.

    .venv/bin/python bench/photos.py /tmp/camera --count 200      # build and list the set
"""

from __future__ import annotations

import argparse
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import common

CAMERA = (4000, 3000)


@dataclass(frozen=True)
class PhotoSet:
    folder: Path
    files: list[Path]
    copies: dict[str, str]
    """Name of each edited copy -> name of its original (file names relative to ``folder``)."""


def distinct_sources(count: int) -> list[bytes]:
    """``count`` photos of distinct objects and scenes: UKBench's first view of each object, then
    Holidays' first photo of each scene (250 + 300 available). UKBench comes first: its objects
    are all distinct, while a few Holidays "scenes" are bursts of one moment (two fish photos a
    second apart score 0.96), which would count as false duplicates."""
    root = common.require_eval_sets(common.SETS)
    ukbench, holidays = common.load_set("ukbench1000", root), common.load_set("holidays811", root)

    def firsts(s: common.EvalSet) -> list[bytes]:
        seen: set[int] = set()
        out = []
        for i, g in enumerate(s.groups.tolist()):
            if g not in seen:
                seen.add(g)
                out.append(s.blobs[i])
        return out

    a, b = firsts(ukbench), firsts(holidays)
    mixed = a + b
    if count > len(mixed):
        raise SystemExit(f"at most {len(mixed)} distinct sources, not {count}")
    return mixed[:count]


def _grain(image: Image.Image, rng: np.random.Generator, sigma: float = 3.0) -> Image.Image:
    """Sensor-like noise (a random 509x509 tile, repeated: a JPEG encoder cannot tell, and it
    costs a fraction of drawing 36 million samples)."""
    tile = np.clip(np.round(rng.normal(0.0, sigma, (509, 509, 3))), -12, 12).astype(np.int16)
    reps = (-(-image.height // 509), -(-image.width // 509), 1)
    noise = np.tile(tile, reps)[: image.height, : image.width]
    pixels = np.asarray(image, dtype=np.int16) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def camera_photo(source: bytes, rng: np.random.Generator, size: tuple[int, int] = CAMERA) -> Image.Image:
    """The source scaled up to ``size`` (cropped to its aspect ratio) with sensor-like grain."""
    image = Image.open(io.BytesIO(source)).convert("RGB")
    scale = max(size[0] / image.width, size[1] / image.height)
    big = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    left, top = (big.width - size[0]) // 2, (big.height - size[1]) // 2
    return _grain(big.crop((left, top, left + size[0], top + size[1])), rng)


def edited_copy(photo: Image.Image, rnd: random.Random) -> bytes:
    """A crop of 55-85% of the area, resized to 1200-2400 px on the longer side, re-encoded."""
    area = rnd.uniform(0.55, 0.85)
    aspect = rnd.uniform(0.85, 1.15)
    w = min(photo.width, round(photo.width * (area * aspect) ** 0.5))
    h = min(photo.height, round(photo.height * (area / aspect) ** 0.5))
    left, top = rnd.randint(0, photo.width - w), rnd.randint(0, photo.height - h)
    crop = photo.crop((left, top, left + w, top + h))
    longer = rnd.randint(1200, 2400)
    scale = longer / max(w, h)
    crop = crop.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
    return _jpeg(crop, rnd.randint(70, 85))


def camera_set(folder: Path, count: int = 200, seed: int = 0) -> PhotoSet:
    """``count`` 12 MP photos and an edited copy of each, written to ``folder`` (reused when a
    previous build with the same count and seed is there)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "photos.json"
    if stamp.is_file():
        made = json.loads(stamp.read_text())
        if made.get("count") == count and made.get("seed") == seed:
            return PhotoSet(folder, [folder / n for n in made["files"]], made["copies"])
    rng, rnd = np.random.default_rng(seed), random.Random(seed)
    files, copies = [], {}
    for i, source in enumerate(distinct_sources(count)):
        photo = camera_photo(source, rng)
        # one folder: ``lookalike index`` makes each file's stem its entity (a sub-folder would be
        # one entity, and an entity holds at most 10 pictures)
        original, copy = f"IMG_{i:04d}.jpg", f"IMG_{i:04d}_edit.jpg"
        (folder / original).write_bytes(_jpeg(photo, 92))
        (folder / copy).write_bytes(edited_copy(photo, rnd))
        files += [folder / original, folder / copy]
        copies[copy] = original
    stamp.write_text(
        json.dumps(
            {"count": count, "seed": seed, "files": [str(f.relative_to(folder)) for f in files], "copies": copies}
        )
    )
    return PhotoSet(folder, files, copies)


def sized_set(folder: Path, size: tuple[int, int], count: int, seed: int = 1) -> list[Path]:
    """``count`` photos of distinct scenes at ``size`` (JPEG q90), e.g. 640x480 or 1024x768."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i, source in enumerate(distinct_sources(count)):
        path = folder / f"photo_{i:04d}.jpg"
        if not path.is_file():
            path.write_bytes(_jpeg(camera_photo(source, rng, size), 90))
        out.append(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    made = camera_set(args.folder, args.count, args.seed)
    total = sum(f.stat().st_size for f in made.files)
    print(f"{len(made.files)} files, {total / 1e6:.0f} MB, in {made.folder}")


if __name__ == "__main__":
    main()
