"""Output divergence of the compressed model from the FP32 model on the calibration batch."""

from __future__ import annotations

from torch.nn import functional as F

from autotune.proxies.base import Proxy, ProxyContext


class KLDivergence(Proxy):
    name = "kl_divergence"
    unit = "nats"
    description = "mean KL(FP32 || compressed) of the output distributions on the calibration batch"

    def compute(self, context: ProxyContext) -> float:
        reference = F.log_softmax(context.reference_logits, dim=1)
        compressed = F.log_softmax(context.logits, dim=1)
        return F.kl_div(compressed, reference, log_target=True, reduction="batchmean").item()


class Top1Disagreement(Proxy):
    name = "top1_disagreement"
    unit = "fraction"
    description = "fraction of calibration samples whose top-1 class differs from the FP32 model's"

    def compute(self, context: ProxyContext) -> float:
        return (context.logits.argmax(1) != context.reference_logits.argmax(1)).float().mean().item()
