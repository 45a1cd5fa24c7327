"""The measured front as rows and as a rich table (best first, FP32 and uniform-INT8 rows for comparison)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState
from rich.table import Table

from autotune.deploy import trial_metrics
from autotune.gates import failed_gates
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
    batch_latency_p50_ms: float
    throughput_per_s: float
    size_mb: float
    cost_per_million: float | None
    plan_summary: str
    fp32_divergence: float = float("nan")  # the built model's validation outputs vs torch FP32
    gate_failures: tuple[str, ...] | None = None  # None: measured before gates were recorded


LAYERS_LISTED = 16  # longer plans are summarised by counts so the table stays readable


def _compact_plan(trial: optuna.trial.FrozenTrial) -> str:
    plan = trial.user_attrs.get("plan")
    if not plan:
        return ""
    parsed = Plan.from_dict(plan)
    return parsed.compact(plan["layers"]) if len(plan["layers"]) <= LAYERS_LISTED else parsed.counts()


def measured_rows(study: optuna.Study, metric_name: str = "accuracy") -> list[FrontRow]:
    """Reference rows first, then the candidates: the Pareto front first, least accuracy drop first."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        return []
    # The front is taken over the trials that pass every gate: a failing candidate may not be promoted.
    passing = [t for t in trials if not t.user_attrs.get("gate_failures")]
    on_front = set()
    if passing:
        on_front = {t.number for t, keep in zip(passing, pareto_mask(np.array([t.values for t in passing])), strict=True) if keep}
    rows = [
        FrontRow(
            trial=t.number,
            role=t.user_attrs.get("role", "candidate"),
            on_front=t.number in on_front,
            accuracy=t.user_attrs.get(metric_name, float("nan")),
            accuracy_drop_pts=t.values[0],
            latency_p50_ms=_or_nan(metrics["latency_p50_ms"]),
            latency_p95_ms=t.user_attrs.get("latency_p95_ms", float("nan")),
            batch_latency_p50_ms=_or_nan(metrics["batch_latency_p50_ms"]),
            throughput_per_s=t.user_attrs.get("throughput_per_s", float("nan")),
            size_mb=t.values[2],
            cost_per_million=t.user_attrs.get("cost_per_million"),
            plan_summary=_compact_plan(t),
            fp32_divergence=t.user_attrs.get("fp32_divergence", float("nan")),
            gate_failures=None if "gate_failures" not in t.user_attrs else tuple(t.user_attrs["gate_failures"]),
        )
        for t, metrics in ((t, trial_metrics(study, t)) for t in trials)
    ]
    references = sorted((r for r in rows if r.role != "candidate"), key=lambda r: r.role)
    # Every measured candidate is shown (a dominated one tells what the search got wrong); `front` marks the front.
    candidates = sorted((r for r in rows if r.role == "candidate"), key=lambda r: (not r.on_front, r.accuracy_drop_pts))
    return references + candidates


def _fp32_precision(study: optuna.Study) -> str:
    """Which float precision the FP32 row really ran at, beside what the runtime would pick if not told."""
    fp32 = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.user_attrs.get("role") == "fp32"), None)
    if fp32 is None or not fp32.user_attrs.get("realised_precision"):
        return ""
    ran = ", ".join(sorted(set(fp32.user_attrs["realised_precision"].values())))
    default = study.user_attrs.get("runtime_float_default")
    text = f"fp32 ran its layers at {ran}"
    if default and default != ran:
        return text + f"; left to itself this runtime would run them at {default} on this machine (see docs/benchmarks.md)"
    return text + (f" (this runtime's own default here: {default})" if default else "")


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _ratio(value: float, base: FrontRow | None, attribute: str) -> str:
    reference = getattr(base, attribute) if base else None
    return f"{value / reference:.2f}x" if reference else "-"


def _saving(cost: float | None, base: FrontRow | None) -> str:
    if cost is None or base is None or not base.cost_per_million:
        return "-"
    return f"{(1 - cost / base.cost_per_million) * 100:+.0f}%"


def front_table(study: optuna.Study, metric_name: str | None = None) -> Table:
    metric_name = metric_name or study.user_attrs.get("metric_name", "accuracy")
    rows = measured_rows(study, metric_name)
    attrs = study.user_attrs
    batch = attrs.get("throughput_batch", "?")
    slo = attrs.get("latency_slo_p95_ms")
    fp32 = next((r for r in rows if r.role == "fp32"), None)
    int8 = next((r for r in rows if r.role == "int8"), None)
    table = Table(title=f"{study.study_name}: measured front ({len(rows)} rows)")
    headers = (
        "#",
        "role",
        metric_name,
        "drop pts",
        "out div",
        "p50 ms",
        "p95 ms",
        f"samples/s @{batch}",
        f"vs INT8 @{batch}",
        "MB",
        "$/M req",
        "save vs FP32",
        "save vs INT8",
        "gates",
        "plan",
    )
    for header in headers:
        table.add_column(header, justify="left" if header in ("role", "plan") else "right")
    for row in rows:
        breaks_slo = slo is not None and row.latency_p95_ms > slo
        table.add_row(
            str(row.trial),
            row.role + (" *" if row.role == "candidate" and row.on_front else ""),
            f"{row.accuracy:.4f}",
            f"{row.accuracy_drop_pts:+.2f}",
            f"{abs(row.fp32_divergence):.4f}",  # abs: -0.0 for FP32 itself
            f"{row.latency_p50_ms:.3f}",
            f"[red]{row.latency_p95_ms:.3f} SLO![/red]" if breaks_slo else f"{row.latency_p95_ms:.3f}",
            f"{row.throughput_per_s:,.0f}",
            _ratio(row.throughput_per_s, int8, "throughput_per_s"),
            f"{row.size_mb:.3f}",
            "-" if row.cost_per_million is None else f"{row.cost_per_million:.4f}",
            _saving(row.cost_per_million, fp32),
            _saving(row.cost_per_million, int8),
            _gates(row),
            row.plan_summary,
        )
    captions = []
    if rows:
        layers = list(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))[0].user_attrs["plan"]["layers"])
        if len(layers) <= LAYERS_LISTED:
            captions.append("plan = weight bits per layer (-NN: NN% of channels pruned): " + " ".join(layers))
        else:
            captions.append(f"plan = layers per weight precision and pruned layers, of {len(layers)} (each trial's "
                            "`plan` attribute and its plan.json artifact hold the whole plan)")
        axes = ", ".join(study.metric_names or ("drop", "latency", "MB"))
        captions.append(f"candidate * = on the measured Pareto front ({axes}) of the plans that pass every gate")
        captions.append(
            "out div = how far the built model's validation outputs are from torch FP32 (KL for logits, cosine "
            "distance for embeddings, normalised MSE otherwise): a metric within its noise can hide a drifted model"
        )
    fp32_precision = _fp32_precision(study)
    if fp32_precision:
        captions.append(fp32_precision)
    for row in rows:
        if row.gate_failures:
            captions.append(f"#{row.trial} fails gate " + "; ".join(row.gate_failures))
    wasted = dominated_by_int8(rows)
    if wasted:
        candidates = sum(r.role == "candidate" for r in rows)
        captions.append(
            f"{len(wasted)} of {candidates} candidates dominated by uniform INT8 (no more accurate, no faster at "
            f"@{batch}, no smaller): " + ", ".join(f"#{t}" for t in wasted)
        )
    if attrs.get("price_per_hour") is not None:
        captions.append(
            f"cost: {attrs.get('instance') or 'instance'} at ${attrs['price_per_hour']}/h serving at the measured "
            f"throughput @{batch}" + (f"; SLO p95 <= {slo} ms at batch 1" if slo is not None else "")
        )
    fidelity = attrs.get("fidelity")
    if fidelity:
        captions.append(
            f"proxy fidelity over {fidelity['points']} plans (Spearman): {fidelity['objective']} vs measured drop "
            f"search stage {_fmt(fidelity.get('stage1_vs_measured'))}, rescore stage {_fmt(fidelity.get('stage2_vs_measured'))}"
            + (
                f"; {fidelity['latency_proxy']} vs measured batch latency {_fmt(fidelity.get('latency_vs_measured'))}"
                if fidelity.get("latency_proxy")
                else ""
            )
        )
    table.caption = "\n".join(captions)
    return table


def dominated_by_int8(rows: list[FrontRow]) -> list[int]:
    """Candidates uniform INT8 dominates on the measured axes (drop, throughput, size): full evaluations the
    promotion wasted, since the plan a person would try first is better on every axis."""
    int8 = next((r for r in rows if r.role == "int8"), None)
    if int8 is None:
        return []
    found = []
    for row in rows:
        if row.role != "candidate":
            continue
        mine = (row.accuracy_drop_pts, -row.throughput_per_s, row.size_mb)
        theirs = (int8.accuracy_drop_pts, -int8.throughput_per_s, int8.size_mb)
        if all(t <= m for t, m in zip(theirs, mine, strict=True)) and any(t < m for t, m in zip(theirs, mine, strict=True)):
            found.append(row.trial)
    return found


def _gates(row: FrontRow) -> str:
    if row.gate_failures is None:
        return "-"
    if not row.gate_failures:
        return "pass"
    return "[red]" + ",".join(failed_gates(row.gate_failures)) + "[/red]"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def replay_table(study: optuna.Study) -> Table | None:
    """A/B on the recorded traffic, side by side: each build against FP32 and the deployed version (None when the
    study replayed no traffic)."""
    trials = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.user_attrs.get("replay")
    ]
    if not trials:
        return None
    first = trials[0].user_attrs["replay"]
    metric = study.user_attrs.get("metric_name", "metric")
    table = Table(title=f"{study.study_name}: A/B on {first['requests']} recorded requests")
    columns = ["#", "role", "agree FP32", "div FP32", "agree deployed", "div deployed"]
    columns += [f"{metric} (labels)"] if "metric" in first else []
    columns += ["p50 ms", "p95 ms", "p99 ms", "gates"]
    for header in columns:
        table.add_column(header, justify="left" if header in ("role", "gates") else "right")
    order = {"deployed": 0, "fp32": 1, "int8": 2}
    for trial in sorted(trials, key=lambda t: (order.get(t.user_attrs.get("role"), 3), t.number)):
        replay = trial.user_attrs["replay"]
        latency = replay["latency_ms"]
        row = [
            str(trial.number),
            trial.user_attrs.get("role", ""),
            _plain(replay.get("agreement_fp32")),
            _plain(replay.get("divergence_fp32")),
            _plain(replay.get("agreement_deployed")),
            _plain(replay.get("divergence_deployed")),
        ]
        row += [_plain(replay.get("metric"))] if "metric" in first else []
        row += [f"{latency['p50']:.3f}", f"{latency['p95']:.3f}", f"{latency['p99']:.3f}"]
        row.append(",".join(failed_gates(trial.user_attrs.get("gate_failures") or [])) or "pass")
        table.add_row(*row)
    table.caption = (
        f"agree = top-1 agreement, div = output divergence; latency of {latency['timed']} recorded requests answered "
        "one by one in order (batch 1)"
    )
    return table


def _plain(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
