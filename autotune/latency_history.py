"""Latencies measured by earlier full evaluations, kept per target and architecture, and a correction of the latency
table learnt from them.

Every full evaluation times its build at the target's throughput batch; that time is appended to a file in the
workspace cache keyed like the latency table's own cache (target backend, threads, batch, options; the model's
shapes; the channel multiple), so a later study of the same architecture on the same machine can read it, whatever
lineage or cycle measured it. The correction is a ridge regression of log(measured / table estimate) on each layer's
kept channels and precision class: it learns what the table's product of per-layer ratios misses (ratios that do not
compound, kernels that change with widths) and, with few plans, shrinks to the table itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from autotune.errors import PlanError
from autotune.latency_table import target_identity
from autotune.paths import cache_dir
from autotune.plan import Plan
from autotune.spec import HardwareSpec

OBSERVATIONS_CACHE = "latency-observed"
# Ridge penalties tried by leave-one-out (RidgeCV's efficient GCV): large ones shrink the correction to a constant,
# i.e. to the table's own ranking.
ALPHAS = np.logspace(0, 3, 10)


def observations_path(spec: HardwareSpec, architecture: str, channel_multiple: int) -> Path:
    """The file of measured plans for one target setting, architecture and channel rounding (this machine's cache)."""
    key = hashlib.sha256(f"{target_identity(spec)}|{architecture}|{channel_multiple}".encode()).hexdigest()[:16]
    return cache_dir(OBSERVATIONS_CACHE) / f"{spec.name}-{key}.jsonl"


def record_observation(path: Path, plan: Plan, batch_ms: float, origin: str) -> None:
    """Append one measured plan (the caller decides what a failure to write costs: Evaluator.record_latency)."""
    line = json.dumps({"plan": plan.to_dict(), "batch_ms": batch_ms, "origin": origin, "at": time.time()})
    with path.open("a") as file:
        file.write("\n" + line + "\n")  # the leading newline ends a record a crash left unfinished
        file.flush()
        os.fsync(file.fileno())


def load_observations(path: Path, until: float | None = None) -> list[tuple[Plan, float]]:
    """Each distinct plan measured (up to `until`, epoch s), with the median of its measurements; unreadable lines (a
    write cut short) skipped."""
    if not path.exists():
        return []
    by_plan: dict[str, tuple[Plan, list[float]]] = {}
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            plan, value, at = Plan.from_dict(record["plan"]), float(record["batch_ms"]), float(record["at"])
        except (PlanError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if until is not None and at > until:
            continue
        if np.isfinite(value) and value > 0:
            by_plan.setdefault(plan.digest(), (plan, []))[1].append(value)
    return [(plan, float(np.median(values))) for plan, values in by_plan.values()]


def plan_features(plan: Plan, layers: list[str]) -> list[float]:
    """Per layer: the kept fraction of its channels, that fraction again where the layer runs as a float (16/32) or at
    4 bits, and whether it runs as a float: latency follows the work left and the kernels that do it."""
    features = []
    for name in layers:
        choice = plan.choice(name)
        kept, floating = 1.0 - choice.prune, float(choice.bits >= 16)
        features += [kept, kept * floating, kept * float(choice.bits == 4), floating]
    return features


class LatencyCorrection:
    """log(measured / estimate) predicted for a plan by a ridge regression learnt from measured plans."""

    def __init__(
        self, estimate_ms: Callable[[Plan], float], observed: list[tuple[Plan, float]], layers: list[str]
    ) -> None:
        from sklearn.linear_model import RidgeCV

        self.layers = layers
        self.learnt_from = len(observed)
        x = np.array([plan_features(plan, layers) for plan, _ in observed])
        y = np.array([np.log(ms / estimate_ms(plan)) for plan, ms in observed])
        self.model = RidgeCV(alphas=ALPHAS).fit(x, y)

    def log_correction(self, plan: Plan) -> float:
        return float(self.model.predict(np.array([plan_features(plan, self.layers)]))[0])

    def corrected_ms(self, estimate_ms: float, plan: Plan) -> float:
        return float(estimate_ms * np.exp(self.log_correction(plan)))
