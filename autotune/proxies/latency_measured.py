"""Latency estimate from a per-layer table measured in context on the target's runtime (one objective per target)."""

from __future__ import annotations

from autotune.latency_table import BASES, COMPOSITIONS, PRUNING_PRECISIONS, PRUNING_PROBES, LatencyTable
from autotune.proxies.base import Proxy, ProxyContext

# Each setting is one value for every target, or a table of target name or backend -> value (else the default).
# Runtimes differ: OpenVINO's kernels run some pruned widths slower than narrower and wider ones, ONNX Runtime's
# do not (docs/proxy-fidelity.md).
SETTINGS = {
    "bases": (BASES, "int8"),
    "pruning_probes": (PRUNING_PROBES, "half_width"),
    "pruning_precisions": (PRUNING_PRECISIONS, "base"),
    "composition": (COMPOSITIONS, "product"),
}
# Interleaved timing rounds per probe (the median is kept): one timing on a shared machine drifts by about 10%.
COUNTS = {"probe_rounds": (1, 9, 1)}  # (least, most, default)


class MeasuredLatency(Proxy):
    name = "latency_measured"
    unit = "ms per throughput batch"
    description = "base latency on the target x each layer's measured in-network ratio for its precision and pruning"
    per_target = True

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
        fields.reject_unknown()

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self.target = self.settings["target"]
        self._table: LatencyTable | None = None

    def setting(self, key: str):
        """This target's value of `key`: from a table, by the target's name, else by its backend, else the default."""
        default = SETTINGS[key][1] if key in SETTINGS else COUNTS[key][2]
        value = self.settings.get(key, default)
        if isinstance(value, dict):
            return value.get(self.target.name, value.get(self.target.backend, default))
        return value

    def table(self, context: ProxyContext) -> LatencyTable:
        if self._table is None:
            self._table = LatencyTable(
                self.target,
                context.pruner,
                context.build,
                context.channel_multiple,
                self.setting("bases"),
                self.setting("pruning_probes"),
                context.prune_ratios,
                self.setting("composition"),
                self.setting("pruning_precisions"),
                self.setting("probe_rounds"),
            )
        return self._table

    def compute(self, context: ProxyContext) -> float:
        return self.table(context).estimate_ms(context.plan)
