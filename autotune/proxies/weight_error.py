"""Relative weight-quantization error, parameter-weighted over the quantized layers."""

from __future__ import annotations

import torch

from autotune.proxies.base import Proxy, ProxyContext


class WeightQuantizationError(Proxy):
    name = "weight_error"
    unit = "relative MSE"
    description = "sum ||W - Q(W)||^2 / sum ||W||^2 over conv/linear layers (0 for a full-precision plan)"

    def compute(self, context: ProxyContext) -> float:
        quantized = dict(context.compressed.named_modules())
        error = energy = 0.0
        for name, module in context.recovered.named_modules():
            if name not in context.stats:
                continue
            weight = module.weight.detach()
            error += torch.sum((weight - quantized[name].weight.detach()) ** 2).item()
            energy += torch.sum(weight**2).item()
        return error / energy if energy else 0.0
