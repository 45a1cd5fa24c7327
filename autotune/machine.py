"""What a timing depends on besides the model and the target's settings: this machine and the libraries that build
and run the artifact. Timings cached under another machine's or another version's key are never read back (a
workspace shared by workers on different CPUs, or kept across an upgrade)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from functools import cache
from importlib import metadata
from pathlib import Path

# The packages that turn a plan into a timed artifact: the exporter, the pruner, the quantizers and the runtimes.
BUILD_PACKAGES = ("torch", "torch-pruning", "nncf", "openvino", "onnxruntime", "torchao")


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (else what `platform` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@cache
def machine_identity() -> dict[str, str | int]:
    """The CPU (model name, logical CPUs, a digest of its feature flags: one generic model name covers CPUs with and
    without AMX), the GPU where torch sees one, and the build packages' versions."""
    import torch

    flags = sorted(name for name, value in torch.cpu.get_capabilities().items() if value is True)
    found: dict[str, str | int] = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count() or 0,
        "cpu_flags": hashlib.sha256(json.dumps(flags).encode()).hexdigest()[:12],
    }
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name(0)
    return found | package_versions(BUILD_PACKAGES)


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the named distributions (those not installed left out)."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
