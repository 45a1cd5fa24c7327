"""Acceptance gates: bounds every measured candidate must meet before it may be promoted.

Declared in a study spec's `[gates]` table and checked on the full evaluation of each target. A candidate's
failures are recorded on its measured trial (`gate_failures`, one readable line each) and shown by `front`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Gates:
    max_drop_pts: float | None = None  # metric drop vs the FP32 model, in points
    max_class_drop_pts: float | None = None  # worst per-class accuracy drop vs FP32 (classifiers)
    max_ece_increase: float | None = None  # expected calibration error increase vs FP32 (classifiers)
    latency_slo: bool = True  # each target's `latency_slo_p95_ms` (batch 1) is a gate
    max_cost_per_million: float | None = None  # dollars per million requests at the measured throughput
    temperature_scaling: bool = True  # a candidate failing only on calibration gets a fitted temperature

    @property
    def needs_classes(self) -> bool:
        return self.max_class_drop_pts is not None or self.max_ece_increase is not None


def load_gates(fields) -> Gates:
    """The `[gates]` table of a study spec (spec.Fields); every bound is optional."""
    gates = Gates(
        max_drop_pts=fields.number("max_drop_pts", None, 0.0),
        max_class_drop_pts=fields.number("max_class_drop_pts", None, 0.0),
        max_ece_increase=fields.number("max_ece_increase", None, 0.0),
        latency_slo=fields.get("latency_slo", bool, True),
        max_cost_per_million=fields.number("max_cost_per_million", None, 0.0),
        temperature_scaling=fields.get("temperature_scaling", bool, True),
    )
    fields.reject_unknown()
    return gates


def gate_failures(gates: Gates, measured: dict[str, Any], slo_p95_ms: float | None) -> list[str]:
    """One line per gate the measured candidate fails (empty: it passes every gate).

    `measured` holds drop_pts, latency_p95_ms, cost_per_million and, for classifiers, class_drops (class ->
    points) and ece_increase.
    """
    failures = []
    drop = measured["drop_pts"]
    if gates.max_drop_pts is not None and drop > gates.max_drop_pts:
        failures.append(f"drop: {drop:.2f} > {gates.max_drop_pts:g} pts")
    class_drops = measured.get("class_drops") or {}
    if gates.max_class_drop_pts is not None and class_drops:
        worst = max(class_drops, key=class_drops.get)
        if class_drops[worst] > gates.max_class_drop_pts:
            failures.append(f"class: class {worst} drops {class_drops[worst]:.2f} > {gates.max_class_drop_pts:g} pts")
    increase = measured.get("ece_increase")
    if gates.max_ece_increase is not None and increase is not None and increase > gates.max_ece_increase:
        failures.append(f"ece: +{increase:.4f} > {gates.max_ece_increase:g}")
    p95 = measured["latency_p95_ms"]
    if gates.latency_slo and slo_p95_ms is not None and p95 > slo_p95_ms:
        failures.append(f"slo: p95 {p95:.3f} > {slo_p95_ms:g} ms")
    cost = measured.get("cost_per_million")
    if gates.max_cost_per_million is not None and cost is not None and cost > gates.max_cost_per_million:
        failures.append(f"cost: ${cost:.4f} > ${gates.max_cost_per_million:g} per million requests")
    return failures


def failed_gates(failures) -> list[str]:
    """The gate of each failure line ('class: class 6 drops ...' -> 'class')."""
    return [line.split(":", 1)[0] for line in failures]


def only_calibration(failures: list[str]) -> bool:
    return bool(failures) and set(failed_gates(failures)) == {"ece"}
