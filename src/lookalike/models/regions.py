"""Vectors of many regions of a picture from one run of ``sscd-small``: region pooling.

``sscd-small`` (the MobileNetV4 student of SSCD, same vector space) ends in GeM pooling: the
last feature map (960 channels, one cell per 32 input pixels) is clipped, raised to the power
p = 3, averaged over the picture, raised to 1/p, projected to 512 dimensions and normalised.
Averaging over a rectangle of cells instead of the whole map gives that rectangle's vector;
with an integral image of the cubed map every rectangle costs four lookups and one projection.
So a product query's windows (hundreds of them, from coarse ones to one-cell edge moves) cost
one forward pass of the whole picture instead of one per window: about 30-45 ms at a shorter
side of 512 px against about 20 ms per cropped window at 288 px (2 vCPUs, AVX2).

A region's pooled vector is not the vector of its crop: the cells near its edges also saw what
lies outside it. Measured on the clutter set (bench/clutter.py, docs/benchmarks.md "Product
search"), the best-scoring pooled window is a distinctive part of the subject (about half its
area), which :mod:`lookalike.gallery.windows` then grows to the subject.

The graph with the feature map as a second output, and the projection's weights, are written
once by ``lookalike models install detector`` (:func:`install_regions`, which needs the
``onnx`` package, as the detector's conversion does); the server only reads them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from lookalike.errors import ModelUnavailable
from lookalike.images.decode import Rect
from lookalike.models.registry import get_spec

MODEL_FILE = "sscd_small_regions.onnx"
HEAD_FILE = "sscd_small_regions.npz"
SOURCE_FILE = "sscd_small_regions.json"
SOURCE_MODEL = "sscd-small"
FEATURE_OUTPUT = "/embeddings/pool/Pow_output_0"
"""The GeM pooling's clip(x, eps) ** p, before its mean over the picture."""
CELL = 32
"""Input pixels per feature-map cell (the network's stride)."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install_regions(directory: Path) -> Path:
    """Writes ``sscd-small`` with its feature map as a second output, and its pooling head
    (p, eps, projection), into ``directory``; returns the graph's path. Idempotent: redone
    only when the installed ``sscd-small`` weights changed."""
    source = get_spec(SOURCE_MODEL).weights_path()
    model_path, head_path, stamp_path = directory / MODEL_FILE, directory / HEAD_FILE, directory / SOURCE_FILE
    digest = _sha256(source)
    if model_path.is_file() and head_path.is_file() and _stamp(stamp_path) == digest:
        return model_path
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ModelUnavailable(
            "installing the region model needs onnx: `pip install 'lookalike[detector]'` (or `pip install onnx`)"
        ) from None
    model = onnx.load(str(source))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    constants = {
        n.name: float(numpy_helper.to_array(n.attribute[0].t)) for n in model.graph.node if n.op_type == "Constant"
    }
    gemm = next((n for n in model.graph.node if n.op_type == "Gemm"), None)
    if gemm is None or not any(n.output[0] == FEATURE_OUTPUT for n in model.graph.node):
        raise ModelUnavailable(f"{source} is not the GeM-pooled network the region model expects")
    weight = weights.get(gemm.input[1] + "_fp16", weights.get(gemm.input[1]))
    bias = weights.get(gemm.input[2] + "_fp16", weights.get(gemm.input[2]))
    if weight is None or bias is None:
        raise ModelUnavailable(f"{source}: the projection's weights were not found")
    model.graph.output.append(onnx.helper.make_tensor_value_info(FEATURE_OUTPUT, onnx.TensorProto.FLOAT, None))
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(
        head_path,
        weight=weight.astype(np.float32),
        bias=bias.astype(np.float32),
        power=np.float32(constants["/embeddings/pool/Constant_1"]),
    )
    onnx.save(model, str(model_path))
    stamp_path.write_text(json.dumps({"source": str(source), "sha256": digest}) + "\n")  # last: the install finished
    return model_path


def _stamp(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("sha256")
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class RegionMap:
    """One picture's pooled feature map: the vector of any rectangle of cells."""

    integral: np.ndarray
    """(channels, rows + 1, columns + 1) float64: sums of clip(x) ** p over [0, y) x [0, x)."""
    weight: np.ndarray
    bias: np.ndarray
    power: float
    width: int
    """The picture's width and height in pixels."""
    height: int
    whole_vector: np.ndarray
    """The network's own vector of the whole map (the graph's first output)."""

    @property
    def columns(self) -> int:
        return self.integral.shape[2] - 1

    @property
    def rows(self) -> int:
        return self.integral.shape[1] - 1

    def vectors(self, cells: np.ndarray) -> np.ndarray:
        """Unit vectors (n, 512) of ``cells`` (n, 4): x0, y0, x1, y1 in cells, end exclusive."""
        cells = np.asarray(cells, dtype=np.intp).reshape(-1, 4)
        x0, y0, x1, y1 = cells.T
        sums = self.integral[:, y1, x1] - self.integral[:, y0, x1] - self.integral[:, y1, x0] + self.integral[:, y0, x0]
        means = np.maximum(sums / ((x1 - x0) * (y1 - y0)), 1e-18).T
        pooled = np.power(means, 1.0 / self.power).astype(np.float32)
        projected = pooled @ self.weight.T + self.bias
        return projected / np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)

    def to_rect(self, cells: tuple[int, int, int, int]) -> Rect:
        """The pixels of the picture a rectangle of cells covers."""
        sx, sy = self.width / self.columns, self.height / self.rows
        x0, y0 = round(cells[0] * sx), round(cells[1] * sy)
        return Rect(x0, y0, max(1, round(cells[2] * sx) - x0), max(1, round(cells[3] * sy) - y0))

    def to_cells(self, rect: Rect) -> tuple[int, int, int, int]:
        """The smallest rectangle of cells around ``rect`` (a detector's box), at least one cell."""
        sx, sy = self.columns / self.width, self.rows / self.height
        x0 = min(self.columns - 1, max(0, int(rect.x * sx)))
        y0 = min(self.rows - 1, max(0, int(rect.y * sy)))
        x1 = max(x0 + 1, min(self.columns, int(np.ceil((rect.x + rect.width) * sx))))
        y1 = max(y0 + 1, min(self.rows, int(np.ceil((rect.y + rect.height) * sy))))
        return (x0, y0, x1, y1)


class RegionEmbedder:
    """Runs the region model (installed by ``lookalike models install detector``). Thread-safe."""

    def __init__(self, directory: Path, *, threads: int = 0) -> None:
        from lookalike.models.detector import INSTALL_COMMAND

        model_path, head_path = directory / MODEL_FILE, directory / HEAD_FILE
        if not model_path.is_file() or not head_path.is_file() or _stamp(directory / SOURCE_FILE) is None:
            raise ModelUnavailable(
                f"the region model of product groups is not installed in {directory}: run `{INSTALL_COMMAND}`"
            )
        head = np.load(head_path)
        self.weight, self.bias, self.power = head["weight"], head["bias"], float(head["power"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self._lock = threading.Lock()

    def map(self, image: Image.Image, side: int) -> RegionMap:
        """The picture's region map, its shorter side scaled to ``side`` pixels (the longer one
        to at most twice that) and both cut to whole cells."""
        width, height = image.size
        scale = min(side / min(width, height), 2 * side / max(width, height))
        columns = max(1, round(width * scale / CELL))
        rows = max(1, round(height * scale / CELL))
        pixels = np.asarray(image.convert("RGB").resize((columns * CELL, rows * CELL), Image.Resampling.BILINEAR))
        with self._lock:
            whole, cubes = self.session.run(None, {self.input_name: pixels[None]})
        integral = np.zeros((cubes.shape[1], rows + 1, columns + 1), dtype=np.float64)
        integral[:, 1:, 1:] = cubes[0].cumsum(axis=1).cumsum(axis=2)
        return RegionMap(integral, self.weight, self.bias, self.power, width, height, whole[0])
