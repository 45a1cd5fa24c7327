"""Hardware targets: turn a pruned model and a plan into a runtime artifact, then score and time it.

Adding a target = one module here defining a `Target` subclass with a `backend` name + one
hardware/*.toml naming that backend.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from autotune.targets.base import Artifact, Measurement, Target

__all__ = ["Artifact", "Measurement", "Target", "registered_backends", "make_target"]

_SHARED_MODULES = {"base", "measure", "export"}


@cache
def registered_backends() -> dict[str, type[Target]]:
    found: dict[str, type[Target]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name in _SHARED_MODULES:
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Target) and value is not Target and value.backend:
                found[value.backend] = value
    return found


def make_target(spec) -> Target:
    return registered_backends()[spec.backend](spec)
