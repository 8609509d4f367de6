"""lookalike: self-hosted image similarity and image search.

>>> from lookalike import embed, compare
>>> embed("cat.jpg").shape
(512,)
>>> compare("cat.jpg", "cat-resized.jpg")  # AWS scale, 0..1
0.93
>>> [g.keep.path for g in find_duplicates("photos/").groups]
['beach.jpg', 'cat.png']
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

__version__ = "0.1.0"

_engine = None
_engine_lock = threading.Lock()


def _default_engine():
    global _engine
    with _engine_lock:
        if _engine is None:
            from lookalike.engine import Engine

            _engine = Engine()
        return _engine


def embed(images, model: str = "sscd") -> np.ndarray:
    """One image (path, URL, bytes or PIL image) -> (512,); a list -> (n, 512). float32, unit length."""
    from lookalike.images.sources import read_local

    engine = _default_engine()
    single = not isinstance(images, (list, tuple))
    items: Sequence = [images] if single else images
    loaded = [read_local(item, engine.settings) for item in items]
    vectors = engine.embed(loaded, model=model)
    return vectors[0] if single else vectors


def compare(a, b, model: str = "sscd") -> float:
    """AWS-scale similarity of two images: 0.5 + 0.5 * cosine, in [0, 1]."""
    from lookalike.images.sources import read_local
    from lookalike.scores import NO_BOUNDARY

    engine = _default_engine()
    settings = engine.settings
    pair = engine.compare(read_local(a, settings), read_local(b, settings), model=model, boundaries=NO_BOUNDARY)
    return pair.aws_similarity


def find_duplicates(folder, level: str = "near", **options):
    """Groups of duplicate images in a folder: level "exact", "near" or "scene" (a
    :class:`lookalike.dedup.DedupReport`; options as :func:`lookalike.dedup.find_duplicates`)."""
    from lookalike.dedup import find_duplicates as find

    return find(folder, level, engine=options.pop("engine", None) or _default_engine(), **options)


__all__ = ["compare", "embed", "find_duplicates", "__version__"]
