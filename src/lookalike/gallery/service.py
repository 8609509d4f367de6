"""Galleries: the one place where requests become store operations.

Every interface (Tencent dialect, native REST, CLI, bench) calls :class:`GalleryService`; the
dialects only translate field names and errors. Images arrive as bytes already fetched (the API
layer fetches URLs in a worker thread), are validated, decoded once (pixels for the model and a
thumbnail from the same decode), refused when flat, embedded with the group's own model, and
handed to the :class:`~lookalike.storage.base.Store`, which is durable when it returns.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from lookalike import errors, scores
from lookalike.engine import Engine, ImageInput
from lookalike.gallery import models as m
from lookalike.gallery import subject as sj
from lookalike.gallery import validation as v
from lookalike.gallery.duplicates import GroupDuplicates
from lookalike.gallery.filters import parse_filter
from lookalike.gallery.jobs import JobRunner
from lookalike.gallery.pictures import check_not_solid, thumbnail
from lookalike.gallery.rerank import rerank
from lookalike.gallery.reviews import ReviewStore
from lookalike.images.decode import Rect
from lookalike.limits import RateLimiter
from lookalike.models import get_spec
from lookalike.storage import rules
from lookalike.storage.base import GroupRecord, ImageRecord, Store
from lookalike.storage.filters import Expr


@dataclass
class _Prepared:
    record: ImageRecord
    pixels: np.ndarray
    thumbnail: bytes
    features: bytes | None
    subject: sj.Subject | None = None


class GalleryService(GroupDuplicates):
    """Groups, images, search and duplicate sets over one store and one engine. Thread-safe.

    One tenant's view (:class:`~lookalike.gallery.tenancy.TenantView`): :meth:`for_tenant` gives
    another tenant's, over the same store, in which the groups of every other tenant do not exist.
    The duplicate sets, their review marks and jobs are :class:`~lookalike.gallery.duplicates.GroupDuplicates`.
    """

    def __init__(
        self, store: Store, engine: Engine, *, workers: int | None = None, reviews: ReviewStore | None = None
    ) -> None:
        super().__init__(store)
        self.engine = engine
        # The operator's review marks beside the galleries, in the data dir (whatever the store).
        self.reviews = reviews or ReviewStore(engine.settings.data_dir / "reviews.db")
        self.jobs = JobRunner()
        self._pool = ThreadPoolExecutor(
            max_workers=workers or engine.settings.threads or os.cpu_count() or 2, thread_name_prefix="gallery"
        )
        self._closed = threading.Event()
        self._group_qps = RateLimiter()
        self.subjects = sj.SubjectFinder(engine.settings)

    def close(self) -> None:
        """Closes the store; idempotent."""
        if not self._closed.is_set():
            self._closed.set()
            self.jobs.close()
            self._pool.shutdown(wait=True)
            self.store.close()
            self.reviews.close()

    # ------------------------------------------------------------------ groups

    def create_group(
        self,
        group_id: str,
        group_name: str | None = None,
        *,
        brief: str | None = None,
        max_capacity: int | None = None,
        max_qps: int | None = None,
        group_type: int | None = None,
        model: str | None = None,
    ) -> GroupRecord:
        """``model`` (native API, CLI) or ``group_type`` (Tencent) picks the model, fixed from now on."""
        gid = v.group_id(group_id)
        name = v.group_name(gid if group_name is None else group_name)
        if model is not None:
            get_spec(model)  # ModelNotFound for a name we do not know
            if model not in m.MODEL_GROUP_TYPES:
                raise errors.ModelNotFound(f"model {model!r} cannot back a gallery")
            if group_type not in (None, 0) and m.GROUP_TYPE_MODELS.get(group_type) != model:
                raise errors.InvalidParameterValue(
                    f"GroupType {group_type} uses model {m.GROUP_TYPE_MODELS.get(group_type)!r}, not {model!r}"
                )
            gtype = group_type or m.MODEL_GROUP_TYPES[model]
        else:
            gtype = v.group_type(group_type)
        now = time.time()
        record = GroupRecord(
            group_id=gid,
            group_name=name,
            brief=v.brief(brief),
            max_capacity=v.non_negative_int(max_capacity, "MaxCapacity", 0),
            max_qps=v.non_negative_int(max_qps, "MaxQps", m.DEFAULT_MAX_QPS),
            group_type=gtype,
            model=m.GROUP_TYPE_MODELS[gtype],
            pic_count=0,
            create_time=now,
            update_time=now,
        )
        record.group_id = self._key(gid)
        self.store.create_group(record)
        return self._public(self.store.get_group(record.group_id) or record)

    def get_group(self, group_id: str, *, count: bool = True) -> GroupRecord:
        """The group (ImageGroupIdNotExist if there is none); ``count=False`` when only its
        existence or settings matter (PicCount costs a query on some backends)."""
        return self._public(self._group(group_id, count=count))

    def describe_groups(
        self, offset: int | None = 0, limit: int | None = m.DEFAULT_LIMIT, group_id: str | None = None
    ) -> tuple[list[GroupRecord], int]:
        """A page of groups and the total; with ``group_id``, just that group (or none: a filter)."""
        off, lim = v.offset(offset), v.limit(limit)
        if group_id:
            group = self.store.get_group(self._key(v.group_id(group_id)))
            return ([self._public(group)], 1) if group is not None else ([], 0)
        groups, total = self.store.list_groups(off, lim, namespace=self._namespace)
        return [self._public(g) for g in groups], total

    def delete_group(self, group_id: str) -> None:
        key = self._group(group_id).group_id
        self.store.delete_group(key)
        self.reviews.forget_group(key)

    # ------------------------------------------------------------------ images

    def add_image(self, group_id: str, image: m.NewImage) -> ImageRecord:
        return self.add_image_subject(group_id, image)[0]

    def add_image_subject(self, group_id: str, image: m.NewImage) -> tuple[ImageRecord, sj.Subject | None]:
        """The stored record and, in a product group, the subject region that was stored."""
        result, subject = self.add_images_subjects(group_id, [image])[0]
        if isinstance(result, errors.LookalikeError):
            raise result
        return result, subject

    def add_images(self, group_id: str, images: Sequence[m.NewImage]) -> list[ImageRecord | errors.LookalikeError]:
        """Adds a batch: decoded in parallel, embedded together, stored one by one.

        Each position holds the stored record or the error that refused that image; one bad
        image never stops the others. Every returned record is durable.
        """
        return [result for result, _ in self.add_images_subjects(group_id, images)]

    def add_uploads(
        self,
        group_id: str,
        uploads: Sequence[tuple[str, bytes]],
        *,
        entity_id: str | None = None,
        pic_name: str | None = None,
        custom_content: str = "",
        tags: dict[str, object] | None = None,
        rect: Rect | None = None,
    ) -> list[ImageRecord | errors.LookalikeError]:
        """Adds uploaded files, each ``(filename, bytes)``: a file's EntityId defaults to its name
        without the extension and its PicName to its name, so a folder's files upload as one
        entity each without naming anything. ``pic_name`` names one picture: with several files
        it is refused before any is stored (even empty: an HTML form's blank input)."""
        if pic_name is not None and len(uploads) > 1:
            raise errors.InvalidParameter(
                "pic_name names one picture: send one file, or let the file names be the names"
            )
        news = [
            m.NewImage(
                entity_id=entity_id or filename.rsplit(".", 1)[0],
                pic_name=pic_name or filename,
                image=data,
                custom_content=custom_content,
                tags=tags or {},
                rect=rect,
            )
            for filename, data in uploads
        ]
        return self.add_images(group_id, news)

    def add_prepared(
        self, group_id: str, news: Sequence[m.NewImage | errors.LookalikeError]
    ) -> list[ImageRecord | errors.LookalikeError]:
        """A batch where some slots already failed (a URL that did not download): the others are
        added, and each slot keeps its place."""
        ready = [n for n in news if isinstance(n, m.NewImage)]
        added = iter(self.add_images(group_id, ready) if ready else [])
        return [next(added) if isinstance(n, m.NewImage) else n for n in news]

    def add_images_subjects(
        self, group_id: str, images: Sequence[m.NewImage]
    ) -> list[tuple[ImageRecord | errors.LookalikeError, sj.Subject | None]]:
        """:meth:`add_images`, each result with the subject stored (product groups; else None)."""
        group = self._group(group_id)
        model = group.model
        results: list[ImageRecord | errors.LookalikeError | None] = [None] * len(images)

        def prepare(i: int) -> _Prepared | errors.LookalikeError:
            try:
                return self._prepare(group, images[i])
            except errors.LookalikeError as exc:
                return exc

        prepared = (
            list(self._pool.map(prepare, range(len(images)))) if len(images) > 1 else [prepare(0)] if images else []
        )
        ok = [(i, p) for i, p in enumerate(prepared) if isinstance(p, _Prepared)]
        for i, p in enumerate(prepared):
            if isinstance(p, errors.LookalikeError):
                results[i] = p
        if ok:
            pixels = [item.pixels for _, item in ok]
            vectors = self.engine.run(pixels, model=model, flip=self.engine.settings.index_flip)
            for (i, item), vector in zip(ok, vectors, strict=True):
                try:
                    self.store.add_image(
                        item.record,
                        vector,
                        max_per_entity=m.PICTURES_PER_ENTITY,
                        thumbnail=item.thumbnail,
                        features=item.features,
                    )
                    results[i] = self._public(item.record)
                except errors.LookalikeError as exc:
                    results[i] = exc
        subjects = [p.subject if isinstance(p, _Prepared) else None for p in prepared]
        done = [r for r in results if r is not None]  # every slot was filled: an error or a record
        return list(zip(done, subjects, strict=True))

    def _prepare(self, group: GroupRecord, new: m.NewImage) -> _Prepared:
        entity = v.entity_id(new.entity_id)
        pic = v.pic_name(new.pic_name)
        content = v.custom_content(new.custom_content)
        tags = v.tags(new.tags)
        if self.store.get_image(group.group_id, pic) is not None:  # fail before the costly part
            raise rules.picture_exists(group.group_id, pic)
        decoded, subject = self._region(
            group, new.image, new.rect, new.detect, new.category_id, self.subjects.for_picture
        )
        pixels = self.engine.geometry.pixels(decoded)
        check_not_solid(pixels, f"picture {pic!r}")
        features = self.engine.local_features(decoded)
        now = time.time()
        box = new.rect if subject is None else subject.box
        record = ImageRecord(
            group_id=group.group_id,
            entity_id=entity,
            pic_name=pic,
            custom_content=content,
            tags=tags,
            rect=None if box is None else (box.x, box.y, box.width, box.height),
            create_time=now,
            update_time=now,
        )
        return _Prepared(record, pixels, thumbnail(decoded), None if features is None else features.to_bytes(), subject)

    def _region(
        self,
        group: GroupRecord,
        image: ImageInput,
        rect: Rect | None,
        detect: bool,
        category_id: object,
        find: Callable[[Image.Image, int | None], sj.Subject],
    ) -> tuple[Image.Image, sj.Subject | None]:
        """(decoded pixels to embed, subject), the same for a stored picture and a query: in a
        product group the caller's ImageRect, else with ``detect`` the subject ``find`` picks in
        the whole picture (``category_id`` the category asked for); other groups embed the picture
        (or its ImageRect) and have no subject."""
        if not sj.is_product(group.group_type):
            return self.engine.decode(image, model=group.model, rect=rect), None
        requested = sj.category_id(category_id)
        if rect is not None:
            return self.engine.decode(image, model=group.model, rect=rect), sj.caller_rect(rect, requested)
        if not detect:
            return self.engine.decode(image, model=group.model), None
        full = self.engine.decode(image, model=group.model, full=True)
        subject = find(full, requested)
        return sj.crop(full, subject.box), subject

    def describe_images(self, group_id: str, entity_id: str, pic_name: str | None = None) -> list[ImageRecord]:
        """An entity's pictures (or one of them); ImageNotFound when there are none."""
        group, entity, pic = self._entity_pictures(group_id, entity_id, pic_name)
        found = self.store.get_images(group.group_id, entity, pic)
        if not found:
            raise self._not_found(group, pic, entity)
        return [self._public(r) for r in found]

    def _entity_pictures(
        self, group_id: str, entity_id: str, pic_name: str | None
    ) -> tuple[GroupRecord, str, str | None]:
        """(group, entity, picture or None) of a request about an entity's pictures (or one of
        them), each checked; an empty PicName means all the entity's pictures."""
        return self._group(group_id), v.entity_id(entity_id), v.pic_name(pic_name) if pic_name else None

    def list_images(self, group_id: str, offset: int = 0, limit: int = 50) -> tuple[list[ImageRecord], int]:
        group = self._group(group_id)
        page, total = self.store.list_images(group.group_id, v.offset(offset), v.limit(limit))
        return [self._public(r) for r in page], total

    def iter_images(self, group_id: str, page: int = 100) -> Iterator[ImageRecord]:
        """Every image of a group, page by page (newest first)."""
        group = self._group(group_id)
        offset = 0
        while True:
            batch, total = self.store.list_images(group.group_id, offset, page)
            yield from (self._public(r) for r in batch)
            offset += len(batch)
            if not batch or offset >= total:
                return

    def find_image(self, group_id: str, pic_name: str) -> ImageRecord:
        """The picture called ``pic_name`` (unique in its group), whatever its entity."""
        group = self._group(group_id)
        pic = v.pic_name(pic_name)
        found = self.store.get_image(group.group_id, pic)
        if found is None:
            raise self._not_found(group, pic)
        return self._public(found)

    def thumbnail(self, group_id: str, pic_name: str) -> bytes:
        group = self._group(group_id)
        data = self.store.get_thumbnail(group.group_id, v.pic_name(pic_name))
        if data is None:
            raise errors.ImageNotFound(
                f"picture {pic_name!r} of group {self._public(group).group_id!r} has no thumbnail"
            )
        return data

    def update_images(
        self,
        group_id: str,
        entity_id: str,
        pic_name: str | None = None,
        *,
        tags: object = None,
        custom_content: str | None = None,
    ) -> int:
        """New Tags and/or CustomContent for an entity's pictures (or one); ImageNotFound when none."""
        group, entity, pic = self._entity_pictures(group_id, entity_id, pic_name)
        new_tags = None if tags is None else v.tags(tags)
        content = None if custom_content is None else v.custom_content(custom_content)
        changed = self.store.update_images(group.group_id, entity, pic, tags=new_tags, custom_content=content)
        if changed == 0:
            raise self._not_found(group, pic, entity)
        return changed

    def update_image(
        self, group_id: str, pic_name: str, *, tags: object = None, custom_content: str | None = None
    ) -> ImageRecord:
        """The picture called ``pic_name`` with new tags and/or custom content (neither: as it is),
        read back after the change. ImageNotFound when the group has no such picture."""
        record = self.find_image(group_id, pic_name)
        if tags is not None or custom_content is not None:
            self.update_images(group_id, record.entity_id, record.pic_name, tags=tags, custom_content=custom_content)
        return self.find_image(group_id, pic_name)

    def delete_image(self, group_id: str, pic_name: str) -> int:
        """Deletes the picture called ``pic_name``, whatever its entity; ImageNotFound when absent."""
        record = self.find_image(group_id, pic_name)
        return self.delete_images(group_id, record.entity_id, record.pic_name)

    def delete_images(self, group_id: str, entity_id: str, pic_name: str | None = None) -> int:
        group, entity, pic = self._entity_pictures(group_id, entity_id, pic_name)
        deleted = self.store.delete_images(group.group_id, entity, pic)
        if deleted == 0:
            raise self._not_found(group, pic, entity)
        return deleted

    # ------------------------------------------------------------------ search

    def search(self, group_id: str, image: ImageInput, **options: Any) -> list[m.SearchHit]:
        """Pictures like ``image``, best first, scoring at least MatchThreshold (0 = the default):
        :meth:`search_subject` (the same keyword options) without the query's subject."""
        return self.search_subject(group_id, image, **options)[0]

    def search_subject(
        self,
        group_id: str,
        image: ImageInput,
        *,
        rect: Rect | None = None,
        limit: int | None = m.DEFAULT_LIMIT,
        offset: int | None = 0,
        match_threshold: float | None = 0,
        filter: str | Expr | None = None,
        min_cosine: float | None = None,
        detect: bool = True,
        category_id: int | None = None,
    ) -> tuple[list[m.SearchHit], sj.Subject | None]:
        """:meth:`search`, and the query's subject: in a product group (GroupType 5, 7, 8) the
        region searched is the caller's ImageRect, else with ``detect`` the subject found
        (:mod:`lookalike.gallery.subject`); other groups search the picture (or ImageRect)
        and answer no subject."""
        group = self._group(group_id)
        if self.engine.settings.group_qps:
            self._group_qps.acquire(group.group_id, group.max_qps or m.DEFAULT_MAX_QPS, f"group {group_id!r} (MaxQps)")
        lim, off = v.limit(limit), v.offset(offset)
        threshold = v.match_threshold(match_threshold) or self.default_threshold(group)
        where = filter if filter is None or not isinstance(filter, str) else parse_filter(filter)
        cutoff = scores.cosine_for_score(threshold) if min_cosine is None else min_cosine
        def find(full: Image.Image, requested: int | None) -> sj.Subject:
            return self.subjects.for_query(full, requested, lambda vectors: self._neighbours(group, vectors, where))

        decoded, subject = self._region(group, image, rect, detect, category_id, find)
        return self._ranked(group, decoded, lim, off, cutoff, where), subject

    def _neighbours(self, group: GroupRecord, vectors: np.ndarray, where) -> np.ndarray:
        """The stored unit vectors (its filter applied) nearest to each query vector, stacked:
        what a product query's windows are scored against (:mod:`lookalike.gallery.subject`)."""
        names: dict[str, None] = {}
        for vector in vectors:
            for hit in self.store.search(group.group_id, vector, limit=sj.NEIGHBOURS, min_cosine=-1.0, where=where):
                names[hit.image.pic_name] = None
        found = self.store.get_vectors(group.group_id, list(names))
        return np.stack(list(found.values())) if found else np.zeros((0, len(vectors[0])), dtype=np.float32)

    def _ranked(self, group: GroupRecord, decoded, lim: int, off: int, cutoff: float, where) -> list[m.SearchHit]:
        """The hits of decoded pixels: store search, then geometric re-ranking and expansion."""
        settings = self.engine.settings
        # The query's keypoints are found while the model embeds it (one core each).
        keypoints = (
            self._pool.submit(self.engine.local_features, decoded, query=True) if settings.rerank_depth else None
        )
        vector = self._query_vector(group, decoded)
        features = keypoints.result() if keypoints else None
        if features is None and not settings.query_expansion:
            hits = self.store.search(group.group_id, vector, limit=lim, offset=off, min_cosine=cutoff, where=where)
            out = [m.SearchHit.scored(self._public(h.image), h.cosine) for h in hits]
            out.sort(key=lambda h: -h.cosine)
            return out
        ranked = rerank(
            self.store,
            group.group_id,
            vector,
            features,
            lambda vec, n: self.store.search(group.group_id, vec, limit=n, min_cosine=-1.0, where=where),
            want=off + lim,
            depth=settings.rerank_depth,
            expand=settings.query_expansion,
            pool=self._pool,
            verify_from=settings.verify_from,
        )
        passed = [r for r in ranked if r.similarity >= cutoff][off : off + lim]
        return [m.SearchHit.scored(self._public(r.hit.image), r.hit.cosine, r.similarity, r.inliers) for r in passed]

    @staticmethod
    def default_threshold(group: GroupRecord) -> int:
        """Tencent's MatchThreshold 0: every group type uses the calibrated same-object boundary."""
        return scores.DEFAULT_MATCH_THRESHOLD

    def embed_query(self, group: GroupRecord, image: ImageInput, rect: Rect | None = None) -> np.ndarray:
        """The query's vector with the group's model (never another model's space)."""
        return self._query_vector(group, self.engine.decode(image, model=group.model, rect=rect))

    def _query_vector(self, group: GroupRecord, decoded) -> np.ndarray:
        pixels = self.engine.geometry.pixels(decoded)
        check_not_solid(pixels, "the query image")
        return self.engine.run([pixels], model=group.model)[0]


def batch_status(results: Sequence[ImageRecord | errors.LookalikeError]) -> int:
    """The HTTP status of an add batch: 201 when every picture was stored, 207 when some were;
    when none was, the errors' own status where they agree (507 for a full disk, 429, 503), else
    400."""
    created = sum(1 for r in results if not isinstance(r, errors.LookalikeError))
    if created:
        return 201 if created == len(results) else 207
    statuses = {r.status for r in results if isinstance(r, errors.LookalikeError)}
    return statuses.pop() if len(statuses) == 1 else 400
