"""Latency estimate from MACs of the pruned model, each layer weighted by the cost of its precision."""

from __future__ import annotations

from autotune.errors import SpecError
from autotune.proxies.base import Proxy, ProxyContext

DEFAULT_BIT_COST = {"32": 1.0, "16": 0.5, "8": 0.2, "4": 0.6}


class MacsLatency(Proxy):
    name = "latency_macs"
    unit = "x FP32"
    description = "sum of MACs x cost-per-MAC of the layer's precision, relative to the FP32 model"

    @classmethod
    def check_settings(cls, fields) -> None:
        table = fields.get("bit_cost", dict, {}, "a table of bits -> relative cost per MAC")
        for key, value in table.items():
            if key not in DEFAULT_BIT_COST or not isinstance(value, (int, float)) or value <= 0:
                raise SpecError(f"{fields.path}: {fields.prefix}bit_cost.{key}: expected keys 32/16/8/4 with costs > 0")
        fields.reject_unknown()

    def compute(self, context: ProxyContext) -> float:
        cost = DEFAULT_BIT_COST | self.settings.get("bit_cost", {})
        bits = context.plan.bits()
        compressed = sum(s.macs * cost[str(bits.get(name, 32))] for name, s in context.stats.items())
        reference = sum(s.macs for s in context.reference_stats.values())
        return compressed / reference
