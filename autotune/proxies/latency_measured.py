"""Latency estimate from a per-layer table measured on the target's own runtime (one objective per target)."""

from __future__ import annotations

from autotune.latency_table import LatencyTable, layer_geometries
from autotune.proxies.base import Proxy, ProxyContext


class MeasuredLatency(Proxy):
    name = "latency_measured"
    unit = "ms per throughput batch"
    description = "sum over layers of measured fixed cost + cost per MAC at the layer's precision, on one target"
    per_target = True

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self.target = self.settings["target"]
        self._table: LatencyTable | None = None

    def table(self, context: ProxyContext) -> LatencyTable:
        if self._table is None:
            self._table = LatencyTable(self.target, layer_geometries(context.reference, context.calibration))
        return self._table

    def compute(self, context: ProxyContext) -> float:
        macs = {name: stats.macs for name, stats in context.stats.items()}
        return self.table(context).estimate_ms(context.plan, macs)
