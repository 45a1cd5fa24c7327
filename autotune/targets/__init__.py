"""Hardware targets: turn a pruned model and a plan into a runtime artifact, then score and time it.

Adding a target = one module here defining a `Target` subclass with a `backend` name + one
hardware/*.toml naming that backend.
"""

from __future__ import annotations

from functools import cache

from autotune.plugins import discover
from autotune.targets.base import Artifact, Measurement, Target

__all__ = ["Artifact", "Measurement", "Target", "registered_backends", "make_target"]

_SHARED_MODULES = {"base", "measure", "export"}


@cache
def registered_backends() -> dict[str, type[Target]]:
    return discover(__name__, __path__, Target, "backend", skip=_SHARED_MODULES)


def make_target(spec) -> Target:
    return registered_backends()[spec.backend](spec)
