"""Scores a plan with the recipe's proxies after a recovery of a given budget."""

from __future__ import annotations

import copy

import torch

from autotune.compress import fake_quantize_weights
from autotune.context import StudyContext
from autotune.plan import Plan
from autotune.proxies import ProxyContext, registered_proxies


class ProxyScorer:
    def __init__(self, context: StudyContext) -> None:
        self.context = context
        recipe = context.spec.proxies
        proxies = registered_proxies()
        self.proxies = {name: proxies[name](recipe.settings.get(name)) for name in recipe.metrics}
        self.objectives = recipe.objectives
        self.reference = context.recovery.teacher
        with torch.no_grad():
            self.reference_logits = self.reference(context.calibration)

    def score(self, plan: Plan, recovery_steps: int) -> dict[str, float]:
        """Every metric of the recipe for `plan`; raises ProxyError on a failure or a non-finite value."""
        recovered = self.context.recovery.recovered(plan, recovery_steps)
        compressed = fake_quantize_weights(copy.deepcopy(recovered), plan)
        proxy_context = ProxyContext(
            plan=plan,
            compressed=compressed,
            recovered=recovered,
            reference=self.reference,
            calibration=self.context.calibration,
            reference_logits=self.reference_logits,
        )
        return {name: proxy(proxy_context) for name, proxy in self.proxies.items()}
