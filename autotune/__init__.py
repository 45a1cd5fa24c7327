"""autotune: keeps neural networks small and fast as they change.

Optuna multi-objective search over per-layer weight bits and pruning ratios, scored by cheap
proxies, with the promising plans built and measured on real runtimes.
"""

from autotune.plan import LayerChoice, Plan

__all__ = ["LayerChoice", "LabelledData", "ModelIO", "Plan", "Workload"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Workload types import torch; resolve them on first use so `autotune --help` stays instant.
    if name in ("Workload", "LabelledData", "ModelIO"):
        from autotune import workloads

        return getattr(workloads, name)
    raise AttributeError(f"module 'autotune' has no attribute {name!r}")
