"""A large gallery for search benchmarks, without embedding every picture of it.

The pictures a query should find go in through the real ingest path
(``GalleryService.add_images``: decode, embedding, local features, thumbnail). The rest fill the
group to the wanted size through the store's import (``Store.import_images``, as ``lookalike
migrate`` writes): clustered synthetic unit vectors (``common.unit_mixture``: real embeddings are
never uniform) with the real local features of the ingested pictures, cycled, so that every
verified candidate costs what a real one costs. The store builds its HNSW index over all of them
before the first query, as it does after a restart.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from PIL import Image

import common


def gallery_version(data: bytes) -> bytes:
    """The stored version of a query photo: 800 px on the longer side, re-encoded at q85."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.thumbnail((800, 800), Image.Resampling.LANCZOS)
    return common.jpeg_bytes(image, 85)


def filled_gallery(data_dir: Path, files: list[Path], size: int, group: str = "speed", **settings):
    """A GalleryService on ``data_dir`` and the id of a group of ``size`` pictures holding a
    version of every file in ``files``."""
    from lookalike.config import Settings
    from lookalike.engine import Engine
    from lookalike.gallery import GalleryService, NewImage
    from lookalike.storage import open_store
    from lookalike.storage.base import ImageRecord

    config = Settings(data_dir=data_dir, **{"group_qps": False, **settings})  # MaxQps would pace the queries
    service = GalleryService(open_store(config), Engine(config))
    service.create_group(group)
    news = [NewImage(f"photo-{i}", f"photo-{i}.jpg", gallery_version(f.read_bytes())) for i, f in enumerate(files)]
    for start in range(0, len(news), 32):
        for result in service.add_images(group, news[start : start + 32]):
            if isinstance(result, Exception):
                raise result
    key = service._key(group)
    features = list(service.store.get_features(key, [n.pic_name for n in news]).values())
    filler = size - len(news)
    vectors = common.unit_mixture(filler, seed=7, centres=max(1, filler // 10), centres_seed=8)
    now = time.time()
    for start in range(0, filler, 2000):
        rows = []
        for i in range(start, min(filler, start + 2000)):
            record = ImageRecord(key, f"filler-{i // 10}", f"filler-{i}.jpg", "", {}, None, now, now)
            rows.append((record, vectors[i], None))
        service.store.import_images(rows)
        if features:
            service.store.put_features(
                key, {r.pic_name: features[j % len(features)] for j, (r, _, _) in enumerate(rows, start)}
            )
    wait = getattr(service.store, "wait_for_index", None)
    if wait is not None:
        wait(600)
    return service, group
