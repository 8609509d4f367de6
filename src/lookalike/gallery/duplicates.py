"""A group's duplicate sets: found from the stored vectors, reviewed by the operator, run as jobs.

The same nearest-neighbour pairs as the folder dedup (:mod:`lookalike.dedup.matching`, never all
pairs), so a large group costs about n log n, with the vectors read once from the store. A set the
operator keeps as it is gets a review mark (:class:`~lookalike.gallery.reviews.ReviewStore`) and
is left out of later results while its members stay the same. A large group's sets are a
background job (:class:`~lookalike.gallery.jobs.JobRunner`) that finds every set, reviewed ones
too, so that a mark made while it runs still counts when its result is read.

:class:`GroupDuplicates` is the part of :class:`~lookalike.gallery.service.GalleryService` that
does this: a base class of it, so callers keep calling the service, and the service module
keeps to pictures and search.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from lookalike import errors, scores
from lookalike.engine import Engine
from lookalike.gallery import models as m
from lookalike.gallery import validation as v
from lookalike.gallery.jobs import Job, JobRunner
from lookalike.gallery.reviews import ReviewStore
from lookalike.gallery.tenancy import TenantView
from lookalike.storage.base import ImageRecord


class GroupDuplicates(TenantView):
    """Duplicate sets of a group, their review marks and their background jobs."""

    engine: Engine
    reviews: ReviewStore
    jobs: JobRunner

    def duplicates(
        self,
        group_id: str,
        level: str = "near",
        match_threshold: float | None = None,
        *,
        reviewed: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> m.Duplicates:
        """Sets of near-duplicate pictures in a group: ``level`` near or scene (as ``lookalike
        dedup``), or a 0..100 ``match_threshold`` instead. Sets marked reviewed are left out
        unless ``reviewed``; ``progress(stage, done, total)`` hears how far it got."""
        min_cosine = duplicate_cosine(level, match_threshold)
        group = self._group(group_id, count=progress is not None)
        records: list[ImageRecord] = []
        vectors: list[np.ndarray] = []
        for batch in self.store.iter_group(group.group_id, thumbnails=False):
            for record, vector, _none in batch:
                records.append(self._public(record))
                vectors.append(vector)
            if progress:
                progress("reading vectors", len(records), max(group.pic_count, len(records)))
        if progress:
            progress("matching", len(records), len(records))
        found = duplicate_sets(records, vectors, min_cosine, level, threads=self.engine.settings.threads)
        return found if reviewed else self.without_reviewed(group_id, found)

    def without_reviewed(self, group_id: str, found: m.Duplicates) -> m.Duplicates:
        """``found`` less the sets marked reviewed since (or before) it was computed."""
        marked = self.reviews.reviewed(self._group(group_id).group_id)
        kept = [d for d in found.sets if d.key not in marked]
        return dataclasses.replace(found, sets=kept, reviewed=found.reviewed + len(found.sets) - len(kept))

    def mark_reviewed(self, group_id: str, pic_names: Sequence[str]) -> str:
        """Keeps a duplicate set as it is: it is left out of later results while its members are
        these. Every picture must be in the group (ImageNotFound). Returns the set's key."""
        group = self._group(group_id)
        names = [v.pic_name(name) for name in pic_names]
        if len(set(names)) < 2:
            raise errors.InvalidParameterValue("a duplicate set has at least two different pictures")
        for name in names:
            if self.store.get_image(group.group_id, name) is None:
                raise self._not_found(group, name)
        return self.reviews.mark(group.group_id, names)

    def start_duplicates(self, group_id: str, level: str = "near", match_threshold: float | None = None) -> Job:
        """:meth:`duplicates` as a background job (every set, reviewed ones too: they are left out
        when the result is read, so a mark made meanwhile counts). Bad input fails here, at once."""
        duplicate_cosine(level, match_threshold)
        group = self._group(group_id)
        params = {"level": level, "match_threshold": match_threshold}

        def work(job: Job) -> m.Duplicates:
            return self.duplicates(group_id, level, match_threshold, reviewed=True, progress=job.progress)

        return self.jobs.start(group.group_id, "duplicates", params, work)

    def duplicates_job(self, group_id: str, job_id: str) -> Job:
        """A job of this group (ResourceNotFound for another group's or tenant's)."""
        return self.jobs.get(self._key(v.group_id(group_id)), job_id)


def duplicate_cosine(level: str, match_threshold: float | None) -> float:
    """The lowest cosine of a duplicate pair: the level's, or the 0..100 threshold's."""
    from lookalike.dedup.report import LEVEL_COSINE, Level

    if level not in (Level.NEAR, Level.SCENE):
        raise errors.InvalidParameterValue(f"level must be near or scene, not {level!r}")
    threshold = v.match_threshold(match_threshold)
    return scores.cosine_for_score(threshold) if threshold else LEVEL_COSINE[Level(level)]


def duplicate_sets(
    records: list[ImageRecord], vectors: list[np.ndarray], min_cosine: float, level: str, *, threads: int = 0
) -> m.Duplicates:
    """Connected sets of pictures whose vectors are at least ``min_cosine`` alike; in each, the
    picture added first is kept and the others are scored and labelled against it."""
    from lookalike.dedup.matching import group_pairs, similar_pairs
    from lookalike.dedup.report import Level, match_of

    if not records:
        return m.Duplicates([], 0, min_cosine)
    matrix = np.stack(vectors).astype(np.float32, copy=False)
    sets = []
    for members in group_pairs(len(records), similar_pairs(matrix, min_cosine, threads=threads)):
        keep = min(members, key=lambda i: (records[i].create_time, records[i].pic_name))
        cos = np.clip(matrix[members] @ matrix[keep], -1.0, 1.0)
        hits = [m.SearchHit.scored(records[i], c) for i, c in zip(members, cos.tolist(), strict=True) if i != keep]
        hits.sort(key=lambda h: (-h.cosine, h.image.pic_name))
        sets.append(m.DuplicateSet(records[keep], hits, [str(match_of(Level(level), h.cosine)) for h in hits]))
    sets.sort(key=lambda d: (-len(d.duplicates), d.keep.pic_name))
    return m.Duplicates(sets, len(records), min_cosine)
