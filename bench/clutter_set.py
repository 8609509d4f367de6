"""The clutter set of bench/clutter.py: UKBench objects pasted into Holidays scenes.

Each of the 250 UKBench objects gives one query: its first view, scaled to 30-50% of the scene's
width, rotated by up to 8 degrees, pasted at a random place of a Holidays scene (enlarged to
800 px wide, as a phone photo would be larger than Holidays' 400 px copies) and re-encoded as a
JPEG of quality 85. The gallery is the other three views of every object (750 pictures). Built
in memory from ../shared/eval, never written into the repository; the same seed, the same set.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

SCENE_WIDTH = 800
SCALES = (0.30, 0.50)
MAX_ROTATION = 8.0
QUALITY = 85


@dataclass(frozen=True)
class Query:
    entity: str
    jpeg: bytes
    box: tuple[int, int, int, int]
    """Where the object is: x, y, width, height in the query's pixels."""
    clean: bytes
    """The same view unpasted (a clean product photo)."""


@dataclass(frozen=True)
class ClutterSet:
    queries: list[Query]
    gallery: list[tuple[str, str, bytes]]
    """(entity, picture name, JPEG bytes): the other views of every object."""


def _paste(obj: Image.Image, scene: Image.Image, rng: random.Random) -> tuple[Image.Image, tuple[int, int, int, int]]:
    scene = scene.resize((SCENE_WIDTH, round(scene.height * SCENE_WIDTH / scene.width)), Image.BICUBIC)
    width = round(SCENE_WIDTH * rng.uniform(*SCALES))
    obj = obj.resize((width, round(obj.height * width / obj.width)), Image.BICUBIC)
    mask = Image.new("L", obj.size, 255)
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
    obj = obj.rotate(angle, Image.BICUBIC, expand=True)
    mask = mask.rotate(angle, Image.BICUBIC, expand=True)
    x = rng.randint(0, max(0, scene.width - obj.width))
    y = rng.randint(0, max(0, scene.height - obj.height))
    scene.paste(obj, (x, y), mask)
    left, top, right, bottom = mask.getbbox() or (0, 0, *mask.size)
    box = (x + left, y + top, min(right, scene.width - x) - left, min(bottom, scene.height - y) - top)
    return scene, box


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def build(eval_root: Path, *, objects: int = 250, seed: int = 17) -> ClutterSet:
    ukbench = json.loads((eval_root / "ukbench1000" / "groundtruth.json").read_text())
    scenes = sorted((eval_root / "holidays811" / "images").iterdir())
    rng = random.Random(seed)
    queries, gallery = [], []
    for gid, names in sorted(ukbench["groups"].items())[:objects]:
        names = sorted(names)
        first = (eval_root / "ukbench1000" / "images" / names[0]).read_bytes()
        obj = Image.open(io.BytesIO(first)).convert("RGB")
        scene = Image.open(rng.choice(scenes)).convert("RGB")
        pasted, box = _paste(obj, scene, rng)
        queries.append(Query(str(gid), _jpeg(pasted), box, first))
        for name in names[1:]:
            gallery.append((str(gid), name, (eval_root / "ukbench1000" / "images" / name).read_bytes()))
    return ClutterSet(queries, gallery)


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    w = max(0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    h = max(0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = w * h
    return inter / max(1, aw * ah + bw * bh - inter)
