"""The result of a dedup run and its three renderings: a readable summary, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from lookalike import scores


class Level(StrEnum):
    """How alike two images must be to count as duplicates, in plain terms."""

    EXACT = "exact"
    """The same bytes, or the same pixels in another file (format, metadata, compression)."""
    NEAR = "near"
    """Copies: re-encoded, resized, cropped, flipped, rotated, recoloured or otherwise edited."""
    SCENE = "scene"
    """Photos of the same scene or object: bursts, retakes, another angle."""


LEVEL_COSINE: dict[Level, float] = {
    Level.NEAR: scores.NEAR_DUPLICATE_COSINE,
    Level.SCENE: scores.SAME_SCENE_COSINE,
}
"""Default cosine threshold of each model-based level (measured: docs/benchmarks.md, "Dedup")."""


class Match(StrEnum):
    """Why a file is in its group, relative to the file kept."""

    BYTES = "bytes"
    PIXELS = "pixels"
    NEAR = "near"
    SCENE = "scene"


def match_of(level: Level, cosine: float | None) -> Match:
    """The label of a model-matched duplicate: near when the level is, or when its cosine to the
    kept one reaches the near level's (a scene run finds copies too); scene otherwise."""
    near = cosine is not None and cosine >= LEVEL_COSINE[Level.NEAR]
    return Match.NEAR if level is Level.NEAR or near else Match.SCENE


@dataclass
class Member:
    path: str
    """Relative to the folder searched, with '/' separators."""
    size: int
    width: int
    height: int
    match: Match | None = None
    """None for the file kept."""
    cosine: float | None = None
    """Cosine to the file kept (None where the model did not run)."""


@dataclass
class DuplicateGroup:
    keep: Member
    duplicates: list[Member]

    @property
    def reclaimable(self) -> int:
        return sum(m.size for m in self.duplicates)


@dataclass
class Skipped:
    path: str
    code: str
    message: str


@dataclass
class DedupReport:
    root: Path
    level: Level
    model: str | None
    cosine: float | None
    files: int
    groups: list[DuplicateGroup] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    embedded: int = 0
    """Images run through the (first) model this time."""
    cached: int = 0
    """Images whose vector came from the cache."""
    verified: int = 0
    """Pairs the fast model left in doubt that geometric verification found to be copies."""
    deferred: int = 0
    """Pairs the fast model left in doubt that the full model settled."""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return sum(len(g.duplicates) for g in self.groups)

    @property
    def reclaimable(self) -> int:
        return sum(g.reclaimable for g in self.groups)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["root"] = str(self.root)
        out["duplicates"] = self.duplicates
        out["reclaimable_bytes"] = self.reclaimable
        for group in out["groups"]:
            del group["keep"]["match"], group["keep"]["cosine"]
            for member in group["duplicates"]:
                if member["cosine"] is not None:
                    member["cosine"] = round(member["cosine"], 4)
        out["seconds"] = {k: round(v, 3) for k, v in self.seconds.items()}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_csv(self) -> str:
        """One row per file in a group: the kept file first, then its duplicates."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["group", "role", "match", "cosine", "path", "bytes", "width", "height"])
        for number, group in enumerate(self.groups, 1):
            k = group.keep
            writer.writerow([number, "keep", "", "", k.path, k.size, k.width, k.height])
            for m in group.duplicates:
                cos = "" if m.cosine is None else f"{m.cosine:.4f}"
                writer.writerow([number, "duplicate", str(m.match), cos, m.path, m.size, m.width, m.height])
        return buffer.getvalue()

    def summary(self, show: int = 10) -> str:
        threshold = f" (cosine >= {self.cosine:.2f}, {self.model})" if self.cosine is not None else ""
        lines = [f"{self.files:,} images in {self.root}, level {self.level}{threshold}"]
        if self.skipped:
            lines.append(f"{len(self.skipped):,} files skipped (unreadable or not images; see --format json):")
            lines += [f"  {s.path}: {s.code}: {s.message}" for s in self.skipped[:show]]
        by_match: dict[str, int] = {}
        for g in self.groups:
            for m in g.duplicates:
                by_match[str(m.match)] = by_match.get(str(m.match), 0) + 1
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(by_match.items()))
        lines.append(
            f"{self.duplicates:,} duplicates in {len(self.groups):,} groups"
            + (f" ({kinds}), {_size(self.reclaimable)} reclaimable" if self.groups else "")
        )
        for group in sorted(self.groups, key=lambda g: -len(g.duplicates))[:show]:
            k = group.keep
            lines.append(f"  keep {k.path}  ({k.width}x{k.height}, {_size(k.size)})")
            for m in group.duplicates[:show]:
                cos = f" {m.cosine:.3f}" if m.cosine is not None else ""
                lines.append(f"    {m.match:<6}{cos:>6}  {m.path}")
            if len(group.duplicates) > show:
                lines.append(f"    ... and {len(group.duplicates) - show} more")
        if len(self.groups) > show:
            lines.append(f"  ... and {len(self.groups) - show} more groups (--format json or csv lists all)")
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        lines.append(f"embedded {self.embedded:,}, from cache {self.cached:,}; {timing}")
        return "\n".join(lines)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
