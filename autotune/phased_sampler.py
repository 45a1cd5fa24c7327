"""A sampler that hands a study from one sampler to the next at fixed trial numbers.

GPSampler finds the most in a search's first few dozen trials, but its cost grows with the trials it holds (on
fashion-cnn about 1 s per trial over the first 48, several seconds per trial towards 200); multivariate TPE costs
milliseconds at any size. A phased sampler runs each where it pays; every phase reads every trial the study holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState


class PhasedSampler(BaseSampler):
    """`phases` are (first trial number, sampler), the first starting at 0; a trial is sampled by the phase its
    number falls in, so a resumed study picks up in the phase it stopped in."""

    def __init__(self, phases: Sequence[tuple[int, BaseSampler]]) -> None:
        starts = [start for start, _ in phases]
        if not phases or starts[0] != 0 or starts != sorted(set(starts)):
            raise ValueError(f"phases must start at trial 0 in increasing order, got starts {starts}")
        self.phases = list(phases)

    def sampler_for(self, trial: FrozenTrial) -> BaseSampler:
        return [sampler for start, sampler in self.phases if start <= trial.number][-1]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.sampler_for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.sampler_for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.sampler_for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.sampler_for(trial).before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self.sampler_for(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        for _, sampler in self.phases:
            sampler.reseed_rng()
