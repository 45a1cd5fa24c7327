"""The continuous-compression tables of a study spec: how a cycle warm-starts, what it may promote by
itself, what a watch reacts to, and which recorded traffic is replayed.

[warm_start]  proxy_plans, recipes
[policy]      auto_promote, objective, margin, alert
[watch]       model_dir, pattern, poll_seconds, every, drift_threshold
[replay]      inputs, calibrate, latency_requests
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

POLICY_OBJECTIVES = ("drop_pts", "latency_p50_ms", "batch_latency_p50_ms", "latency_p95_ms", "size_mb", "cost_per_million")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class WarmStart:
    proxy_plans: int = 8  # best proxy plans of the source cycle enqueued, besides its measured fronts
    recipes: tuple[str, ...] = ()  # promoted recipes ("lineage@target", "lineage@target#v2") enqueued first


@dataclass(frozen=True)
class Policy:
    auto_promote: bool = False
    objective: str = "latency_p50_ms"  # what a candidate must beat the deployed version on
    margin: float = 0.05  # relative improvement needed on `objective` (0.05: 5% better)
    alert: str = ""  # a shell command (JSON on stdin) or an http(s) URL (JSON POST) called on regressions


@dataclass(frozen=True)
class Watch:
    model_dir: str = ""  # new checkpoint files here start a cycle
    pattern: str = "*.pt"
    poll_seconds: float = 60.0
    every_seconds: float | None = None  # cadence: a cycle at least this often
    drift_threshold: float | None = None  # PSI of the FP32 model's outputs on the replay inputs vs the reference


@dataclass(frozen=True)
class Replay:
    inputs: str = ""  # npz (arrays named like the model inputs, optional `labels`) or parquet of recorded requests
    calibrate: bool = False  # calibrate proxies and INT8 on the recorded requests instead of the workload's data
    latency_requests: int = 200  # requests timed one by one for the latency distribution


def parse_duration(text: str) -> float:
    """'90s', '15m', '12h', '7d', '2w' -> seconds."""
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r}: expected a number and a unit s/m/h/d/w, e.g. '7d'")
    return float(match.group(1)) * SECONDS[match.group(2)]


def load_warm_start(fields) -> WarmStart:
    recipes = fields.get("recipes", list, [], "a list of 'lineage@target' recipe names")
    for recipe in recipes:
        if not isinstance(recipe, str) or "@" not in recipe:
            raise fields.error("recipes", f"{recipe!r}: expected 'lineage@target' or 'lineage@target#vN'")
    warm = WarmStart(proxy_plans=fields.number("proxy_plans", 8, 0, integer=True), recipes=tuple(recipes))
    fields.reject_unknown()
    return warm


def load_policy(fields) -> Policy:
    objective = fields.get("objective", str, "latency_p50_ms")
    if objective not in POLICY_OBJECTIVES:
        raise fields.error("objective", f"{objective!r}: expected one of {list(POLICY_OBJECTIVES)}")
    policy = Policy(
        auto_promote=fields.get("auto_promote", bool, False),
        objective=objective,
        margin=fields.number("margin", 0.05, 0.0),
        alert=fields.get("alert", str, ""),
    )
    fields.reject_unknown()
    return policy


def load_watch(fields, spec_dir: Path) -> Watch:
    every = fields.get("every", str, "")
    try:
        every_seconds = parse_duration(every) if every else None
    except ValueError as exc:
        raise fields.error("every", str(exc)) from exc
    if every_seconds == 0:
        raise fields.error("every", f"{every!r}: a cadence must be longer than 0")
    model_dir = fields.get("model_dir", str, "")
    watch = Watch(
        model_dir=str((spec_dir / model_dir).resolve()) if model_dir and not Path(model_dir).is_absolute() else model_dir,
        pattern=fields.get("pattern", str, "*.pt"),
        poll_seconds=fields.number("poll_seconds", 60.0, 0.01),
        every_seconds=every_seconds,
        drift_threshold=fields.number("drift_threshold", None, 0.0),
    )
    fields.reject_unknown()
    return watch


def load_replay(fields, spec_dir: Path) -> Replay:
    inputs = fields.get("inputs", str, "")
    if inputs and not Path(inputs).is_absolute():
        inputs = str((spec_dir / inputs).resolve())
    replay = Replay(
        inputs=inputs,
        calibrate=fields.get("calibrate", bool, False),
        latency_requests=fields.number("latency_requests", 200, 1, integer=True),
    )
    fields.reject_unknown()
    if replay.calibrate and not replay.inputs:
        raise fields.error("calibrate", "true, but no `inputs` file is named")
    return replay
