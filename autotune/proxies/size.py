"""Model size implied by the plan: pruned parameter counts times each layer's weight bits."""

from __future__ import annotations

from autotune.proxies.base import Proxy, ProxyContext


class ModelSize(Proxy):
    name = "model_size"
    unit = "MB"
    description = "weights at the plan's bits after pruning, plus biases and other parameters at 32 bits"

    def compute(self, context: ProxyContext) -> float:
        bits = context.plan.bits()
        total_bits = 32 * context.other_params
        for name, stats in context.stats.items():
            total_bits += stats.params * bits.get(name, 32)
        return total_bits / 8 / 1e6
