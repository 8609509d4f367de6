"""Finding duplicates: in a folder (exact, near copies, same scene) or in a gallery group.

>>> from lookalike.dedup import find_duplicates
>>> report = find_duplicates("photos/", level="near")
>>> for group in report.groups:
...     print(group.keep.path, [d.path for d in group.duplicates])
"""

from lookalike.dedup.folder import KEEP_POLICIES, find_duplicates, scan
from lookalike.dedup.matching import Pairs, group_pairs, similar_pairs
from lookalike.dedup.report import LEVEL_COSINE, DedupReport, DuplicateGroup, Level, Match, Member, Skipped

__all__ = [
    "KEEP_POLICIES",
    "LEVEL_COSINE",
    "DedupReport",
    "DuplicateGroup",
    "Level",
    "Match",
    "Member",
    "Pairs",
    "Skipped",
    "find_duplicates",
    "group_pairs",
    "scan",
    "similar_pairs",
]
