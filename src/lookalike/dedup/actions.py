"""What to do with the duplicates a report found: link them for review, move them aside, or
(only when asked in so many words) delete them. The file each group keeps is never touched.

Every action re-checks a file before acting: it must still be there with the size it had
when it was scanned, and so must the file its group keeps, so a folder that changed since the
scan never loses a file whose copy is gone.
"""

from __future__ import annotations

import csv
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.dedup.report import DedupReport, Member
from lookalike.errors import InvalidParameterValue

MANIFEST = "lookalike-moved.csv"
"""Written into the destination by a move: original path, new path (to undo by hand)."""


@dataclass
class ActionResult:
    done: list[tuple[str, str]] = field(default_factory=list)
    """(file, where it went; '' for a deletion)."""
    refused: list[tuple[str, str]] = field(default_factory=list)
    """(file, why it was left alone)."""


def _unchanged(root: Path, m: Member) -> str | None:
    """Why ``m`` may not be acted on, or None."""
    try:
        st = (root / m.path).lstat()
    except OSError:
        return "no longer there"
    if not stat.S_ISREG(st.st_mode):  # lstat: a symlink put in its place is not one
        return "no longer a regular file"
    if st.st_size != m.size:
        return "changed since the scan"
    return None


def _free_name(path: Path) -> Path:
    """``path``, or ``name (1).ext``, ``name (2).ext``... whichever does not exist yet."""
    candidate, n = path, 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
    return candidate


def _each_duplicate(report: DedupReport):
    """(duplicate, None) when it may be acted on, else (duplicate, why not)."""
    for group in report.groups:
        keep_problem = _unchanged(report.root, group.keep)
        for m in group.duplicates:
            if keep_problem:
                yield m, f"the file kept ({group.keep.path}) is {keep_problem}"
            else:
                yield m, _unchanged(report.root, m)


def move_duplicates(report: DedupReport, dest: Path, *, dry_run: bool = False) -> ActionResult:
    """Moves every duplicate to ``dest``/<its relative path> (never overwriting), and appends
    each move to ``dest``/lookalike-moved.csv."""
    dest = dest.resolve()
    if dest == report.root.resolve():
        raise InvalidParameterValue("--move needs a folder other than the one searched")
    result = ActionResult()
    rows = []
    for m, problem in _each_duplicate(report):
        if problem:
            result.refused.append((m.path, problem))
            continue
        target = _free_name(dest / m.path)
        if not dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(report.root / m.path, target)
            rows.append((str(report.root / m.path), str(target)))
        result.done.append((m.path, str(target)))
    if rows:
        manifest = dest / MANIFEST
        new = not manifest.exists()
        with manifest.open("a", newline="") as out:
            writer = csv.writer(out)
            if new:
                writer.writerow(["original", "moved_to"])
            writer.writerows(rows)
    return result


def link_groups(report: DedupReport, dest: Path, *, dry_run: bool = False) -> ActionResult:
    """One folder per group under ``dest`` (0001, 0002...) with symbolic links to the file kept
    (named ``keep - <name>``) and to its duplicates, to review them in any image viewer."""
    if dest.exists() and any(dest.iterdir()):
        raise InvalidParameterValue(f"{dest} is not empty; --link needs a new or empty folder")
    result = ActionResult()
    width = max(4, len(str(len(report.groups))))
    for number, group in enumerate(report.groups, 1):
        folder = dest / f"{number:0{width}d}"
        links = [(group.keep, f"keep - {Path(group.keep.path).name}")]
        links += [(m, Path(m.path).name) for m in group.duplicates]
        for m, name in links:
            target = _free_name(folder / name)
            if not dry_run:
                folder.mkdir(parents=True, exist_ok=True)
                target.symlink_to((report.root / m.path).resolve())
            if m is not group.keep:
                result.done.append((m.path, str(target)))
    return result


def delete_duplicates(report: DedupReport, *, dry_run: bool = False) -> ActionResult:
    """Deletes every duplicate (the file kept stays). Only the CLI's explicit --delete calls it."""
    result = ActionResult()
    for m, problem in _each_duplicate(report):
        if problem:
            result.refused.append((m.path, problem))
            continue
        if not dry_run:
            (report.root / m.path).unlink()
        result.done.append((m.path, ""))
    return result
