"""The shared latency protocol, so every runtime is timed the same way.

Warm-up calls are excluded; then calls are repeated until both a minimum count and a minimum
time are reached (capped), and the median, p95 and interquartile spread are reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from autotune.spec import MeasureSettings


def time_calls(call: Callable[[], object], settings: MeasureSettings) -> np.ndarray:
    """Milliseconds per call, warm-up excluded."""
    for _ in range(settings.warmup):
        call()
    samples = []
    started = time.perf_counter()
    while len(samples) < settings.max_repeats and (
        len(samples) < settings.min_repeats or time.perf_counter() - started < settings.min_seconds
    ):
        begin = time.perf_counter()
        call()
        samples.append((time.perf_counter() - begin) * 1e3)
    return np.asarray(samples)


def summarise(samples: np.ndarray) -> dict[str, float]:
    p25, p50, p75, p95 = np.percentile(samples, [25, 50, 75, 95])
    return {"p50": float(p50), "p95": float(p95), "spread": float((p75 - p25) / p50), "repeats": len(samples)}


def time_cuda_calls(call: Callable[[], object], settings: MeasureSettings) -> np.ndarray:
    """Milliseconds per call measured with CUDA events (GPU time, not host time), warm-up excluded."""
    import torch

    for _ in range(settings.warmup):
        call()
    torch.cuda.synchronize()
    samples = []
    started = time.perf_counter()
    while len(samples) < settings.max_repeats and (
        len(samples) < settings.min_repeats or time.perf_counter() - started < settings.min_seconds
    ):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        call()
        end.record()
        end.synchronize()
        samples.append(begin.elapsed_time(end))
    return np.asarray(samples)
