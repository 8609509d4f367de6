"""Folder ingest: a folder of images into a gallery, resumable (``lookalike index`` runs it).

Each file's EntityId is its top sub-folder (one object's pictures in one folder) or, at the top
level, its name without the extension; its PicName is its path relative to the folder, so a name
says where the picture came from and is unique in the group. Pictures already in the group are
skipped by name before anything is read, so an interrupted run picks up where it stopped at the
cost of one listing of the group. Files go through :meth:`GalleryService.add_images` in batches
(decoded in parallel and embedded together); a file that cannot be read or is refused is reported
and never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.config import Settings
from lookalike.errors import ImageGroupIdNotExist, InvalidParameterValue, LookalikeError
from lookalike.gallery.models import NewImage
from lookalike.gallery.service import GalleryService
from lookalike.images import read_local
from lookalike.images.decode import IMAGE_SUFFIXES
from lookalike.storage.base import GroupRecord


@dataclass
class IngestReport:
    group_id: str
    added: int = 0
    skipped: int = 0
    """Already in the group (an earlier run stored them)."""
    refused: list[tuple[str, str]] = field(default_factory=list)
    """(PicName, "Code: message") of each file that was not stored."""


def entity_and_name(path: Path, root: Path) -> tuple[str, str]:
    """Entity = the top sub-folder (one object's pictures), or the file stem at the top level;
    PicName = the path relative to ``root``."""
    relative = path.relative_to(root)
    entity = relative.parts[0] if len(relative.parts) > 1 else path.stem
    return entity, relative.as_posix()


def image_files(root: Path) -> list[Path]:
    """The images under ``root`` (sub-folders included, by suffix), in a stable order."""
    if not root.is_dir():
        raise InvalidParameterValue(f"{root} is not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def target_group(gallery: GalleryService, group_id: str, *, create: bool, model: str | None) -> GroupRecord:
    """The group to fill; created with ``model`` when ``create`` and absent. A group of another
    model is refused: its vectors could not be compared with the new ones."""
    try:
        group = gallery.get_group(group_id)
    except ImageGroupIdNotExist:
        if not create:
            raise ImageGroupIdNotExist(f"group {group_id!r} does not exist; add --create to make it") from None
        group = gallery.create_group(group_id, model=model)
    if model is not None and model != group.model:
        raise InvalidParameterValue(f"group {group.group_id!r} uses model {group.model!r}, not {model!r}")
    return group


@dataclass(frozen=True)
class IngestPlan:
    files: list[Path]
    """Every image under the folder."""
    todo: list[Path]
    """Those not in the group yet."""


def plan_folder(
    gallery: GalleryService, group: GroupRecord, root: Path, files: list[Path] | None = None
) -> IngestPlan:
    """What a run would add: the folder's images (``files``: as listed by :func:`image_files`)
    whose PicName the group does not hold."""
    files = image_files(root) if files is None else files
    stored = {r.pic_name for r in gallery.iter_images(group.group_id, 1000)}
    return IngestPlan(files, [p for p in files if entity_and_name(p, root)[1] not in stored])


def ingest_folder(
    gallery: GalleryService,
    group: GroupRecord,
    root: Path,
    settings: Settings,
    *,
    tags: dict[str, object] | None = None,
    batch: int = 32,
    plan: IngestPlan | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Adds every image under ``root`` not yet in ``group`` (``plan``: as planned by
    :func:`plan_folder`); ``progress(n)`` after each batch of n files."""
    plan = plan_folder(gallery, group, root) if plan is None else plan
    report = IngestReport(group.group_id, skipped=len(plan.files) - len(plan.todo))
    size = max(1, batch)
    for start in range(0, len(plan.todo), size):
        chunk = plan.todo[start : start + size]
        news: list[NewImage] = []
        for path in chunk:
            entity, name = entity_and_name(path, root)
            try:
                news.append(NewImage(entity, name, read_local(path, settings), tags=dict(tags or {})))
            except LookalikeError as exc:
                report.refused.append((name, f"{exc.code}: {exc.message}"))
        for new, result in zip(news, gallery.add_images(group.group_id, news) if news else [], strict=True):
            if isinstance(result, LookalikeError):
                report.refused.append((new.pic_name, f"{result.code}: {result.message}"))
            else:
                report.added += 1
        if progress is not None:
            progress(len(chunk))
    return report

