"""Image input: sources (base64, URLs, files) and safe decoding to pixels."""

from lookalike.images.decode import Rect, decode_image
from lookalike.images.sources import ImageLike, decode_base64, fetch_url, read_local

__all__ = ["ImageLike", "Rect", "decode_base64", "decode_image", "fetch_url", "read_local"]
