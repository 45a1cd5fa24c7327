"""Creating and loading Optuna studies by storage URL; the storage is the system of record."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from autotune.errors import AutotuneError
from autotune.interrupts import ShieldedRDBStorage
from autotune.paths import workspace

FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


def measured_study_name(study_name: str, target_name: str) -> str:
    """The study holding a study's full evaluations on one target."""
    return f"{study_name}/full/{target_name}"


def storage_for(url: str) -> optuna.storages.BaseStorage:
    # Our progress bars report trials and failures; Optuna would log a traceback per failed trial.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        return ShieldedRDBStorage(url) if "://" in url else optuna.storages.get_storage(url)
    except Exception as exc:
        raise AutotuneError(f"storage {url!r}: cannot open: {type(exc).__name__}: {exc}") from exc


def artifact_dir_for(url: str) -> Path:
    """The Optuna artifact store lives next to an SQLite file, else in the workspace."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).resolve().parent / "artifacts"
    return workspace() / "artifacts"


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    metric_names: list[str],
    sampler: optuna.samplers.BaseSampler | None = None,
) -> optuna.Study:
    """Create the study or load it; a loaded study must have the same objectives."""
    directions = ["minimize"] * len(metric_names)
    study = optuna.create_study(
        storage=storage, study_name=name, directions=directions, sampler=sampler, load_if_exists=True
    )
    existing = study.metric_names
    if existing is not None and list(existing) != metric_names:
        raise AutotuneError(
            f"study {name!r} already exists with objectives {existing}, not {metric_names}; use a new study name"
        )
    if existing is None:
        study.set_metric_names(metric_names)
    return study


def check_params_encoding(study: optuna.Study, encoding: int) -> None:
    """Refuse to add trials to a study whose parameters were encoded by another version (Optuna would reject the
    changed distributions mid-run); record the encoding on a new one."""
    recorded = study.user_attrs.get("params_encoding")
    if recorded == encoding:
        return
    if recorded is not None or study.get_trials(deepcopy=False):
        raise AutotuneError(
            f"study {study.study_name!r} was recorded by an older autotune with parameters encoded differently "
            f"(encoding {recorded or 1}, now {encoding}); its trials stay readable, but to search again give the study a "
            "new name (or remove it: optuna delete-study)"
        )
    study.set_user_attr("params_encoding", encoding)


def fail_interrupted_trials(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed run are marked FAILED (with the reason) so resuming never waits on them."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", "interrupted: the run stopped mid-trial")
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return len(stale)


def find_study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
