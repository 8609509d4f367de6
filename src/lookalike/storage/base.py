"""The storage interface: everything gallery/ needs, nothing about how it is stored.

A second backend (a database server) implements :class:`Store` and nothing in gallery/ or
api/ changes. Implementations check the constraints (they are the only place those can be
checked atomically) but do not word them: they gather the facts inside their own transaction or
lock and call :mod:`lookalike.storage.rules`, which owns every rule, message, namespace test and
time stamp once. What a backend supplies: rows put and got by key, counts inside its transaction,
a vector search with a compiled filter (:mod:`lookalike.storage.filters` is the reference).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from lookalike import errors
from lookalike.storage.filters import Expr
from lookalike.storage.rules import no_such_group

__all__ = ["GroupRecord", "Hit", "ImageRecord", "Store", "no_such_group", "unit_vector"]


def unit_vector(vector: np.ndarray, dim: int) -> np.ndarray:
    """A unit float32 vector of ``dim`` dimensions (cosine is then a dot product), or
    InvalidParameterValue: every store stores and searches these."""
    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vec.shape != (dim,) or not np.all(np.isfinite(vec)):
        raise errors.InvalidParameterValue(f"expected a finite {dim}-d vector, got shape {vec.shape}")
    norm = float(np.linalg.norm(vec))
    if norm == 0.0:
        raise errors.InvalidParameterValue("the zero vector has no direction")
    return np.ascontiguousarray(vec / norm, dtype=np.float32)


@dataclass
class GroupRecord:
    group_id: str
    group_name: str
    brief: str = ""
    max_capacity: int = 0
    max_qps: int = 10
    group_type: int = 4
    model: str = "sscd"
    pic_count: int = 0
    create_time: float = 0.0
    """Seconds since the epoch."""
    update_time: float = 0.0


@dataclass
class ImageRecord:
    group_id: str
    entity_id: str
    pic_name: str
    custom_content: str = ""
    tags: dict[str, object] = field(default_factory=dict)
    rect: tuple[int, int, int, int] | None = None
    create_time: float = 0.0
    update_time: float = 0.0


@dataclass
class Hit:
    image: ImageRecord
    cosine: float


class Store(Protocol):
    """A durable home for groups, image records and their vectors. Thread-safe."""

    def create_group(self, group: GroupRecord) -> None:
        """Raises ImageGroupIdAlreadyExist."""

    def get_group(self, group_id: str, *, count: bool = True) -> GroupRecord | None:
        """``count=False``: ``pic_count`` may be left 0 (a backend where counting costs a query)."""

    def list_groups(self, offset: int, limit: int, *, namespace: str | None = "") -> tuple[list[GroupRecord], int]:
        """A page of groups (oldest first) and the total count, among the ids of ``namespace``:
        those that start with it and contain no other "/" (tenants keep their groups apart so).
        ``namespace=None``: every group of every tenant (migrations)."""

    def delete_group(self, group_id: str) -> None:
        """Raises ImageGroupIdNotExist."""

    def add_image(
        self,
        image: ImageRecord,
        vector: np.ndarray,
        *,
        max_per_entity: int,
        thumbnail: bytes | None = None,
        features: bytes | None = None,
    ) -> None:
        """Durable when it returns (survives kill -9), with its thumbnail and local features
        (``LocalFeatures.to_bytes``). Raises PicNameAlreadyExist, ImageEntityCountExceed,
        ImageNumExceed (group capacity), ImageGroupIdNotExist."""

    def get_vectors(self, group_id: str, pic_names: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored unit vectors of those pictures that exist (query expansion)."""

    def get_features(self, group_id: str, pic_names: Sequence[str]) -> dict[str, bytes]:
        """The stored local features of those pictures that have them (geometric verification)."""

    def put_features(self, group_id: str, features: dict[str, bytes]) -> int:
        """Stores (or replaces) the local features of existing pictures (migrations); returns
        how many pictures were found."""

    def get_images(self, group_id: str, entity_id: str, pic_name: str | None = None) -> list[ImageRecord]: ...

    def get_image(self, group_id: str, pic_name: str) -> ImageRecord | None:
        """The picture called ``pic_name`` (unique in its group), whatever its entity."""

    def list_images(self, group_id: str, offset: int, limit: int) -> tuple[list[ImageRecord], int]:
        """A page of a group's images, newest first, and the total count (for browsing)."""

    def get_thumbnail(self, group_id: str, pic_name: str) -> bytes | None: ...

    def pic_names(self, group_id: str) -> set[str]:
        """Every PicName of a group, and nothing else (a resumed migration's cheap check)."""

    def update_images(
        self,
        group_id: str,
        entity_id: str,
        pic_name: str | None,
        *,
        tags: dict[str, object] | None = None,
        custom_content: str | None = None,
    ) -> int:
        """Number of images changed; visible to the next search."""

    def delete_images(self, group_id: str, entity_id: str, pic_name: str | None = None) -> int:
        """Number deleted; gone from the next search."""

    def search(
        self,
        group_id: str,
        vector: np.ndarray,
        *,
        limit: int,
        offset: int = 0,
        min_cosine: float = -1.0,
        where: Expr | None = None,
    ) -> list[Hit]:
        """Best first. Returns ``limit`` hits whenever that many images pass ``where`` and
        ``min_cosine`` (a selective filter never silently loses results)."""

    def iter_group(
        self, group_id: str, *, batch: int = 1000, thumbnails: bool = True
    ) -> Iterator[list[tuple[ImageRecord, np.ndarray, bytes | None]]]:
        """Every picture of a group with its unit vector and thumbnail (None with ``thumbnails=False``:
        duplicates need only the vectors), in batches (migration, duplicates)."""

    def import_images(self, rows: Sequence[tuple[ImageRecord, np.ndarray, bytes | None]]) -> int:
        """Bulk insert without the per-picture checks (migration, benchmarks): the caller vouches
        that the groups exist and the names are new. Returns the number stored."""

    def close(self) -> None: ...
