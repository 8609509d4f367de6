"""Embedders: pixels in, unit vectors out."""

from lookalike.models.onnx import OnnxEmbedder
from lookalike.models.registry import MODELS, ModelSpec, get_spec

__all__ = ["MODELS", "ModelSpec", "OnnxEmbedder", "get_spec"]
