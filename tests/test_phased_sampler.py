"""PhasedSampler and the "gp-tpe" sampler: each trial sampled by its phase's real Optuna sampler, on one history."""

from __future__ import annotations

import optuna
import pytest

from autotune.fresh_plans import FreshPlanSampler
from autotune.phased_sampler import PhasedSampler
from autotune.search import GP_TRIALS, make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def toy_objective(trial: optuna.Trial) -> tuple[float, float]:
    a, b = trial.suggest_int("a", 0, 7), trial.suggest_int("b", 0, 7)
    c = trial.suggest_float("c", 0.0, 0.7, step=0.1)
    return a + b + c, (7 - a) + 0.5 * (7 - b) + (0.7 - c)


class RecordingTPE(optuna.samplers.TPESampler):
    """Real multivariate TPE that records the trials it was asked about and how many parameters it proposed jointly."""

    def __init__(self, **kwargs) -> None:
        super().__init__(multivariate=True, **kwargs)
        self.relative: dict[int, int] = {}

    def sample_relative(self, study, trial, search_space):
        params = super().sample_relative(study, trial, search_space)
        self.relative[trial.number] = len(params)
        return params


class RecordingRandom(optuna.samplers.RandomSampler):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.numbers: set[int] = set()

    def before_trial(self, study, trial) -> None:
        self.numbers.add(trial.number)
        super().before_trial(study, trial)


def test_each_phase_samples_its_trials_and_the_next_phase_learns_from_the_earlier_ones(tmp_path):
    random, tpe = RecordingRandom(seed=0), RecordingTPE(seed=0, n_startup_trials=8)
    storage = f"sqlite:///{tmp_path / 'phases.db'}"
    study = optuna.create_study(study_name="s", storage=storage, directions=["minimize"] * 2, sampler=PhasedSampler([(0, random), (8, tpe)]))
    study.optimize(toy_objective, n_trials=12)
    assert random.numbers == set(range(8))
    assert set(tpe.relative) == set(range(8, 12))
    # TPE's own start-up is 8 finished trials: it proposed every parameter jointly from the random phase's history.
    assert all(n == 3 for n in tpe.relative.values())

    # A resumed study (a new sampler object, as a new process builds it) stays in the phase its trial numbers reach.
    random2, tpe2 = RecordingRandom(seed=1), RecordingTPE(seed=1, n_startup_trials=8)
    resumed = optuna.load_study(study_name="s", storage=storage, sampler=PhasedSampler([(0, random2), (8, tpe2)]))
    resumed.optimize(toy_objective, n_trials=3)
    assert random2.numbers == set() and set(tpe2.relative) == {12, 13, 14}


@pytest.mark.parametrize("starts", [[], [1, 5], [0, 5, 5], [0, 9, 4]])
def test_phases_must_start_at_zero_and_increase(starts):
    with pytest.raises(ValueError, match="phases must start at trial 0"):
        PhasedSampler([(start, optuna.samplers.RandomSampler()) for start in starts])


def test_gp_tpe_runs_gp_for_its_first_trials_then_tpe():
    sampler = make_sampler("gp-tpe", 0, 200)
    (gp_start, gp), (tpe_start, tpe) = sampler.phases
    assert (gp_start, tpe_start) == (0, GP_TRIALS)
    assert isinstance(gp, optuna.samplers.GPSampler) and isinstance(tpe, optuna.samplers.TPESampler)
    # A budget at or under GP's share is GP alone, with the start-up a GP study of that budget would have.
    short = make_sampler("gp-tpe", 0, 12)
    assert [start for start, _ in short.phases] == [0, 12]

    levels = {"a": list(range(8)), "b": list(range(8)), "c": [round(0.1 * i, 1) for i in range(8)]}
    fresh = FreshPlanSampler(short, lambda p: (p["a"], p["b"], round(p["c"], 6)), levels, seed=0)
    study = optuna.create_study(directions=["minimize"] * 2, sampler=fresh)
    study.optimize(toy_objective, n_trials=12)
    assert len({(t.params["a"], t.params["b"], round(t.params["c"], 6)) for t in study.trials}) == 12
