"""Quality of a classifier beyond its accuracy: per-class accuracy, calibration (ECE), temperature scaling.

Measured on every built classifier (class logits with integer labels), so acceptance gates can bound the
worst class and the loss of calibration that compression causes, and a temperature can repair the latter.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch.nn import functional as F

ECE_BINS = 15


def _tensors(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(np.asarray(logits), dtype=torch.float32), torch.as_tensor(np.asarray(labels)).long()


def class_accuracy(logits, labels) -> dict[str, float]:
    """Accuracy per true class (classes absent from the labels are left out)."""
    scores, truth = _tensors(logits, labels)
    correct = scores.argmax(-1) == truth
    return {str(c): float(correct[truth == c].float().mean()) for c in sorted(set(truth.tolist()))}


def expected_calibration_error(logits, labels, temperature: float = 1.0) -> float:
    """Top-label ECE with 15 equal-width confidence bins (torchmetrics), after dividing logits by `temperature`."""
    # Imported here: torchmetrics imports its whole tree (transformers, matplotlib), 3.5 s of every command's start.
    from torchmetrics.functional.classification import multiclass_calibration_error

    scores, truth = _tensors(logits, labels)
    probabilities = F.softmax(scores / temperature, dim=-1)
    return float(multiclass_calibration_error(probabilities, truth, num_classes=scores.shape[-1], n_bins=ECE_BINS))


def fit_temperature(logits, labels) -> float:
    """The temperature minimising the negative log-likelihood on held-out labelled outputs (Guo et al., 2017)."""
    scores, truth = _tensors(logits, labels)

    def nll(log_temperature: float) -> float:
        return float(F.cross_entropy(scores / np.exp(log_temperature), truth))

    found = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))
