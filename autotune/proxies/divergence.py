"""Output divergence of the compressed model from the FP32 model on the calibration inputs."""

from __future__ import annotations

from autotune.divergence import divergence
from autotune.proxies.base import Proxy, ProxyContext


class OutputDivergence(Proxy):
    name = "output_divergence"
    unit = "by output kind"
    description = "KL for class logits, cosine distance for embeddings, normalised MSE otherwise, vs FP32"

    def compute(self, context: ProxyContext) -> float:
        return divergence(context.io.output_kind, context.reference_outputs, context.outputs).item()


class KLDivergence(Proxy):
    name = "kl_divergence"
    unit = "nats"
    description = "mean KL(FP32 || compressed) of the output distributions on the calibration batch"
    output_kinds = ("logits",)

    def compute(self, context: ProxyContext) -> float:
        return divergence("logits", context.reference_outputs, context.outputs).item()


class Top1Disagreement(Proxy):
    name = "top1_disagreement"
    unit = "fraction"
    description = "fraction of calibration samples whose top-1 class differs from the FP32 model's"
    output_kinds = ("logits",)

    def compute(self, context: ProxyContext) -> float:
        return (context.outputs.argmax(-1) != context.reference_outputs.argmax(-1)).float().mean().item()
