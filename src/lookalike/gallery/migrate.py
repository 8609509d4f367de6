"""Copying every tenant's galleries from one store to another (``lookalike migrate`` runs it).

Vectors, records (with their times), thumbnails and local features are copied, never
re-embedded: a million pictures move at the speed of the stores, not of the model. Groups and
pictures already in the target are kept (a re-run lists the target's names and copies the rest),
so an interrupted run is finished by running it again. A group whose model differs in the target
is refused, not mixed. The run ends by comparing every copied group's picture count in both
stores: a mismatch is reported, never hidden.

The stores are any two :class:`~lookalike.storage.base.Store` backends (the CLI pairs the data
dir's SQLite store with Milvus, either way); the copy uses the store primitives that exist for
it (``iter_group``, ``import_images``, ``get_features``/``put_features``), which skip the rules
a new picture goes through: these pictures already went through them once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Protocol

from lookalike.storage.base import GroupRecord, Store


class Progress(Protocol):
    def start(self, group_id: str) -> None: ...

    def update(self, n: int) -> None: ...


class _Silent:
    def start(self, group_id: str) -> None:
        pass

    def update(self, n: int) -> None:
        pass


@dataclass(frozen=True)
class GroupCopy:
    group_id: str
    state: str
    """created, exists, "would be created ..." / "exists; ..." (dry run), or why it was refused."""
    copied: int
    """Pictures copied (dry run: that would be)."""
    skipped: int
    """Pictures already in the target."""
    refused: bool = False


@dataclass
class MigrationReport:
    groups: list[GroupCopy] = field(default_factory=list)
    mismatched: dict[str, str] = field(default_factory=dict)
    """Group -> how its picture counts differ after the copy."""
    dry_run: bool = False

    @property
    def created(self) -> int:
        return sum(g.state == "created" or g.state.startswith("would be created") for g in self.groups)

    @property
    def copied(self) -> int:
        return sum(g.copied for g in self.groups)

    @property
    def skipped(self) -> int:
        return sum(g.skipped for g in self.groups)

    @property
    def refused(self) -> dict[str, str]:
        return {g.group_id: g.state for g in self.groups if g.refused}

    @property
    def ok(self) -> bool:
        return not self.refused and not self.mismatched


def all_groups(store: Store) -> list[GroupRecord]:
    """Every group of every tenant (the namespace test is off: a migration moves them all)."""
    groups: list[GroupRecord] = []
    offset = 0
    while True:
        page, total = store.list_groups(offset, 1000, namespace=None)
        groups.extend(page)
        offset += len(page)
        if not page or offset >= total:
            return groups


def copy_group(
    source: Store, target: Store | None, group: GroupRecord, *, batch: int, dry_run: bool, progress: Progress
) -> GroupCopy:
    """One group into ``target`` (None: an empty target that a dry run does not create)."""
    there = None if target is None else target.get_group(group.group_id)
    if there is not None and there.model != group.model:
        why = f"model {there.model!r} in the target, {group.model!r} in the source: not copied"
        return GroupCopy(group.group_id, why, 0, 0, refused=True)
    present: set[str] = set()
    if target is not None and there is not None and there.pic_count:  # a re-run: keep what is there
        present = target.pic_names(group.group_id)
    if dry_run:
        todo = len(source.pic_names(group.group_id) - present) if present else group.pic_count
        state = "exists" if there is not None else f"would be created (model {group.model})"
        state = f"{state}; {group.pic_count} in the source, {len(present)} in the target"
        return GroupCopy(group.group_id, state, todo, group.pic_count - todo)
    assert target is not None, "only a dry run goes without a target"
    if there is None:
        target.create_group(dataclasses.replace(group, pic_count=0))
    copied = skipped = 0
    for rows in source.iter_group(group.group_id, batch=batch):
        new = [row for row in rows if row[0].pic_name not in present]
        stored = target.import_images(new) if new else 0  # SQLite skips names it has too
        if new:  # the local features travel after their pictures (put_features wants them there)
            features = source.get_features(group.group_id, [row[0].pic_name for row in new])
            if features:
                target.put_features(group.group_id, features)
        copied, skipped = copied + stored, skipped + len(rows) - stored
        progress.update(len(rows))
    return GroupCopy(group.group_id, "created" if there is None else "exists", copied, skipped)


def migrate(
    source: Store,
    target: Store | None,
    *,
    batch: int = 1000,
    dry_run: bool = False,
    groups: list[GroupRecord] | None = None,
    progress: Progress | None = None,
) -> MigrationReport:
    """Copies ``groups`` (default: all of ``source``'s) into ``target``, then compares counts."""
    groups = all_groups(source) if groups is None else groups
    progress = _Silent() if progress is None else progress
    report = MigrationReport(dry_run=dry_run)
    for group in groups:
        progress.start(group.group_id)
        report.groups.append(
            copy_group(source, target, group, batch=max(1, batch), dry_run=dry_run, progress=progress)
        )
    if dry_run or target is None:
        return report
    refused = report.refused
    for group in groups:
        if group.group_id not in refused:
            counts = [store.get_group(group.group_id) for store in (source, target)]
            a, b = ("missing" if g is None else g.pic_count for g in counts)
            if a != b:
                report.mismatched[group.group_id] = f"{a} pictures in the source, {b} in the target"
    return report
