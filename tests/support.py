"""Test support: a real lookalike server in a subprocess, a stand-in HTTP server for image URLs,
test pictures and vectors, and the small helpers every wire's tests share (``b64``, ``unit``).

Imported by the tests, their fixtures (conftest.py) and bench/web.py. A helper two test files
need lives here, once.
"""

from __future__ import annotations

import base64
import errno
import http.server
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
EVAL_DIR = Path(os.environ.get("LOOKALIKE_EVAL_DIR", REPO.parent / "shared" / "eval"))


def b64(data: bytes) -> str:
    """Base64 text of bytes, as every JSON wire carries an image."""
    return base64.b64encode(data).decode()


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``n`` random unit vectors of ``dim`` floats (no model makes these)."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class ImageServer:
    """A real HTTP server on 127.0.0.1 serving fixed bytes by path: ``routes`` maps a path to
    ``(status, content type, body)``; any other path is a 404. The stand-in for the outside
    world's image URLs (``base`` + path)."""

    def __init__(self, routes: dict[str, tuple[int, str, bytes]]):
        served = routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                status, ctype, body = served.get(self.path, (404, "text/plain", b"missing"))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m lookalike.cli serve`` on 127.0.0.1, on a data dir that outlives restarts."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, *, log_dir: Path | None = None) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, "LOOKALIKE_DATA_DIR": str(data_dir), "LOOKALIKE_THREADS": "2", **(env or {})}
        self.log_dir = log_dir or data_dir.parent
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> str:
        """Starts (or restarts) the server; returns its base URL once /readyz answers 200."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the server is already running")
        self.port = free_port()
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path = self.log_dir / f"server-{self.port}-{self.starts}.log"
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lookalike.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return self.base_url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server not ready after {timeout}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed that was not already durable."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def running_server(data_dir: Path, env: dict[str, str] | None = None, *, timeout: float = 120) -> Iterator[str]:
    """``lookalike serve`` for real, on loopback; yields its base URL once /readyz says ready."""
    server = ServerProcess(data_dir, env)
    try:
        yield server.start(timeout)
    finally:
        server.stop()


# --------------------------------------------------------------------------- a full disk


@contextmanager
def small_tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``mnt``: a real file system that runs out of space. Skips the
    test where mounting is not permitted (it needs root); unmounted afterwards."""
    mnt.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def take_space(folder: Path, leave: int = 0) -> Path:
    """A ballast file that leaves about ``leave`` bytes free (0: not a page)."""
    st = os.statvfs(folder)
    todo = st.f_bavail * st.f_frsize - leave
    path = folder / f"ballast{len(list(folder.glob('ballast*')))}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 16, 4096) if not leave else (1 << 16,):
            try:
                while leave == 0 or todo > 0:
                    todo -= os.write(fd, bytes(size if leave == 0 else min(size, todo)))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return path


# --------------------------------------------------------------------------- pictures


def _field(rng: np.random.Generator, w: int, h: int, cells: int) -> np.ndarray:
    grid = rng.standard_normal((cells, max(2, round(cells * w / h)))).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((w, h), Image.Resampling.BICUBIC))


def synthetic_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A "map" of random regions, shading and a few objects: its layout is what SSCD keys on,
    so different seeds give clearly different vectors (cosine ~0.3, versus ~0.5 for pictures
    that share one composition recipe), while crops and re-encodings stay close to the source."""
    rng = np.random.default_rng(seed)
    w, h = size
    f = _field(rng, w, h, int(rng.integers(2, 5))) + 0.5 * _field(rng, w, h, int(rng.integers(6, 14)))
    f = f + 0.2 * _field(rng, w, h, 30)
    levels = int(rng.integers(3, 8))
    region = np.digitize(f, np.quantile(f, np.sort(rng.uniform(0.05, 0.95, levels - 1))))
    pixels = rng.uniform(0, 255, (levels, 3))[region]
    pixels = pixels * (0.75 + 0.1 * _field(rng, w, h, int(rng.integers(3, 8)))[..., None])
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 10))):
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(5, 40))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = int(rng.integers(0, 3))
        if shape == 0:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        elif shape == 1:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
        else:
            end = (x + int(rng.integers(-100, 100)), y + int(rng.integers(-100, 100)))
            draw.line((x, y, *end), fill=colour, width=int(rng.integers(2, 8)))
    noisy = np.asarray(image, np.float32) + rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" and not options else options))
    return buffer.getvalue()


class Photos:
    """Test pictures: synthetic by seed (always), real from ../shared/eval (when present)."""

    image = staticmethod(synthetic_image)
    to_bytes = staticmethod(encode)

    def jpeg(self, seed: int, size: tuple[int, int] = (320, 240), quality: int = 90) -> bytes:
        return encode(synthetic_image(seed, size), quality=quality)

    def solid(self, colour: tuple[int, int, int] = (30, 120, 200), size: tuple[int, int] = (320, 240)) -> bytes:
        return encode(Image.new("RGB", size, colour))

    def real(self, count: int, dataset: str = "holidays811") -> list[bytes]:
        """``count`` real photos (never copied into the repository); skips the test when absent."""
        folder = EVAL_DIR / dataset / "images"
        if not folder.is_dir():
            pytest.skip(f"real photos not available ({folder} is absent)")
        files = sorted(folder.iterdir())[:count]
        if len(files) < count:
            pytest.skip(f"only {len(files)} real photos in {folder}")
        return [p.read_bytes() for p in files]


synthetic_photo = synthetic_image


def distinct_photos(count: int) -> list[Image.Image]:
    """Photos of different objects: UKBench (one per object) when ../shared/eval is present,
    else synthetic pictures of different seeds."""
    folder = EVAL_DIR / "ukbench1000" / "images"
    if folder.is_dir():
        names = sorted(folder.iterdir())[::4][:count]
        return [Image.open(p).convert("RGB") for p in names]
    return [synthetic_image(1000 + i, (480, 360)) for i in range(count)]


def real_photos(count: int) -> list[bytes]:
    """Real photos from ../shared/eval when present (never copied into the repo), else []."""
    folder = EVAL_DIR / "holidays811" / "images"
    if not folder.is_dir():
        return []
    return [p.read_bytes() for p in sorted(folder.iterdir())[:count]]


def copy_families() -> dict[str, bytes]:
    """Two families of copies and one unrelated picture, as JPEGs by name: "a.jpg" with a smaller
    re-encoded copy and a mirrored one, "b.jpg" with a cropped copy, and "lonely.jpg"."""
    from PIL import ImageOps

    a, b = synthetic_image(8101), synthetic_image(8202)
    w, h = b.size
    return {
        "a.jpg": encode(a),
        "a-small.jpg": encode(a.resize((240, 180)), quality=70),
        "a-mirror.jpg": encode(ImageOps.mirror(a)),
        "b.jpg": encode(b),
        "b-crop.jpg": encode(b.crop((w // 12, h // 12, w - w // 12, h - h // 12))),
        "lonely.jpg": encode(synthetic_image(8303)),
    }
