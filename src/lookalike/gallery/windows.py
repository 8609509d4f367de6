"""Where a product query's subject is: the window of a region map that best matches the group.

A window is a rectangle of feature-map cells (:class:`lookalike.models.regions.RegionMap`);
its score is its pooled vector's best cosine with the stored pictures near the query (the
caller's ``score``). The search, measured on the clutter set (bench/clutter.py and
bench/clutter_regions.py, docs/benchmarks.md "Product search"):

1. coarse windows: 0.35, 0.5 and 0.7 of the picture's width and height on a 5 x 5 grid of
   places, and the whole picture (about 75 windows, no model run: pooling only);
2. refine: the best one's edges move by 2 cells, then by 1, while the score rises;
3. grow: the best window is a distinctive part of the subject (median half its area), so its
   edges move outwards, one cell at a time, while the score stays within GROW_MARGIN of the best.
   On 60 clutter queries at a 512 px map, the returned box overlapped the pasted one (IoU >= 0.5)
   for 38% of them without the growth, 77% with a margin of 0.03, 80% with 0.04, 77% with 0.05.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Cells = tuple[int, int, int, int]
"""x0, y0, x1, y1 in cells, end exclusive."""
Scorer = Callable[[list[Cells]], np.ndarray]

COARSE_SCALES = (0.35, 0.5, 0.7)
COARSE_PLACES = 5
GROW_MARGIN = 0.04


def grid(columns: int, rows: int, scales: tuple[float, ...], places: int) -> list[Cells]:
    """Windows of each scale (share of the width and height) at ``places`` x ``places`` evenly
    spaced positions (fewer where the map is too small to tell them apart), no duplicates."""
    out: dict[Cells, None] = {}
    for scale in scales:
        width, height = max(1, round(columns * scale)), max(1, round(rows * scale))
        for fy in np.linspace(0.0, 1.0, places):
            for fx in np.linspace(0.0, 1.0, places):
                x0, y0 = round((columns - width) * fx), round((rows - height) * fy)
                out[(x0, y0, x0 + width, y0 + height)] = None
    return list(out)


def coarse(columns: int, rows: int) -> list[Cells]:
    return [(0, 0, columns, rows), *grid(columns, rows, COARSE_SCALES, COARSE_PLACES)]


def _moves(cells: Cells, step: int, columns: int, rows: int, *, outwards_only: bool) -> list[Cells]:
    """``cells`` with one edge moved by ``step`` cells (outwards only, or both ways)."""
    out = []
    for edge in range(4):
        outward = -step if edge < 2 else step
        for delta in (outward,) if outwards_only else (outward, -outward):
            moved = list(cells)
            moved[edge] += delta
            x0, y0, x1, y1 = moved
            if 0 <= x0 < x1 <= columns and 0 <= y0 < y1 <= rows:
                out.append((x0, y0, x1, y1))
    return out


def refine(score: Scorer, start: Cells, start_score: float, columns: int, rows: int) -> tuple[Cells, float]:
    """Hill-climbs ``start``'s edges (steps of 2 cells, then 1) while the score rises."""
    best, best_score = start, start_score
    for step in (2, 1):
        while moves := _moves(best, step, columns, rows, outwards_only=False):
            scores = score(moves)
            top = int(np.argmax(scores))
            if scores[top] <= best_score:
                break
            best, best_score = moves[top], float(scores[top])
    return best, best_score


def grow(
    score: Scorer, start: Cells, start_score: float, columns: int, rows: int, margin: float = GROW_MARGIN
) -> Cells:
    """Moves ``start``'s edges outwards, the best move first, while the score stays within
    ``margin`` of ``start_score``: from the most distinctive part of the subject to all of it."""
    current = start
    while moves := _moves(current, 1, columns, rows, outwards_only=True):
        scores = score(moves)
        top = int(np.argmax(scores))
        if scores[top] < start_score - margin:
            break
        current = moves[top]
    return current


def best_window(score: Scorer, columns: int, rows: int, margin: float | None = None) -> tuple[Cells, float]:
    """The subject's window and the score of its most distinctive part (see the module);
    ``margin``: the growth's (GROW_MARGIN when None)."""
    windows = coarse(columns, rows)
    scores = score(windows)
    top = int(np.argmax(scores))
    found, found_score = refine(score, windows[top], float(scores[top]), columns, rows)
    return grow(score, found, found_score, columns, rows, GROW_MARGIN if margin is None else margin), found_score
