"""Latency estimate from a per-layer table measured in context on the target's runtime (one objective per target)."""

from __future__ import annotations

from autotune.latency_table import BASES, LatencyTable
from autotune.proxies.base import Proxy, ProxyContext


class MeasuredLatency(Proxy):
    name = "latency_measured"
    unit = "ms per throughput batch"
    description = "base latency on the target x each layer's measured in-network ratio for its precision and pruning"
    per_target = True

    @classmethod
    def check_settings(cls, fields) -> None:
        bases = fields.get("bases", str, "int8")
        if bases not in BASES:
            raise fields.error("bases", f"{bases!r}: expected one of {list(BASES)}")
        fields.reject_unknown()

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self.target = self.settings["target"]
        self._table: LatencyTable | None = None

    def table(self, context: ProxyContext) -> LatencyTable:
        if self._table is None:
            bases = self.settings.get("bases", "int8")
            self._table = LatencyTable(self.target, context.pruner, context.build, context.channel_multiple, bases)
        return self._table

    def compute(self, context: ProxyContext) -> float:
        return self.table(context).estimate_ms(context.plan)
