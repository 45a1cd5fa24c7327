"""How far a compressed model's outputs are from the FP32 model's, by the kind of output.

KL divergence for class logits, cosine distance for embeddings, normalised MSE for other values.
Shared by the accuracy proxy, the recovery (distillation) loss and the measured agreement with FP32.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from autotune.workloads.io import OUTPUT_KINDS


def divergence(kind: str, reference: torch.Tensor, compressed: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean divergence over the batch (a scalar tensor; differentiable in `compressed`)."""
    if kind == "logits":
        target = F.log_softmax(reference.float() / temperature, dim=-1).reshape(-1, reference.shape[-1])
        student = F.log_softmax(compressed.float() / temperature, dim=-1).reshape(-1, compressed.shape[-1])
        kl = F.kl_div(student, target, log_target=True, reduction="batchmean") * temperature**2
        return kl.clamp_min(0.0)  # float rounding can give -1e-9 for identical distributions
    if kind == "embedding":
        flat_ref = reference.float().reshape(-1, reference.shape[-1])
        flat_out = compressed.float().reshape(-1, compressed.shape[-1])
        return (1 - F.cosine_similarity(flat_out, flat_ref, dim=-1)).mean()
    if kind == "values":
        scale = reference.float().pow(2).mean().clamp_min(1e-12)
        return (compressed.float() - reference.float()).pow(2).mean() / scale
    raise ValueError(f"output kind {kind!r}: expected one of {list(OUTPUT_KINDS)}")
