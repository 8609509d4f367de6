"""Vector stores: durable records and vectors, nearest-neighbour search."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike.index.base import GroupRecord, Hit, ImageRecord, Store

if TYPE_CHECKING:
    from lookalike.config import Settings

__all__ = ["GroupRecord", "Hit", "ImageRecord", "Store", "open_store"]


def open_store(settings: "Settings") -> Store:
    """The store configured by ``settings`` (today always the embedded SQLite one, in
    ``settings.data_dir``); imported lazily so that importing this package stays cheap."""
    from lookalike.index.sqlite import SqliteStore

    return SqliteStore(settings.data_dir)
