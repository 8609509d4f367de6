"""ONNX Runtime sessions for the embedding models."""

from __future__ import annotations

import threading

import numpy as np
import onnxruntime as ort

from lookalike.models.registry import ModelSpec


def _providers(choice: str) -> list[str]:
    available = ort.get_available_providers()
    if choice == "auto":
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    wanted = [p.strip() for p in choice.split(",") if p.strip()]
    return [p for p in wanted if p in available] or ["CPUExecutionProvider"]


class OnnxEmbedder:
    """Runs one model: uint8 NHWC pixels in, L2-normalised float32 vectors out."""

    def __init__(self, spec: ModelSpec, *, threads: int = 0, batch_size: int = 16, providers: str = "auto") -> None:
        self.spec = spec
        self.batch_size = max(1, batch_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: a search runs the model beside SIFT and
        # verification, and spinning threads took their cores (search 30% slower, measured).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(spec.weights_path()), options, providers=_providers(providers))
        self.input_name = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()
        # One run at a time: onnxruntime already uses every thread it was given, and
        # interleaved runs only fight over the same cores.
        self._lock = threading.Lock()

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """``pixels``: uint8 array (n, height, width, 3). Returns float32 (n, dim), unit length."""
        if pixels.ndim != 4 or pixels.dtype != np.uint8:
            raise ValueError("pixels must be uint8 (n, height, width, 3)")
        if len(pixels) == 0:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        out = []
        for start in range(0, len(pixels), self.batch_size):
            chunk = np.ascontiguousarray(pixels[start : start + self.batch_size])
            with self._lock:
                out.append(self.session.run(None, {self.input_name: chunk})[0])
        vectors = np.concatenate(out).astype(np.float32, copy=False)
        # The graph normalises already; renormalise so int8 rounding never leaks into cosines > 1.
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors
