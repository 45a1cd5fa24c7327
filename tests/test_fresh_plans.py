"""FreshPlanSampler: TPE proposes an untried plan where it would repeat one, on Optuna's real TPE and on a real study."""

from __future__ import annotations

import optuna

from autotune.fresh_plans import FreshPlanSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

LEVELS = {"a": [0, 1, 2, 3], "b": [0, 1, 2, 3], "c": [0.0, 0.5, 1.0]}  # 48 plans


def toy_objective(trial: optuna.Trial) -> tuple[float, float]:
    a, b = trial.suggest_int("a", 0, 3), trial.suggest_int("b", 0, 3)
    c = trial.suggest_float("c", 0.0, 1.0, step=0.5)
    return a + b + c, (3 - a) + 0.5 * (3 - b) + (1 - c)


def key(params: dict) -> tuple:
    return params["a"], params["b"], round(params["c"], 6)


def tpe(seed: int) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)


def plans_of(study: optuna.Study) -> list[tuple]:
    return [key(t.params) for t in study.trials]


def test_tpe_alone_repeats_plans_on_a_small_grid_and_the_wrapper_does_not():
    plain = optuna.create_study(directions=["minimize", "minimize"], sampler=tpe(0))
    plain.optimize(toy_objective, n_trials=30)
    assert len(set(plans_of(plain))) < 30  # what the wrapper is for

    sampler = FreshPlanSampler(tpe(0), key, LEVELS, seed=0)
    fresh = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    fresh.optimize(toy_objective, n_trials=30)
    assert len(set(plans_of(fresh))) == 30
    assert sampler.replaced > 0
    assert all(t.params["c"] in LEVELS["c"] for t in fresh.trials)  # proposals stay on the grid


def test_a_replaced_proposal_is_one_grid_step_from_a_repeat():
    sampler = FreshPlanSampler(tpe(0), key, LEVELS, seed=1)
    start = {"a": 1, "b": 2, "c": 0.5}
    nearest = sampler._nearest_untried(start, tried={key(start)})
    steps = sum(LEVELS[n].index(nearest[n]) != LEVELS[n].index(start[n]) for n in LEVELS)
    assert steps == 1 and all(abs(LEVELS[n].index(nearest[n]) - LEVELS[n].index(start[n])) <= 1 for n in LEVELS)
    every_near = {key(start)} | {key(start | {n: v}) for n in LEVELS for v in LEVELS[n]}
    farther = sampler._nearest_untried(start, tried=every_near)
    assert key(farther) not in every_near


def test_an_exhausted_grid_repeats_instead_of_failing():
    levels = {"a": [0, 1]}

    def objective(trial):
        a = trial.suggest_int("a", 0, 1)
        return float(a), float(1 - a)

    sampler = FreshPlanSampler(optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=1), lambda p: p["a"], levels, seed=0)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=5)
    assert len(study.trials) == 5 and {t.params["a"] for t in study.trials} == {0, 1}


def test_a_study_search_tries_each_plan_once(tmp_path, monkeypatch, tiny_workload):
    """The proxy search of a real study (tiny Fashion-MNIST model, cheap proxies): every trial a distinct plan."""
    from autotune.context import prepare
    from autotune.scoring import ProxyScorer
    from autotune.search import run_search
    from autotune.spec import load_study_spec
    from autotune.studies import storage_for

    monkeypatch.chdir(tmp_path)
    for folder in ("studies", "proxies"):
        (tmp_path / folder).mkdir()
    (tmp_path / "proxies" / "cheap.toml").write_text('objectives = ["latency_macs", "model_size"]\ncalibration_samples = 32\n')
    db = tmp_path / "fresh.db"
    (tmp_path / "studies" / "fresh.toml").write_text(
        f'name = "fresh"\nworkload = "fashion-cnn-tiny"\nsearch_space = "cnn-mixed"\nproxies = "cheap"\n'
        f'targets = ["cpu-openvino"]\nstorage = "sqlite:///{db}"\n[search]\ntrials = 30\nsampler = "tpe"\n'
    )
    context = prepare(load_study_spec("fresh"))
    study = run_search(context, ProxyScorer(context), storage_for(f"sqlite:///{db}"))
    digests = [t.user_attrs["plan_digest"] for t in study.trials]
    assert len(digests) == 30 and len(set(digests)) == 30
    assert isinstance(study.sampler, FreshPlanSampler) and study.sampler.replaced > 0
