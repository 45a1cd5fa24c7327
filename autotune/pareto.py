"""Pareto fronts, hypervolume and spreading a choice along a front (all objectives minimised).

Non-dominated sorting and hypervolume come from moocore (C implementations, maintained for exactly this).
"""

from __future__ import annotations

import moocore
import numpy as np


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """True for the rows no other row dominates (<= everywhere and < somewhere); equal rows are all kept."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(values, keep_weakly=True), dtype=bool)


def nondominated_ranks(values: np.ndarray) -> np.ndarray:
    """0 for the front, 1 for the front once it is removed, and so on."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return np.zeros(0, dtype=int)
    return np.asarray(moocore.pareto_rank(values), dtype=int)


def spread(values: np.ndarray, count: int) -> list[int]:
    """Indices of `count` points spread along the given points: the extremes first, then farthest-first."""
    values = np.asarray(values, dtype=float)
    if len(values) <= count:
        return list(range(len(values)))
    span = values.max(axis=0) - values.min(axis=0)
    scaled = (values - values.min(axis=0)) / np.where(span > 0, span, 1.0)
    chosen: list[int] = []
    for column in range(scaled.shape[1]):
        best = int(np.argmin(scaled[:, column]))
        if best not in chosen and len(chosen) < count:
            chosen.append(best)
    while len(chosen) < count:
        distance = np.min(np.linalg.norm(scaled[:, None, :] - scaled[None, chosen, :], axis=2), axis=1)
        distance[chosen] = -1.0
        chosen.append(int(np.argmax(distance)))
    return chosen


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by `points` up to `reference` (minimisation); points beyond it add nothing."""
    points = np.minimum(np.asarray(points, dtype=float), reference)
    return float(moocore.hypervolume(points, ref=np.asarray(reference, dtype=float))) if len(points) else 0.0


def greedy_hypervolume_order(values: np.ndarray, count: int) -> list[int]:
    """Up to `count` indices, each adding the most hypervolume to those before it: the first few already cover
    most of the front. Objectives are compared by rank, so one spanning orders of magnitude does not dominate."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return []
    ranks = np.argsort(np.argsort(values, axis=0), axis=0) / max(len(values) - 1, 1)
    reference = np.full(values.shape[1], 1.1)
    chosen: list[int] = []
    while len(chosen) < min(count, len(values)):
        base = hypervolume(ranks[chosen], reference) if chosen else 0.0
        gains = [
            -1.0 if i in chosen else hypervolume(ranks[[*chosen, i]], reference) - base for i in range(len(values))
        ]
        chosen.append(int(np.argmax(gains)))
    return chosen
