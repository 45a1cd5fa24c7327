"""A latency table checked against whole plans timed on its target, and the fallback kept where it ranks them better.

A table composes per-layer ratios each measured around one base. On ONNX Runtime a float layer inside an INT8 network
pays precision and layout conversions at both of its ends: on a depthwise CNN each such probe measured 1.6-2.6x the
whole INT8 network, and random mixed plans were estimated up to 68x their measured time (Spearman +0.06 over 30
plans). So plans drawn from the search space are built and timed whole, like the probes; where the table ranks them below
`CHECK_MIN_SPEARMAN`, a table with a base per precision and summed time deltas is measured as well (there the same
plans ranked at +0.74) and kept if it ranks them better by `FALLBACK_MARGIN`. A table with pair terms (ONNX Runtime's) is
ranked without them as well, at no cost: they ranked fashion-cnn's check plans +0.89 against +0.27 on an AMX Xeon, but
-0.09 on an AMD EPYC; they are dropped where the same plans rank clearly better without them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr

from autotune.latency_table import LatencyTable
from autotune.plan import Plan
from autotune.progress import console

CHECK_SEED = 20261204  # the check plans are the same for every table of a study's space
MIN_CHECK_PLANS = 5  # fewer timed plans say nothing about a ranking
# Twelve plans rank noisily (fashion-cnn's OpenVINO table ranked 160 plans at +0.80 and this check's 12 at +0.59): the
# fallback, a second table to measure, is tried where the ranking is poor beyond that noise. A higher threshold bought
# little: the rule replayed on 30 uniform fashion-cnn plans (AMD EPYC, 2026-12-04) chose ONNX Runtime tables that
# ranked 60 plans at +0.646 on average at 0.5 and +0.655 at 0.8, measuring the fallback in 27% and 89% of the draws
# (docs/latency-fidelity-rounds.md).
CHECK_MIN_SPEARMAN = 0.5
FALLBACK_MARGIN = 0.1  # twelve plans rank noisily: the fallback must be clearly better to replace the setting chosen
FALLBACK = {"bases": "per_precision", "composition": "sum"}


@dataclass(frozen=True)
class TableCheck:
    """How a table ranked the check plans, and which settings the proxy uses after the check."""

    target: str
    plans: int  # check plans the target built and timed
    spearman: float | None  # of the configured table's estimates against their times
    median_error: float  # median |log(estimate / time)|, as a factor (1.0 = exact)
    pairless_spearman: float | None  # of the same table without its pair terms, where it has any
    uses_pairless: bool
    fallback_spearman: float | None  # of the fallback table, where it was measured
    fallback_median_error: float | None
    uses_fallback: bool

    @property
    def chosen_spearman(self) -> float | None:
        """The Spearman held against CHECK_MIN_SPEARMAN: the table's, or without its pair terms where those are dropped."""
        return self.pairless_spearman if self.uses_pairless else self.spearman

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        found = f"latency table on {self.target} ranks {self.plans} whole plans timed on it at Spearman {_signed(self.spearman)}"
        if self.pairless_spearman is not None:
            verdict = "drops them" if self.uses_pairless else "keeps them"
            found += f"; without its pair terms at {_signed(self.pairless_spearman)}: {verdict}"
        if self.fallback_spearman is None:
            return found
        settings = "a base per precision with summed time deltas"
        verdict = "uses it instead" if self.uses_fallback else "keeps the configured table"
        return f"{found}; {settings} ranks them at {_signed(self.fallback_spearman)}: {verdict}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def ranking(table: LatencyTable, plans: list[Plan], times_ms: list[float]) -> tuple[float | None, float]:
    """Spearman of the table's estimates against the times, and its median error as a factor."""
    estimates = np.array([table.estimate_ms(plan) for plan in plans])
    times = np.array(times_ms)
    error = float(np.exp(np.median(np.abs(np.log(estimates / times)))))
    if np.ptp(estimates) == 0 or np.ptp(times) == 0:
        return None, error
    return float(spearmanr(estimates, times).statistic), error


def clearly_better(candidate: float | None, current: float | None) -> bool:
    """Whether `candidate` ranks the check plans better than `current` beyond twelve plans' noise."""
    return candidate is not None and candidate >= (current if current is not None else -1.0) + FALLBACK_MARGIN


def checked_table(
    target: str,
    table: LatencyTable,
    fallback: Callable[[], LatencyTable] | None,
    timed: dict[str, float | str],
    plans: list[Plan],
) -> tuple[LatencyTable, TableCheck | None]:
    """The table to use and its check. `timed` holds each plan's time (ms) by its JSON, or why the target refused it;
    `fallback` measures the fallback table (None where the table already has its settings)."""
    kept = [(plan, value) for plan in plans if not isinstance(value := timed.get(plan.to_json()), str) and value]
    if len(kept) < MIN_CHECK_PLANS:
        return table, None
    checked, times = [plan for plan, _ in kept], [float(ms) for _, ms in kept]
    spearman, error = ranking(table, checked, times)
    chosen, pairless_spearman, uses_pairless = spearman, None, False
    if table.pair_log_ratios:
        pairless = table.without_pairs()
        pairless_spearman, _ = ranking(pairless, checked, times)
        uses_pairless = clearly_better(pairless_spearman, spearman)
        if uses_pairless:
            table, chosen = pairless, pairless_spearman
    poor = chosen is None or chosen < CHECK_MIN_SPEARMAN
    alternative, fallback_spearman, fallback_error = None, None, None
    if fallback is not None and poor:
        alternative = fallback()
        if uses_pairless:  # the fallback has the same pair terms: left out as well
            alternative = alternative.without_pairs()
        fallback_spearman, fallback_error = ranking(alternative, checked, times)
    better = clearly_better(fallback_spearman, chosen)
    check = TableCheck(target, len(kept), spearman, error, pairless_spearman, uses_pairless, fallback_spearman, fallback_error, better)
    console.print(("[yellow]" if poor else "") + check.describe())
    return (alternative if better else table), check
