"""Workloads: a model factory plus calibration, recovery and validation data and a metric.

A study names a built-in workload (`fashion-cnn`) or a user's by import path
(`package.module:function`); either way the result is a `Workload`.
"""

from autotune.workloads.base import LabelledData, Workload, load_workload

__all__ = ["LabelledData", "Workload", "load_workload"]
