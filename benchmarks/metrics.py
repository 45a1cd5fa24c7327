"""What the method comparison reports: hypervolume of measured fronts, budgets to reach a level, best ratios within an
accuracy budget, and rank correlations with intervals that include the accuracy's own sampling noise."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from autotune.pareto import hypervolume, pareto_mask


def hypervolume_curve(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Hypervolume of the front of the first k points, for k = 1..n (the order a method spent its evaluations)."""
    return np.array([hypervolume(points[: k + 1], reference) for k in range(len(points))])


def evaluations_to_reach(curve: np.ndarray, level: float) -> int | None:
    """Full evaluations a method needed to reach `level`, or None if it never did."""
    reached = np.flatnonzero(curve >= level)
    return int(reached[0]) + 1 if len(reached) else None


def best_within(rows: list[dict], max_drop: float, key: str, best=max) -> dict | None:
    """The row with the best `key` among those losing at most `max_drop` points."""
    eligible = [row for row in rows if row["drop_pts"] <= max_drop and row.get(key) is not None]
    return best(eligible, key=lambda row: row[key]) if eligible else None


def front_rows(rows: list[dict], axes: tuple[str, ...]) -> list[dict]:
    values = np.array([[row[a] for a in axes] for row in rows], dtype=float)
    return [row for row, keep in zip(rows, pareto_mask(values), strict=True) if keep] if rows else []


def spearman(x, y) -> float | None:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:  # a resample of one plan has no ranking
        return None
    value = spearmanr(x, y).statistic
    return None if np.isnan(value) else float(value)


def spearman_interval(proxy: np.ndarray, drop_of, plans: int, images: int, draws: int = 500, seed: int = 0) -> dict:
    """Spearman of a proxy against the measured quality drop, with a 90% interval from a joint bootstrap: plans are
    resampled, and the validation samples too (the same samples for every plan, as a re-drawn test set would be),
    so the interval includes each measured drop's own sampling noise.

    `drop_of(plan_index, sample_indices)` is a plan's drop in points on those validation samples.
    """
    rng = np.random.default_rng(seed)
    everything = np.arange(images)
    point = spearman(proxy, [drop_of(i, everything) for i in range(plans)])
    samples = []
    for _ in range(draws):
        which = rng.integers(plans, size=plans)
        picked = rng.integers(images, size=images)
        drops = {i: drop_of(i, picked) for i in set(which.tolist())}
        value = spearman(proxy[which], [drops[i] for i in which])
        if value is not None:
            samples.append(value)
    low, high = np.percentile(samples, [5, 95]) if samples else (np.nan, np.nan)
    return {"spearman": point, "low": float(low), "high": float(high), "plans": int(plans)}


def drop_interval(drop_of, index: int, images: int, draws: int = 500, seed: int = 0) -> list[float]:
    """90% bootstrap interval of one plan's drop over the validation samples."""
    rng = np.random.default_rng(seed)
    values = [drop_of(index, rng.integers(images, size=images)) for _ in range(draws)]
    low, high = np.percentile(values, [5, 95])
    return [float(low), float(high)]


def split_half_ceiling(drop_of, plans: int, images: int, splits: int = 100, seed: int = 0) -> dict:
    """About the highest Spearman any accuracy proxy could reach against drops measured on `images` samples: the
    validation set split in random halves, the plans' drops on one half ranked against the other (the same halves for
    every plan, so noise they share does not count), stepped up to the whole set (Spearman-Brown), and its square root
    (a perfect proxy correlates with the measurement as the true drop does). Median and 90% range over splits."""
    rng = np.random.default_rng(seed)
    ceilings = []
    for _ in range(splits):
        order = rng.permutation(images)
        first, second = order[: images // 2], order[images // 2 :]
        agreement = spearman([drop_of(i, first) for i in range(plans)], [drop_of(i, second) for i in range(plans)])
        if agreement is not None:
            whole = 2 * agreement / (1 + agreement) if agreement > -1 else -1.0
            ceilings.append(float(np.sqrt(max(whole, 0.0))))
    if not ceilings:
        return {"ceiling": None, "low": None, "high": None, "splits": 0}
    low, median, high = np.percentile(ceilings, [5, 50, 95])
    return {"ceiling": float(median), "low": float(low), "high": float(high), "splits": len(ceilings)}


def resampled_spearman(x, y, draws: int = 2000, seed: int = 0, percentiles=(5, 95)) -> dict:
    """Spearman of `x` against `y` with an interval over resampled plans only (each value taken as exact)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    picks = (rng.integers(len(x), size=len(x)) for _ in range(draws if len(x) else 0))
    samples = [v for v in (spearman(x[i], y[i]) for i in picks) if v is not None]
    low, high = np.percentile(samples, percentiles) if samples else (np.nan, np.nan)
    return {"spearman": spearman(x, y), "low": float(low), "high": float(high), "plans": len(x)}


def latency_spearman_interval(proxy: np.ndarray, rounds: np.ndarray, draws: int = 1000, seed: int = 0) -> dict:
    """Spearman of a latency proxy against the median measured latency; plans and timing rounds resampled.

    `rounds` is plans x rounds of measured latencies (interleaved rounds)."""
    rng = np.random.default_rng(seed)
    point = spearman(proxy, np.median(rounds, axis=1))
    samples = []
    plans, count = rounds.shape
    for _ in range(draws):
        which = rng.integers(plans, size=plans)
        picked = rng.integers(count, size=count)
        value = spearman(proxy[which], np.median(rounds[np.ix_(which, picked)], axis=1))
        if value is not None:
            samples.append(value)
    low, high = np.percentile(samples, [5, 95]) if samples else (np.nan, np.nan)
    return {"spearman": point, "low": float(low), "high": float(high), "plans": int(plans)}


def ratio_interval(values: np.ndarray, baseline: np.ndarray) -> list[float]:
    """Median and 90% range of per-round ratios (each round's value over the baseline measured in the same round)."""
    ratios = np.asarray(values, dtype=float) / np.asarray(baseline, dtype=float)
    low, median, high = np.percentile(ratios, [5, 50, 95])
    return [float(median), float(low), float(high)]
