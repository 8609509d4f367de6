"""Test support: a real lookalike server in a subprocess, and synthetic photos."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]
EVAL_DIR = Path(os.environ.get("LOOKALIKE_EVAL_DIR", REPO.parent / "shared" / "eval"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(data_dir: Path, env: dict[str, str] | None = None, *, timeout: float = 120) -> Iterator[str]:
    """``lookalike serve`` for real, on loopback; yields its base URL once /readyz says ready."""
    port = free_port()
    full_env = {**os.environ, "LOOKALIKE_DATA_DIR": str(data_dir), "LOOKALIKE_THREADS": "2", **(env or {})}
    log = open(data_dir.parent / f"server-{port}.log", "wb") if data_dir.parent.exists() else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if hasattr(log, "close"):
            log.close()


def synthetic_photo(seed: int, size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A busy picture of random shapes over a gradient: distinct per seed, photo-like enough for SSCD."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [(xx * rng.uniform(0.1, 0.6) + yy * rng.uniform(0.1, 0.6) + rng.uniform(0, 255)) % 256 for _ in range(3)], -1
    )
    image = Image.fromarray(base.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(2, 12)))
    noise = rng.normal(0, 8, (h, w, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").filter(ImageFilter.SMOOTH)


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def distinct_photos(count: int) -> list[Image.Image]:
    """Photos of different objects: UKBench (one per object) when ../shared/eval is present,
    else synthetic pictures (whose shared style makes them look more alike than real photos)."""
    folder = EVAL_DIR / "ukbench1000" / "images"
    if folder.is_dir():
        names = sorted(folder.iterdir())[::4][:count]
        return [Image.open(p).convert("RGB") for p in names]
    return [synthetic_photo(1000 + i) for i in range(count)]


def real_photos(count: int) -> list[bytes]:
    """Real photos from ../shared/eval when present (never copied into the repo), else []."""
    folder = EVAL_DIR / "holidays811" / "images"
    if not folder.is_dir():
        return []
    return [p.read_bytes() for p in sorted(folder.iterdir())[:count]]
