"""Storage: durable records and vectors, nearest-neighbour search (embedded SQLite + HNSW, or Milvus)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike.storage.base import GroupRecord, Hit, ImageRecord, Store

if TYPE_CHECKING:
    from lookalike.config import Settings

__all__ = ["GroupRecord", "Hit", "ImageRecord", "Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """Milvus when ``settings.milvus_uri`` is set, else the embedded SQLite store in
    ``settings.data_dir``; imported lazily so that importing this package stays cheap."""
    if settings.milvus_uri:
        from lookalike.storage.milvus import MilvusStore

        return MilvusStore(
            settings.milvus_uri,
            token=settings.milvus_token,
            db_name=settings.milvus_db,
            prefix=settings.milvus_prefix,
            consistency=settings.milvus_consistency,
            thumbnails=settings.milvus_thumbnails,
            features=settings.milvus_features,
            hnsw_m=settings.milvus_hnsw_m,
            hnsw_ef_construction=settings.milvus_hnsw_ef_construction,
            hnsw_ef=settings.milvus_hnsw_ef,
            timeout=settings.milvus_timeout_s,
        )
    from lookalike.storage.sqlite import SqliteStore

    return SqliteStore(settings.data_dir)
