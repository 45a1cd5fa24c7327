"""The shared latency protocol, so every runtime is timed the same way.

Warm-up calls are excluded; then calls are repeated until both a minimum count and a minimum
time are reached (capped), and the median, p95 and interquartile spread are reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from autotune.spec import MeasureSettings


def host_ms(call: Callable[[], object]) -> float:
    begin = time.perf_counter()
    call()
    return (time.perf_counter() - begin) * 1e3


def cuda_event_ms(call: Callable[[], object]) -> float:
    """GPU time of one call between two CUDA events (host time would include launch gaps)."""
    import torch

    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    call()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end)


def time_calls(
    call: Callable[[], object], settings: MeasureSettings, clock: Callable[[Callable[[], object]], float] = host_ms
) -> np.ndarray:
    """Milliseconds per call by `clock`, warm-up excluded."""
    for _ in range(settings.warmup):
        call()
    samples = []
    started = time.perf_counter()
    while len(samples) < settings.max_repeats and (
        len(samples) < settings.min_repeats or time.perf_counter() - started < settings.min_seconds
    ):
        samples.append(clock(call))
    return np.asarray(samples)


def summarise(samples: np.ndarray) -> dict[str, float]:
    p25, p50, p75, p95 = np.percentile(samples, [25, 50, 75, 95])
    return {"p50": float(p50), "p95": float(p95), "spread": float((p75 - p25) / p50), "repeats": len(samples)}
