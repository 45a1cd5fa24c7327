"""A sampler wrapper that proposes a plan not tried yet in the study.

On a discrete grid multivariate TPE keeps proposing the plans it already holds best: in a 200-trial fashion-cnn
search 69 trials repeated an earlier plan, 60 of the last 100 (one plan 7 times), and a repeat scores nothing new.
Where the wrapped sampler proposes a plan the study already holds, it is asked again, then the nearest untried plan is
taken: one parameter moved one step along its ordered grid (one such plan at random), a local step beside a plan
the sampler rates well.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

ASKS = 3  # proposals asked of the wrapped sampler before stepping away from a repeated one
NEAREST_STEPS = 3  # how far from a repeated proposal an untried plan is looked for, in grid steps
RANDOM_TRIES = 100  # random plans drawn where none that near is untried


class FreshPlanSampler(BaseSampler):
    """Delegates to `base`; where a relative proposal (one covering every parameter) has a `key` already in the study,
    `base` is asked again (ASKS proposals in all), then the nearest untried plan on the `choices` grid is taken (per
    parameter, its distinct values in order). Proposals that leave parameters to independent sampling (a random
    start-up, NSGA-II's mutation) pass unchanged."""

    def __init__(
        self,
        base: BaseSampler,
        key: Callable[[dict[str, Any]], Hashable],
        choices: dict[str, Sequence[Any]],
        seed: int | None = None,
    ) -> None:
        self.base = base
        self._key = key
        self._choices = {name: list(values) for name, values in choices.items()}
        self._rng = np.random.default_rng(seed)
        self.replaced = 0  # proposals that repeated a plan and were replaced (asked again or stepped away)
        # A trial's key by (study, trial number), once it holds every parameter: a key costs about 0.4 ms on
        # fashion-cnn, and every proposal compares against every earlier trial.
        self._trial_keys: dict[tuple[str, int], Hashable] = {}

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        params = self.base.sample_relative(study, trial, search_space)
        if not search_space or set(params) != set(search_space) or set(params) != set(self._choices):
            return params
        tried = self._tried(study, trial)
        if self._key(params) not in tried:
            return params
        self.replaced += 1
        for _ in range(ASKS - 1):
            params = self.base.sample_relative(study, trial, search_space)
            if self._key(params) not in tried:
                return params
        return self._nearest_untried(params, tried)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self._rng = np.random.default_rng()

    def _tried(self, study: optuna.Study, current: FrozenTrial) -> set[Hashable]:
        """Keys of every other trial holding all the parameters (finished, failed or running): a failed plan fails again."""
        tried = set()
        for t in study.get_trials(deepcopy=False):
            if t.number != current.number and set(self._choices) <= set(t.params):
                cached = (study.study_name, t.number)
                if cached not in self._trial_keys:
                    self._trial_keys[cached] = self._key(t.params)
                tried.add(self._trial_keys[cached])
        return tried

    def _nearest_untried(self, params: dict[str, Any], tried: set[Hashable]) -> dict[str, Any]:
        """An untried plan among those nearest `params` on the grid (one step away, else two, else three), picked at
        random; past that, a random untried plan; where none is found, `params` unchanged (a grid all tried)."""
        frontier, reached = [params], {self._key(params)}
        for _ in range(NEAREST_STEPS):
            steps = []
            for plan in frontier:
                for name in self._choices:
                    for moved in _neighbours(plan, name, self._choices[name]):
                        if (key := self._key(moved)) not in reached:
                            reached.add(key)
                            steps.append(moved)
            untried = [plan for plan in steps if self._key(plan) not in tried]
            if untried:
                return untried[int(self._rng.integers(len(untried)))]
            frontier = steps
        for _ in range(RANDOM_TRIES):
            plan = {name: values[int(self._rng.integers(len(values)))] for name, values in self._choices.items()}
            if self._key(plan) not in tried:
                return plan
        return params


def _neighbours(params: dict[str, Any], name: str, values: list[Any]) -> list[dict[str, Any]]:
    """`params` with `name` moved one step down and one step up its ordered values (the nearest where it is off them)."""
    here = min(range(len(values)), key=lambda i: abs(float(values[i]) - float(params[name])))
    return [params | {name: values[i]} for i in (here - 1, here + 1) if 0 <= i < len(values)]
