"""The measured front as rows and as a rich table (best first, FP32 and uniform-INT8 rows for comparison)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState
from rich.table import Table

from autotune.pareto import pareto_mask
from autotune.plan import Plan


@dataclass(frozen=True)
class FrontRow:
    trial: int
    role: str
    on_front: bool
    accuracy: float
    accuracy_drop_pts: float
    latency_p50_ms: float
    latency_p95_ms: float
    throughput_per_s: float
    size_mb: float
    plan_summary: str


def _compact_plan(trial: optuna.trial.FrozenTrial) -> str:
    plan = trial.user_attrs.get("plan")
    return Plan.from_dict(plan).compact(plan["layers"]) if plan else ""


def measured_rows(study: optuna.Study, metric_name: str = "accuracy") -> list[FrontRow]:
    """Reference rows first, then the Pareto front of the candidates, best accuracy first."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        return []
    front = pareto_mask(np.array([t.values for t in trials]))
    rows = [
        FrontRow(
            trial=t.number,
            role=t.user_attrs.get("role", "candidate"),
            on_front=bool(on_front),
            accuracy=t.user_attrs.get(metric_name, float("nan")),
            accuracy_drop_pts=t.values[0],
            latency_p50_ms=t.values[1],
            latency_p95_ms=t.user_attrs.get("latency_p95_ms", float("nan")),
            throughput_per_s=t.user_attrs.get("throughput_per_s", float("nan")),
            size_mb=t.values[2],
            plan_summary=_compact_plan(t),
        )
        for t, on_front in zip(trials, front, strict=True)
    ]
    references = sorted((r for r in rows if r.role != "candidate"), key=lambda r: r.role)
    candidates = sorted((r for r in rows if r.role == "candidate" and r.on_front), key=lambda r: r.accuracy_drop_pts)
    return references + candidates


def front_table(study: optuna.Study, metric_name: str = "accuracy") -> Table:
    rows = measured_rows(study, metric_name)
    batch = study.user_attrs.get("throughput_batch", "?")
    int8 = next((r for r in rows if r.role == "int8"), None)
    table = Table(title=f"{study.study_name}: measured front ({len(rows)} rows)")
    for header in (
        "#",
        "role",
        metric_name,
        "drop pts",
        "p50 ms",
        "p95 ms",
        f"img/s @{batch}",
        f"vs INT8 @{batch}",
        "MB",
        "plan",
    ):
        table.add_column(header, justify="left" if header in ("role", "plan") else "right")
    for row in rows:
        speedup = f"{row.throughput_per_s / int8.throughput_per_s:.2f}x" if int8 else "-"
        table.add_row(
            str(row.trial),
            row.role + ("" if row.on_front or row.role != "candidate" else " (dominated)"),
            f"{row.accuracy:.4f}",
            f"{row.accuracy_drop_pts:+.2f}",
            f"{row.latency_p50_ms:.3f}",
            f"{row.latency_p95_ms:.3f}",
            f"{row.throughput_per_s:,.0f}",
            speedup,
            f"{row.size_mb:.3f}",
            row.plan_summary,
        )
    captions = []
    if rows:
        layers = list(
            next(iter(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))).user_attrs["plan"]["layers"]
        )
        captions.append("plan = weight bits per layer (-NN: NN% of channels pruned): " + " ".join(layers))
    fidelity = study.user_attrs.get("fidelity")
    if fidelity:

        def fmt(value):
            return "n/a" if value is None else f"{value:+.2f}"

        captions.append(
            f"proxy fidelity ({fidelity['objective']} vs measured drop, {fidelity['points']} plans): "
            f"search stage {fmt(fidelity.get('stage1_vs_measured'))}, rescore stage {fmt(fidelity.get('stage2_vs_measured'))}"
        )
    table.caption = "\n".join(captions)
    return table
