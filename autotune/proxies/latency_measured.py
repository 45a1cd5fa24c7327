"""Latency estimate from a per-layer table measured in context on the target's runtime (one objective per target)."""

from __future__ import annotations

from autotune.latency_check import CHECK_SEED, FALLBACK, MIN_CHECK_PLANS, TableCheck, checked_table
from autotune.latency_history import LatencyCorrection, load_observations, observations_path
from autotune.latency_table import (
    BASES,
    BOUNDARIES,
    COMPOSITIONS,
    PRUNING_PRECISIONS,
    PRUNING_PROBES,
    LatencyTable,
    architecture_key,
    timed_plans_ms,
)
from autotune.progress import console
from autotune.proxies.base import Proxy, ProxyContext

# Each setting is one value for every target, or a table of target name or backend -> value (else the default).
# Runtimes differ: OpenVINO's kernels run some pruned widths slower than narrower and wider ones, ONNX Runtime's
# do not (docs/proxy-fidelity.md).
SETTINGS = {
    "bases": (BASES, "int8"),
    "pruning_probes": (PRUNING_PROBES, "half_width"),
    "pruning_precisions": (PRUNING_PRECISIONS, "base"),
    "composition": (COMPOSITIONS, "product"),
    "boundaries": (BOUNDARIES, "none"),
}
# Interleaved timing rounds per probe (the median is kept): one timing on a shared machine drifts by about 10%.
# `learn_from_measured`: once this many plans of the architecture were measured on the target by earlier full
# evaluations (any study, this workspace), the table's estimate is corrected by a regression learnt from them
# (autotune.latency_history); 0 never.
# `check_plans`: whole plans drawn from the search space, timed on the target to check the table's ranking (and to
# fall back to a base per precision with summed deltas where it misranks them: autotune.latency_check); 0 never.
COUNTS = {"probe_rounds": (1, 9, 1), "learn_from_measured": (0, 100_000, 0), "check_plans": (0, 200, 12)}  # (least, most, default)
LEAST_TO_LEARN_FROM = 8


class MeasuredLatency(Proxy):
    name = "latency_measured"
    unit = "ms per throughput batch"
    description = "base latency on the target x each layer's measured in-network ratio for its precision and pruning"
    per_target = True
    plan_only = True

    @classmethod
    def check_settings(cls, fields) -> None:
        for key, (allowed, default) in SETTINGS.items():
            value = fields.get(key, (str, dict), default, f"one of {list(allowed)} or a table of target name or backend -> one of them")
            for choice in value.values() if isinstance(value, dict) else (value,):
                if choice not in allowed:
                    raise fields.error(key, f"{choice!r}: expected one of {list(allowed)}")
        for key, (least, most, default) in COUNTS.items():
            value = fields.get(key, (int, dict), default, f"an integer {least}..{most} or a table of target name or backend -> one")
            for count in value.values() if isinstance(value, dict) else (value,):
                if isinstance(count, bool) or not isinstance(count, int) or not least <= count <= most:
                    raise fields.error(key, f"{count!r}: expected an integer from {least} to {most}")
                if key == "learn_from_measured" and 0 < count < LEAST_TO_LEARN_FROM:
                    raise fields.error(key, f"{count!r}: expected 0 (never) or at least {LEAST_TO_LEARN_FROM} measured plans")
                if key == "check_plans" and 0 < count < MIN_CHECK_PLANS:
                    raise fields.error(key, f"{count!r}: expected 0 (never) or at least {MIN_CHECK_PLANS} plans")
        fields.reject_unknown()

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self.target = self.settings["target"]
        self._table: LatencyTable | None = None
        self.check: TableCheck | None = None  # how the table ranked whole plans timed on the target
        self._correction: LatencyCorrection | None = None
        self._learnt = False
        self._history_until: float | None = None

    @property
    def history_until(self) -> float | None:
        """Measurements recorded after this time (epoch s) are not learnt from: a study keeps the correction it
        started with when it is resumed (run_search sets it from the study). A new value is learnt again."""
        return self._history_until

    @history_until.setter
    def history_until(self, until: float | None) -> None:
        if until != self._history_until:
            self._history_until, self._learnt = until, False

    @property
    def learnt_from(self) -> int:
        """How many measured plans the correction in use was learnt from (0: the table alone)."""
        return self._correction.learnt_from if self._correction is not None else 0

    def setting(self, key: str):
        """This target's value of `key`: from a table, by the target's name, else by its backend, else the default."""
        default = SETTINGS[key][1] if key in SETTINGS else COUNTS[key][2]
        value = self.settings.get(key, default)
        if isinstance(value, dict):
            return value.get(self.target.name, value.get(self.target.backend, default))
        return value

    def table(self, context: ProxyContext) -> LatencyTable:
        if self._table is None:
            self._table = self._checked(context, self._measure(context, {}))
        if not self._learnt:
            self._correction, self._learnt = self._learn(context, self._table), True
        return self._table

    def _measure(self, context: ProxyContext, overrides: dict[str, str], timed_before: dict | None = None) -> LatencyTable:
        settings = {key: self.setting(key) for key in SETTINGS} | overrides
        return LatencyTable(
            self.target,
            context.pruner,
            context.build,
            context.channel_multiple,
            settings["bases"],
            settings["pruning_probes"],
            context.prune_ratios,
            settings["composition"],
            settings["pruning_precisions"],
            self.setting("probe_rounds"),
            settings["boundaries"],
            context.layer_bits,
            timed_before,
        )

    def _checked(self, context: ProxyContext, table: LatencyTable) -> LatencyTable:
        """The table, or the fallback where whole plans drawn from the search space rank it wrong (latency_check)."""
        count = self.setting("check_plans")
        if not count or context.space is None:
            return table
        plans = context.space.random_plans(count, CHECK_SEED)
        plan_jsons = tuple(plan.to_json() for plan in plans)
        timed = timed_plans_ms(self.target, plan_jsons, context.pruner, context.build, context.channel_multiple, self.setting("probe_rounds"))
        has_fallback_settings = all(self.setting(key) == value for key, value in FALLBACK.items())
        # The fallback reuses the configured table's timings of the probes both measure (its INT8 base's).
        fallback = None if has_fallback_settings else lambda: self._measure(context, FALLBACK, table.timings)
        table, self.check = checked_table(self.target.name, table, fallback, timed, plans)
        return table

    def _learn(self, context: ProxyContext, table: LatencyTable) -> LatencyCorrection | None:
        least = self.setting("learn_from_measured")
        if not least:
            return None
        layers = list(table.base.layers)
        path = observations_path(self.target, architecture_key(context.pruner.teacher), context.channel_multiple)
        observed = [(plan, ms) for plan, ms in load_observations(path, self.history_until) if set(plan.layers) == set(layers)]
        if len(observed) < least:
            console.print(f"latency on {self.target.name}: the table alone ({len(observed)} measured plans so far, {least} to learn from)")
            return None
        console.print(f"latency on {self.target.name}: the table corrected from {len(observed)} measured plans ({path.name})")
        return LatencyCorrection(table.estimate_ms, observed, layers)

    def compute(self, context: ProxyContext) -> float:
        estimate = self.table(context).estimate_ms(context.plan)
        if self._correction is None:
            return estimate
        return self._correction.corrected_ms(estimate, context.plan)
