"""Workloads: a model factory plus calibration, recovery and validation data, a metric, and how the model
is called and read (`ModelIO`).

A study names a built-in workload (`fashion-cnn`, `minilm`) or a user's by import path
(`package.module:function`); either way the result is a `Workload`.
"""

from autotune.workloads.base import Diagnostic, LabelledData, Workload, load_workload, top1_accuracy
from autotune.workloads.io import Inputs, ModelIO

__all__ = ["Diagnostic", "Inputs", "LabelledData", "ModelIO", "Workload", "load_workload", "top1_accuracy"]
