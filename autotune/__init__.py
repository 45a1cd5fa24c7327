"""autotune: keeps neural networks small and fast as they change.

Optuna multi-objective search over per-layer weight bits and pruning ratios, scored by cheap
proxies, with the promising plans built and measured on real runtimes.
"""

from autotune.plan import LayerChoice, Plan
from autotune.workloads import LabelledData, Workload

__all__ = ["LayerChoice", "LabelledData", "Plan", "Workload"]
__version__ = "0.1.0"
