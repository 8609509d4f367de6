"""The scale-out store: galleries held in Milvus, a distributed vector database.

Chosen by ``LOOKALIKE_MILVUS_URI``. Everything lives in Milvus, so any number of lookalike
servers can share one Milvus cluster:

* ``<prefix>_groups``: one row per group (Milvus wants a vector in every collection: a 2-d dummy).
* ``<prefix>_<model>``: one collection per model, every group's images in it, the group a
  filtered field. Not a partition per group: Milvus caps partitions per collection (4096) while
  groups are created freely, by every tenant. Not a partition key either: with Milvus 2.3.5 an
  upsert into a partition-key collection lands outside the key's partition, and a filtered
  read no longer finds the row (found while building this; see docs/benchmarks.md, "Milvus",
  for the search cost of the filter). HNSW index on the vectors (inner product of unit vectors
  = cosine).
* ``<prefix>_thumbnails``: the small JPEGs the web page shows (optional: they cost memory in
  Milvus, ``LOOKALIKE_MILVUS_THUMBNAILS=false`` keeps them out).
* ``<prefix>_features``: each picture's local features (``LocalFeatures.to_bytes``, ~130 KB at
  1000 keypoints: Milvus holds them in memory too), keyed like the picture, with its group (a
  re-created group clears its leftovers) and the picture's ``create_time`` as a stamp: features
  are only returned while the picture row has the same stamp, so a picture re-added under the
  same name never gets its predecessor's features, whatever a crash or a race left behind.

Tags are kept three times: as given (returned), and two derived JSON fields that hold each tag
in the readings the filter rules compare (:mod:`~lookalike.storage.filters`): ``tag_num``
(the number reading, where there is one) and ``tag_str`` (the text reading). Each comparison, as
``filters.decide`` rules it, compiles to a Milvus expression over one of them, so
Milvus filters inside the search and a selective filter still returns ``limit`` hits.

Consistency (``LOOKALIKE_MILVUS_CONSISTENCY``): by default ("Session") a read of a collection
this process wrote to in the last :data:`SESSION_S` seconds runs at Milvus' *Strong* level, so
an acknowledged write is visible to the next search; other reads run at *Bounded* staleness and
do not wait for a time tick (Strong costs one: 200 ms at Milvus' default ``proxy.timeTickInterval``,
measured). pymilvus' own Session level is not used: with a 2.3 server it misses this process's
deletes. Several lookalike servers behind one load balancer see each other's writes within
Milvus' bounded staleness (5 s by default); "Strong" makes every read see every acknowledged
write, at a tick per read.

Constraints (unique PicName, 10 pictures per entity, MaxCapacity) are checked under a per-group
lock of this process, against Milvus at Bounded staleness merged with this process's own recent
writes (so an ingest does not wait for a tick per picture). A picture's primary key is a hash of
its group and PicName, so two servers racing to add the same PicName cannot make two rows: the
last write wins. An acknowledged write is in Milvus' write-ahead log (its message queue) and
survives the lookalike process being killed.

No unreachable picture: HNSW's neighbour pruning can leave a tight family of near-copies linked
only among itself, an island no search walks into (2 of 20k imported pictures, siblings at
cosine 0.998). Milvus' graph is not ours to check or repair, so each row also carries a
*reach key*, 16 bits of random-hyperplane hashing of its vector, and a search that does not
return its own vector first also reads the rows sharing its key and merges them in
(:meth:`MilvusStore._reached`): a picture searched with its own bytes is always among them.

Three modules: :mod:`~lookalike.storage.milvus_schema` (the layout: keys, tag encodings, the
filter compiler, blobs), :mod:`~lookalike.storage.milvus_session` (session consistency and the
recent-writes overlay) and this one, the store. The gallery rules are
:mod:`~lookalike.storage.rules`'s; this backend supplies their facts under its per-group lock.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from lookalike import errors
from lookalike.storage.base import GroupRecord, Hit, ImageRecord, unit_vector
from lookalike.storage.filters import Expr
from lookalike.storage.milvus_schema import (  # noqa: F401 - compile_filter, _collection_name: tests, bench
    _DUMMY,
    FEATURE_BATCH,
    FEATURE_FIELDS,
    FILTERED_EF_FACTOR,
    MAX_TOPK,
    REACH_ROWS,
    THUMB_CHUNK,
    THUMB_FIELDS,
    _blob,
    _blob_fields,
    _blob_row,
    _collection_name,
    _escape,
    _in_group,
    compile_filter,
    picture_key,
    reach_key,
    tag_numbers,
    tag_texts,
)
from lookalike.storage.milvus_session import RECENT_S, SESSION_S, RecentWrites  # noqa: F401
from lookalike.storage.rules import check_new_picture, group_exists, group_full, in_namespace, no_such_group, stamps

log = logging.getLogger(__name__)

SAME_VECTOR_COSINE = 1.0 - 1e-6
"""A hit this close is the query's own vector (float32 rounding aside): nothing can rank above it."""

class MilvusStore:
    """The :class:`~lookalike.storage.base.Store` over a Milvus server or cluster. Thread-safe."""

    def __init__(
        self,
        uri: str,
        *,
        token: str = "",
        db_name: str = "",
        prefix: str = "lookalike",
        dim: int = 512,
        consistency: str = "Session",
        thumbnails: bool = True,
        features: bool = True,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 200,
        hnsw_ef: int = 128,
        timeout: float = 10.0,
    ) -> None:
        """``timeout``: seconds one call to Milvus may take, retries included, before StoreUnavailable.
        ``features=False``: local features are neither stored nor returned (they cost Milvus memory)."""
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise errors.StoreUnavailable(
                "LOOKALIKE_MILVUS_URI is set but pymilvus is not installed: pip install 'lookalike[milvus]'"
            ) from exc
        if consistency not in ("Strong", "Session", "Bounded", "Eventually"):
            raise ValueError("consistency must be Strong, Session, Bounded or Eventually")
        self.uri = uri
        self.prefix = prefix
        self.dim = dim
        self.consistency = consistency
        self.thumbnails = thumbnails
        self.features = features
        self.hnsw = {"M": hnsw_m, "efConstruction": hnsw_ef_construction}
        self.hnsw_ef = hnsw_ef
        self.timeout = max(1, math.ceil(timeout))  # pymilvus ignores a float timeout (and retries for minutes)
        self._closed = False
        self._recent = RecentWrites()
        self._group_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._writes: dict[str, float] = {}
        """collection -> when this process last wrote to it (monotonic)."""
        self._group_cache: dict[str, tuple[float, GroupRecord | None]] = {}
        """group id -> (when read, record or None): this process's own group writes, and reads
        of others' for :data:`SESSION_S` seconds."""
        self._ready: set[str] = set()
        self._ready_lock = threading.Lock()
        self._keyed: set[str] = set()
        """Images collections whose rows carry a reach key (:func:`reach_key`)."""
        with self._unavailable():
            kwargs: dict[str, Any] = {"uri": uri, "timeout": timeout}
            if token:
                kwargs["token"] = token
            if db_name:
                kwargs["db_name"] = db_name
            self.client = MilvusClient(**kwargs)
            self.groups_collection = f"{prefix}_groups"
            self.thumbnails_collection = f"{prefix}_thumbnails"
            self.features_collection = f"{prefix}_features"
            self._ensure(self.groups_collection, self._groups_schema)
            if thumbnails:
                self._ensure(self.thumbnails_collection, self._thumbnails_schema)
            if features:
                self._ensure(self.features_collection, self._features_schema)

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        """Milvus' own failures (unreachable, timed out) become StoreUnavailable (503)."""
        if self._closed:
            raise RuntimeError("the store is closed")
        from grpc import RpcError
        from pymilvus.exceptions import MilvusException

        try:
            yield
        except errors.LookalikeError:
            raise
        except MilvusException as exc:
            raise errors.StoreUnavailable(f"Milvus at {self.uri} failed: {exc.message}") from exc
        except RpcError as exc:  # some pymilvus calls (create_collection) let gRPC's own errors through
            raise errors.StoreUnavailable(f"Milvus at {self.uri} failed: {exc}") from exc
        except (ConnectionError, TimeoutError) as exc:
            raise errors.StoreUnavailable(f"Milvus at {self.uri} is unreachable: {exc}") from exc

    def _ensure(self, name: str, schema_of) -> None:
        """Create (if missing) and load a collection; another process may race us to it."""
        with self._ready_lock:
            if name in self._ready:
                return
            from pymilvus.exceptions import MilvusException

            if not self.client.has_collection(name, timeout=self.timeout):
                schema, index = schema_of()
                try:
                    self.client.create_collection(
                        name, schema=schema, index_params=index, consistency_level="Bounded", timeout=self.timeout
                    )
                except MilvusException:
                    if not self.client.has_collection(name, timeout=self.timeout):
                        raise
            self.client.load_collection(name, timeout=self.timeout)
            if schema_of == self._images_schema:
                self._note_reach_keys(name)
            self._ready.add(name)

    def _note_reach_keys(self, name: str) -> None:
        """Whether an images collection has reach keys (collections made before them do not:
        Milvus 2.3 cannot add a field, so such a collection keeps working without the island
        remedy until its galleries are copied out and back into a new prefix, ``lookalike migrate``)."""
        fields = {field["name"] for field in self.client.describe_collection(name, timeout=self.timeout)["fields"]}
        if "reach_key" in fields:
            self._keyed.add(name)
        else:
            log.warning(
                "Milvus collection %s predates reach keys: a picture on an island of its HNSW graph may not be "
                "found even by its own bytes; to add them, copy the galleries out and back: `lookalike migrate "
                "--to sqlite`, then `lookalike migrate --to milvus` with a new LOOKALIKE_MILVUS_PREFIX",
                name,
            )

    def _base_schema(self, pk_type):
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        if pk_type == "int":
            schema.add_field("pk", DataType.INT64, is_primary=True)
        else:
            schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=512)
        return schema, DataType

    def _dummy_index(self):
        index = self.client.prepare_index_params()
        index.add_index("vec", index_type="FLAT", metric_type="IP")
        return index

    def _groups_schema(self):
        schema, T = self._base_schema("str")
        schema.add_field("group_name", T.VARCHAR, max_length=1024)
        schema.add_field("brief", T.VARCHAR, max_length=4096)
        schema.add_field("max_capacity", T.INT64)
        schema.add_field("max_qps", T.INT64)
        schema.add_field("group_type", T.INT64)
        schema.add_field("model", T.VARCHAR, max_length=128)
        schema.add_field("create_time", T.DOUBLE)
        schema.add_field("update_time", T.DOUBLE)
        schema.add_field("vec", T.FLOAT_VECTOR, dim=2)
        return schema, self._dummy_index()

    def _thumbnails_schema(self):
        schema, T = self._base_schema("int")
        for name in _blob_fields(THUMB_FIELDS):
            schema.add_field(name, T.VARCHAR, max_length=THUMB_CHUNK)
        schema.add_field("vec", T.FLOAT_VECTOR, dim=2)
        return schema, self._dummy_index()

    def _features_schema(self):
        schema, T = self._base_schema("int")
        schema.add_field("group_id", T.VARCHAR, max_length=512)
        schema.add_field("stamp", T.DOUBLE)
        for name in _blob_fields(FEATURE_FIELDS):
            schema.add_field(name, T.VARCHAR, max_length=THUMB_CHUNK)
        schema.add_field("vec", T.FLOAT_VECTOR, dim=2)
        return schema, self._dummy_index()

    def _images_schema(self):
        schema, T = self._base_schema("int")
        schema.add_field("group_id", T.VARCHAR, max_length=512)
        schema.add_field("entity_id", T.VARCHAR, max_length=512)
        schema.add_field("pic_name", T.VARCHAR, max_length=512)
        schema.add_field("custom_content", T.VARCHAR, max_length=THUMB_CHUNK)
        schema.add_field("tags", T.JSON)
        schema.add_field("tag_num", T.JSON)
        schema.add_field("tag_str", T.JSON)
        schema.add_field("rect", T.VARCHAR, max_length=128)
        schema.add_field("create_time", T.DOUBLE)
        schema.add_field("update_time", T.DOUBLE)
        schema.add_field("reach_key", T.INT64)
        schema.add_field("vec", T.FLOAT_VECTOR, dim=self.dim)
        index = self.client.prepare_index_params()
        index.add_index("vec", index_type="HNSW", metric_type="IP", params=self.hnsw)
        return schema, index

    def _images(self, group_id: str) -> str | None:
        """The collection that holds the group's images (None: no such group)."""
        cached = self._group_cache.get(group_id)
        group = cached[1] if cached is not None and cached[1] is not None else None  # a model never changes
        if group is None:
            group = self.get_group(group_id, count=False)
            if group is None:
                return None
        name = _collection_name(self.prefix, group.model)
        self._ensure(name, self._images_schema)
        return name

    def _lock(self, group_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._group_locks.setdefault(group_id, threading.Lock())

    def _level(self, collection: str) -> str:
        """The consistency level of a read (see the module's docstring)."""
        if self.consistency != "Session":
            return self.consistency
        if collection == self.groups_collection:
            return "Bounded"  # this process's own group writes are in _group_cache
        wrote = self._writes.get(collection)
        return "Strong" if wrote is not None and time.monotonic() - wrote < SESSION_S else "Bounded"

    def _insert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        self.client.insert(collection, rows, timeout=self.timeout)
        self._writes[collection] = time.monotonic()

    def _upsert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        self.client.upsert(collection, rows, timeout=self.timeout)
        self._writes[collection] = time.monotonic()

    def _delete(self, collection: str, keys: list[int] | list[str]) -> None:
        self.client.delete(collection, ids=keys, timeout=self.timeout)
        self._writes[collection] = time.monotonic()

    def _get(self, collection: str, keys: list[int] | list[str], fields: list[str]) -> list[dict]:
        return self.client.get(
            collection, ids=keys, output_fields=fields, consistency_level=self._level(collection), timeout=self.timeout
        )

    def _query(self, collection: str, expr: str, fields: list[str], *, consistency: str | None = None) -> list[dict]:
        """Every row matching ``expr`` (paged past Milvus' query window)."""
        level = consistency or self._level(collection)
        fields = list({"pk", *fields})
        rows = self.client.query(
            collection, filter=expr, output_fields=fields, limit=MAX_TOPK, consistency_level=level, timeout=self.timeout
        )
        if len(rows) < MAX_TOPK:
            return rows
        # More than one window: Milvus' iterator pages by primary key.
        out: list[dict] = []
        iterator = self.client.query_iterator(
            collection, batch_size=MAX_TOPK // 4, filter=expr, output_fields=fields, consistency_level=level,
            timeout=self.timeout,
        )
        try:
            while page := iterator.next():
                out.extend(page)
        finally:
            iterator.close()
        return out

    def _count(self, collection: str, expr: str, *, consistency: str | None = None) -> int:
        rows = self.client.query(
            collection,
            filter=expr,
            output_fields=["count(*)"],
            consistency_level=consistency or self._level(collection),
            timeout=self.timeout,
        )
        return int(rows[0]["count(*)"]) if rows else 0

    # ------------------------------------------------------------------ groups

    def _group_record(self, row: dict, pic_count: int) -> GroupRecord:
        return GroupRecord(
            group_id=row["pk"],
            group_name=row["group_name"],
            brief=row["brief"],
            max_capacity=int(row["max_capacity"]),
            max_qps=int(row["max_qps"]),
            group_type=int(row["group_type"]),
            model=row["model"],
            pic_count=pic_count,
            create_time=float(row["create_time"]),
            update_time=float(row["update_time"]),
        )

    _GROUP_FIELDS = [
        "group_name", "brief", "max_capacity", "max_qps", "group_type", "model", "create_time", "update_time"
    ]

    def create_group(self, group: GroupRecord) -> None:
        created, updated = stamps(group.create_time, group.update_time)
        record = dataclasses.replace(group, pic_count=0, create_time=created, update_time=updated)
        with self._unavailable(), self._lock(group.group_id):
            if self.get_group(group.group_id, count=False) is not None:
                raise group_exists(group.group_id)
            self._ensure(_collection_name(self.prefix, group.model), self._images_schema)
            side = (self.groups_collection, self.thumbnails_collection, self.features_collection)
            for name in self.client.list_collections(timeout=self.timeout):  # a delete_group cut short left rows behind
                if name.startswith(f"{self.prefix}_") and name not in side:
                    self._ensure(name, self._images_schema)
                    self._delete_rows(name, _in_group(group.group_id))
            if self.features:
                self._delete_rows(self.features_collection, _in_group(group.group_id))
            self._recent.forget_group(group.group_id)
            row = {field: getattr(record, field) for field in self._GROUP_FIELDS}
            self._insert(self.groups_collection, [{**row, "pk": record.group_id, "vec": _DUMMY}])
            self._remember(record.group_id, record)

    def get_group(self, group_id: str, *, count: bool = True) -> GroupRecord | None:
        """``count=False`` skips counting the pictures (a query over the group), for callers
        that only need the group's settings."""
        with self._unavailable():
            cached = self._group_cache.get(group_id)
            if cached is not None and time.monotonic() - cached[0] < SESSION_S:
                group = cached[1]
            else:
                # Bounded: this process's own recent group writes are in the cache.
                rows = self._get(self.groups_collection, [group_id], self._GROUP_FIELDS)
                group = self._group_record(rows[0], 0) if rows else None
                self._remember(group_id, group)
            if group is None:
                return None
            if count:
                group = dataclasses.replace(group, pic_count=self._pic_count(group_id, group.model))
        return group

    def _remember(self, group_id: str, group: GroupRecord | None) -> None:
        self._group_cache[group_id] = (time.monotonic(), group)

    def _pic_count(self, group_id: str, model: str) -> int:
        name = _collection_name(self.prefix, model)
        self._ensure(name, self._images_schema)
        return self._count(name, _in_group(group_id))

    def list_groups(self, offset: int, limit: int, *, namespace: str | None = "") -> tuple[list[GroupRecord], int]:
        """``namespace=None``: every group of every tenant (migrations)."""
        with self._unavailable():
            expr = f"pk like {_escape(namespace.replace('%', '') + '%')}" if namespace else 'pk != ""'
            rows = self._query(self.groups_collection, expr, self._GROUP_FIELDS)
            found = {r["pk"]: self._group_record(r, 0) for r in rows}
            now = time.monotonic()
            for group_id, (stamp, cached) in list(self._group_cache.items()):
                if now - stamp < SESSION_S:  # fresher than a Bounded read: this process's own writes
                    if cached is None:
                        found.pop(group_id, None)
                    else:
                        found[group_id] = cached
            groups = [g for g in found.values() if in_namespace(g.group_id, namespace)]
            groups.sort(key=lambda g: (g.create_time, g.group_id))
            page = groups[max(offset, 0) : max(offset, 0) + max(limit, 0)]
            out = [dataclasses.replace(g, pic_count=self._pic_count(g.group_id, g.model)) for g in page]
        return out, len(groups)

    def delete_group(self, group_id: str) -> None:
        with self._unavailable(), self._lock(group_id):
            collection = self._images(group_id)
            if collection is None:
                raise no_such_group(group_id)
            # The group row goes first: from then on the group does not exist for anyone, and a
            # crash halfway leaves orphan rows that a re-created group's key never reaches
            # (create_group clears them).
            self._delete(self.groups_collection, [group_id])
            self._remember(group_id, None)
            self._delete_rows(collection, _in_group(group_id))
            self._recent.forget_group(group_id)

    def _delete_rows(self, collection: str, expr: str) -> list[int]:
        """Delete by primary keys, in chunks (a delete by expression is a query first anyway),
        with the pictures' features (first: never features without their picture) and thumbnails."""
        keys = [int(r["pk"]) for r in self._query(collection, expr, ["pk"], consistency="Strong")]
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            if self.features and collection != self.features_collection:
                self._delete(self.features_collection, chunk)
            self._delete(collection, chunk)
            if self.thumbnails and collection != self.features_collection:
                self._delete(self.thumbnails_collection, chunk)
        return keys

    # ------------------------------------------------------------------ images

    def _row(self, collection: str, image: ImageRecord, key: int, vec: np.ndarray) -> dict[str, Any]:
        row = {
            "pk": key,
            "group_id": image.group_id,
            "entity_id": image.entity_id,
            "pic_name": image.pic_name,
            "custom_content": image.custom_content,
            "tags": dict(image.tags),
            "tag_num": tag_numbers(image.tags),
            "tag_str": tag_texts(image.tags),
            "rect": "" if image.rect is None else json.dumps(list(image.rect)),
            "create_time": image.create_time,
            "update_time": image.update_time,
            "vec": vec.tolist(),
        }
        if collection in self._keyed:
            row["reach_key"] = reach_key(vec)
        return row

    @staticmethod
    def _record(row: dict) -> ImageRecord:
        return ImageRecord(
            group_id=row["group_id"],
            entity_id=row["entity_id"],
            pic_name=row["pic_name"],
            custom_content=row["custom_content"],
            tags=dict(row["tags"] or {}),
            rect=tuple(json.loads(row["rect"])) if row["rect"] else None,
            create_time=float(row["create_time"]),
            update_time=float(row["update_time"]),
        )

    _IMAGE_FIELDS = [
        "group_id", "entity_id", "pic_name", "custom_content", "tags", "rect", "create_time", "update_time"
    ]

    def _fresh(self, collection: str, group_id: str, expr: str, keep) -> dict[int, ImageRecord]:
        """Rows of the group matching ``expr`` as this process last knows them: Milvus at
        Bounded staleness, overlaid with this process's own recent writes (``keep`` is the same
        condition as a Python predicate on a record, for those)."""
        rows = self._query(collection, f"{_in_group(group_id)} and ({expr})", self._IMAGE_FIELDS, consistency="Bounded")
        found = {int(r["pk"]): self._record(r) for r in rows}
        for key, record in self._recent.of_group(group_id).items():
            if record is None or not keep(record):
                found.pop(key, None)
            else:
                found[key] = record
        return found

    def add_image(
        self,
        image: ImageRecord,
        vector: np.ndarray,
        *,
        max_per_entity: int,
        thumbnail: bytes | None = None,
        features: bytes | None = None,
    ) -> None:
        vec = unit_vector(vector, self.dim)
        created, updated = stamps(image.create_time, image.update_time)
        record = dataclasses.replace(image, tags=dict(image.tags), create_time=created, update_time=updated)
        with self._unavailable(), self._lock(image.group_id):
            group = self.get_group(image.group_id, count=False)
            if group is None:
                raise no_such_group(image.group_id)
            collection = self._images(image.group_id)
            assert collection is not None
            key = picture_key(image.group_id, image.pic_name)
            near = self._fresh(
                collection,
                image.group_id,
                f"pic_name == {_escape(image.pic_name)} or entity_id == {_escape(image.entity_id)}",
                lambda r: r.pic_name == image.pic_name or r.entity_id == image.entity_id,
            )
            check_new_picture(
                image.group_id,
                image.pic_name,
                image.entity_id,
                name_taken=any(r.pic_name == image.pic_name for r in near.values()),
                entity_count=sum(1 for r in near.values() if r.entity_id == image.entity_id),
                max_per_entity=max_per_entity,
                group_count=None,  # counted below only where the group has a capacity (a query)
                capacity=group.max_capacity,
            )
            if group.max_capacity > 0:
                self._check_capacity(collection, group)
            self._insert(collection, [self._row(collection, record, key, vec)])
            if thumbnail is not None and self.thumbnails:
                self._put_thumbnail(key, thumbnail)
            if features is not None and self.features:
                row = self._features_row(key, record, features)
                if row is not None:
                    self._upsert(self.features_collection, [row])
            self._recent.put(key, image.group_id, record)

    def _check_capacity(self, collection: str, group: GroupRecord) -> None:
        expr = _in_group(group.group_id)
        recent = sum(1 for r in self._recent.of_group(group.group_id).values() if r is not None)
        if self._count(collection, expr, consistency="Bounded") + recent < group.max_capacity:
            return  # an upper bound of the count is below the capacity: no need to wait
        if self._count(collection, expr, consistency="Strong") >= group.max_capacity:
            raise group_full(group.group_id, group.max_capacity)

    @staticmethod
    def _thumbnail_row(key: int, data: bytes) -> dict[str, Any] | None:
        fields = _blob_row(data, THUMB_FIELDS)
        if fields is None:
            log.warning("thumbnail of %d bytes not stored in Milvus (too large)", len(data))
            return None
        return {"pk": key, **fields, "vec": _DUMMY}

    def _put_thumbnail(self, key: int, data: bytes) -> None:
        row = self._thumbnail_row(key, data)
        if row is not None:
            self._upsert(self.thumbnails_collection, [row])

    @staticmethod
    def _features_row(key: int, record: ImageRecord, data: bytes) -> dict[str, Any] | None:
        """The features' row, stamped with the picture's create_time (None: too large, logged)."""
        fields = _blob_row(data, FEATURE_FIELDS)
        if fields is None:
            log.warning(
                "local features of %d bytes of picture %r not stored in Milvus (too large)", len(data), record.pic_name
            )
            return None
        return {"pk": key, "group_id": record.group_id, "stamp": record.create_time, **fields, "vec": _DUMMY}

    def _current(self, collection: str, group_id: str, keys: list[int]) -> dict[int, ImageRecord]:
        """Those of ``keys`` that are pictures of the group, as this process last knows them
        (Milvus, overlaid with this process's own recent writes)."""
        found: dict[int, ImageRecord] = {}
        for start in range(0, len(keys), 1000):
            chunk = self._by_keys(collection, keys[start : start + 1000])
            found.update((k, r) for k, r in chunk.items() if r.group_id == group_id)
        wanted = set(keys)
        for key, record in self._recent.of_group(group_id).items():
            if key in wanted:
                if record is None:
                    found.pop(key, None)
                else:
                    found[key] = record
        return found

    def get_vectors(self, group_id: str, pic_names: Sequence[str]) -> dict[str, np.ndarray]:
        names = {picture_key(group_id, name): name for name in dict.fromkeys(pic_names)}
        with self._unavailable():
            collection = self._images(group_id)
            if collection is None or not names:
                return {}
            gone = {k for k, r in self._recent.of_group(group_id).items() if r is None}
            keys = [k for k in names if k not in gone]
            out: dict[str, np.ndarray] = {}
            for start in range(0, len(keys), 1000):
                for row in self._get(collection, keys[start : start + 1000], ["group_id", "vec"]):
                    if row["group_id"] == group_id:
                        out[names[int(row["pk"])]] = np.asarray(row["vec"], dtype=np.float32)
        return out

    def get_features(self, group_id: str, pic_names: Sequence[str]) -> dict[str, bytes]:
        """Only features stamped with the picture's current create_time (see the module's docstring)."""
        if not self.features:
            return {}
        names = {picture_key(group_id, name): name for name in dict.fromkeys(pic_names)}
        fields = ["group_id", "stamp", *_blob_fields(FEATURE_FIELDS)]
        out: dict[str, bytes] = {}
        with self._unavailable():
            collection = self._images(group_id)
            if collection is None or not names:
                return {}
            stamps = {k: r.create_time for k, r in self._current(collection, group_id, list(names)).items()}
            keys = list(stamps)
            for start in range(0, len(keys), FEATURE_BATCH):
                for row in self._get(self.features_collection, keys[start : start + FEATURE_BATCH], fields):
                    key = int(row["pk"])
                    if row["group_id"] == group_id and float(row["stamp"]) == stamps.get(key):
                        out[names[key]] = _blob(row, FEATURE_FIELDS)
        return out

    def put_features(self, group_id: str, features: dict[str, bytes]) -> int:
        """Stores (replaces) the features of the group's existing pictures (migrations); ones too
        large for Milvus are logged and leave the picture without features."""
        if not features:
            return 0
        with self._unavailable(), self._lock(group_id):
            collection = self._images(group_id)
            if collection is None:
                return 0
            names = {picture_key(group_id, name): name for name in features}
            records = self._current(collection, group_id, list(names))
            found = {k: r for k, r in records.items() if r.pic_name == names[k]}
            if not self.features:
                return len(found)
            rows, dropped = [], []
            for key, record in found.items():
                row = self._features_row(key, record, features[names[key]])
                if row is None:
                    dropped.append(key)
                else:
                    rows.append(row)
            if dropped:
                self._delete(self.features_collection, dropped)
            for start in range(0, len(rows), FEATURE_BATCH):
                self._upsert(self.features_collection, rows[start : start + FEATURE_BATCH])
        return len(found)

    def import_images(self, rows: Sequence[tuple[ImageRecord, np.ndarray, bytes | None]]) -> int:
        """Bulk insert without per-picture checks (migration, benchmarks): the caller vouches
        that the names are new and the groups exist. Re-importing a picture overwrites it."""
        by_collection: dict[str, list[dict[str, Any]]] = {}
        thumbs: list[tuple[int, bytes]] = []
        with self._unavailable():
            for record, vector, thumb in rows:
                collection = self._images(record.group_id)
                if collection is None:
                    raise no_such_group(record.group_id)
                key = picture_key(record.group_id, record.pic_name)
                image_row = self._row(collection, record, key, unit_vector(vector, self.dim))
                by_collection.setdefault(collection, []).append(image_row)
                if thumb is not None and self.thumbnails:
                    thumbs.append((key, thumb))
            for collection, batch in by_collection.items():
                self._upsert(collection, batch)
            thumb_rows = [row for key, thumb in thumbs if (row := self._thumbnail_row(key, thumb)) is not None]
            for start in range(0, len(thumb_rows), 256):  # one call per 256 (at most ~33 MiB), not per picture
                self._upsert(self.thumbnails_collection, thumb_rows[start : start + 256])
        return sum(len(b) for b in by_collection.values())

    def _match(self, entity_id: str, pic_name: str | None) -> tuple[str, Any]:
        expr = f"entity_id == {_escape(entity_id)}"
        if pic_name is not None:
            expr += f" and pic_name == {_escape(pic_name)}"
        return expr, lambda r: r.entity_id == entity_id and (pic_name is None or r.pic_name == pic_name)

    def get_images(self, group_id: str, entity_id: str, pic_name: str | None = None) -> list[ImageRecord]:
        with self._unavailable():
            collection = self._images(group_id)
            if collection is None:
                return []
            found = self._fresh(collection, group_id, *self._match(entity_id, pic_name))
        return [found[k] for k in sorted(found, key=lambda k: (found[k].create_time, found[k].pic_name))]

    def get_image(self, group_id: str, pic_name: str) -> ImageRecord | None:
        with self._unavailable():
            collection = self._images(group_id)
            if collection is None:
                return None
            found = self._fresh(
                collection, group_id, f"pic_name == {_escape(pic_name)}", lambda r: r.pic_name == pic_name
            )
        return next(iter(found.values()), None)

    def list_images(self, group_id: str, offset: int, limit: int) -> tuple[list[ImageRecord], int]:
        """Newest first. Milvus cannot sort a query, so this reads the group's keys and times
        (O(group size)); browsing is for people, searching is what scales."""
        with self._unavailable():
            collection = self._images(group_id)
            if collection is None:
                return [], 0
            rows = self._query(collection, _in_group(group_id), ["create_time"])
            rows.sort(key=lambda r: (-r["create_time"], -int(r["pk"])))
            page = [int(r["pk"]) for r in rows[max(offset, 0) : max(offset, 0) + max(limit, 0)]]
            records = self._by_keys(collection, page)
        return [records[k] for k in page if k in records], len(rows)

    def _by_keys(self, collection: str, keys: list[int]) -> dict[int, ImageRecord]:
        if not keys:
            return {}
        rows = self._get(collection, keys, self._IMAGE_FIELDS)
        return {int(r["pk"]): self._record(r) for r in rows}

    def pic_names(self, group_id: str) -> set[str]:
        with self._unavailable():
            collection = self._images(group_id)
            if collection is None:
                return set()
            return {r["pic_name"] for r in self._query(collection, _in_group(group_id), ["pic_name"])}

    def get_thumbnail(self, group_id: str, pic_name: str) -> bytes | None:
        if not self.thumbnails or self.get_image(group_id, pic_name) is None:
            return None
        with self._unavailable():
            rows = self._get(self.thumbnails_collection, [picture_key(group_id, pic_name)], _blob_fields(THUMB_FIELDS))
        return _blob(rows[0], THUMB_FIELDS) if rows else None

    def update_images(
        self,
        group_id: str,
        entity_id: str,
        pic_name: str | None,
        *,
        tags: dict[str, object] | None = None,
        custom_content: str | None = None,
    ) -> int:
        with self._unavailable(), self._lock(group_id):
            collection = self._images(group_id)
            if collection is None:
                return 0
            expr, _ = self._match(entity_id, pic_name)
            rows = self._query(
                collection, f"{_in_group(group_id)} and {expr}", [*self._IMAGE_FIELDS, "vec"],
                consistency="Strong",
            )
            if not rows:
                return 0
            now = time.time()
            updated = []
            for row in rows:
                record = self._record(row)
                if tags is not None:
                    record.tags = dict(tags)
                if custom_content is not None:
                    record.custom_content = custom_content
                record.update_time = now
                updated.append((record, int(row["pk"]), np.asarray(row["vec"], dtype=np.float32)))
            self._upsert(collection, [self._row(collection, r, k, v) for r, k, v in updated])
            for record, key, _ in updated:
                self._recent.put(key, group_id, record)
        return len(updated)

    def delete_images(self, group_id: str, entity_id: str, pic_name: str | None = None) -> int:
        with self._unavailable(), self._lock(group_id):
            collection = self._images(group_id)
            if collection is None:
                return 0
            expr, _ = self._match(entity_id, pic_name)
            keys = self._delete_rows(collection, f"{_in_group(group_id)} and {expr}")
            for key in keys:
                self._recent.put(key, group_id, None)
        return len(keys)

    # ------------------------------------------------------------------ search

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
        """HNSW inside Milvus, the group and the tag filter applied by Milvus during the search,
        merged with the rows that share the query's reach key (:meth:`_reached`)."""
        if limit <= 0:
            return []
        q = unit_vector(vector, self.dim)
        offset = max(offset, 0)
        top = min(offset + limit, MAX_TOPK)
        if offset >= top:
            return []
        with self._unavailable():
            collection = self._images(group_id)
            if collection is None:
                return []
            expr = _in_group(group_id)
            ef = max(self.hnsw_ef, top)
            if where is not None:
                expr += f" and {compile_filter(where)}"
                ef = min(MAX_TOPK, ef * FILTERED_EF_FACTOR)
            result = self.client.search(
                collection,
                data=[q.tolist()],
                filter=expr,
                limit=top,
                output_fields=self._IMAGE_FIELDS,
                search_params={"metric_type": "IP", "params": {"ef": ef}},
                consistency_level=self._level(collection),
                timeout=self.timeout,
            )
            ranked = [(min(1.0, float(item["distance"])), int(item["id"]), item["entity"]) for item in result[0]]
            if collection in self._keyed and not (ranked and ranked[0][0] >= SAME_VECTOR_COSINE):
                ranked = self._reached(collection, expr, q, ranked)[:top]
        hits = []
        for cosine, _, row in ranked[offset:]:
            if cosine < min_cosine:
                break
            hits.append(Hit(self._record(row), cosine))
        return hits

    def _reached(
        self, collection: str, expr: str, q: np.ndarray, ranked: list[tuple[float, int, dict]]
    ) -> list[tuple[float, int, dict]]:
        """``ranked`` (cosine, key, row) with the rows that share the query's reach key merged in.

        Milvus' HNSW, like any, prunes neighbour links so that a tight family of near-copies can
        end up linked only among itself: an island no walk reaches. Measured: in a 20k group
        built by imports, 2 pictures whose siblings sit at cosine 0.998 were not among their own
        top 10 (docs/benchmarks.md, "No unreachable picture"), and raising ``ef`` cannot reach a
        node with no links into it. A picture's reach key is a function of its vector, so the
        picture searched with its own bytes is among these rows whatever the graph. Skipped when
        the graph already returned the query's own vector first. Cost: one scalar query per
        other search (docs/benchmarks.md, "No unreachable picture")."""
        rows = self.client.query(
            collection,
            filter=f"reach_key == {reach_key(q)} and {expr}",
            output_fields=[*self._IMAGE_FIELDS, "vec"],
            limit=REACH_ROWS,
            consistency_level=self._level(collection),
            timeout=self.timeout,
        )
        seen = {key for _, key, _ in ranked}
        extra = [
            (min(1.0, float(np.dot(q, np.asarray(row["vec"], dtype=np.float32)))), int(row["pk"]), row)
            for row in rows
            if int(row["pk"]) not in seen
        ]
        if not extra:
            return ranked
        return sorted(ranked + extra, key=lambda item: -item[0])

    # ------------------------------------------------------------------ life cycle

    def iter_group(
        self, group_id: str, *, batch: int = 1000, thumbnails: bool = True
    ) -> Iterator[list[tuple[ImageRecord, np.ndarray, bytes | None]]]:
        """Every picture of a group with its vector and thumbnail, in batches (migration)."""
        with self._unavailable():
            collection = self._images(group_id)
            if collection is None:
                return
            keys = sorted(int(r["pk"]) for r in self._query(collection, _in_group(group_id), ["pk"]))
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            with self._unavailable():
                rows = self._get(collection, chunk, [*self._IMAGE_FIELDS, "vec"])
                thumbs: dict[int, bytes] = {}
                if self.thumbnails and thumbnails:
                    for t in self._get(self.thumbnails_collection, chunk, _blob_fields(THUMB_FIELDS)):
                        thumbs[int(t["pk"])] = _blob(t, THUMB_FIELDS)
            yield [
                (self._record(r), np.asarray(r["vec"], dtype=np.float32), thumbs.get(int(r["pk"])))
                for r in rows
            ]

    def drop_all(self) -> None:
        """Drop every collection of this prefix (tests, benchmarks)."""
        with self._unavailable():
            for name in self.client.list_collections(timeout=self.timeout):
                if name.startswith(f"{self.prefix}_"):
                    self.client.drop_collection(name, timeout=self.timeout)
            self._ready.clear()
            self._group_cache.clear()

    def close(self) -> None:
        """Marks the store closed. The connection stays open: pymilvus shares one connection
        among every client of the same URI, database and token in a process, so closing it here
        would break the others (another store, a migration's source or target)."""
        self._closed = True

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
