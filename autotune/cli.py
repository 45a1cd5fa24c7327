"""The `autotune` command line: run a study, show its measured front, open the dashboard, list studies.

Heavy libraries are imported inside the commands so `autotune --help` is instant.
"""

from __future__ import annotations

import sys
import time

import typer

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=__doc__.splitlines()[0]
)
_state = {"debug": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug
    _quiet_libraries()


def _quiet_libraries() -> None:
    """Library chatter (study-created logs, experimental-API warnings) would bury the progress display."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*is experimental.*")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    logging.getLogger("nncf").setLevel(logging.ERROR)
    # torchao (imported by transformers) warns about its CUDA-only kernels; torch about its own deprecations.
    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


def _storage_url(study: str, storage: str | None) -> tuple[str, str]:
    """A study argument may be a study spec (name or path) or a bare study name on the default storage."""
    from autotune.errors import SpecError
    from autotune.paths import default_storage_url
    from autotune.spec import find_entry, read_toml

    if storage:
        return study, storage
    try:
        path = find_entry("studies", study)
    except SpecError:
        return study, default_storage_url()
    data = read_toml(path)
    return data.get("name", path.stem), data.get("storage") or default_storage_url()


@app.command()
def run(
    spec: str = typer.Argument(..., help="Study spec: a name in studies/ or a path to a TOML file."),
    trials: int | None = typer.Option(None, help="Override the spec's proxy-trial budget."),
) -> None:
    """Run a study: proxy search, promotion, full evaluation on every target, then print the fronts."""
    from autotune.context import prepare
    from autotune.evaluate import Evaluator, stage_agreement
    from autotune.progress import console
    from autotune.promotion import promote, reference_candidates
    from autotune.report import front_table
    from autotune.scoring import ProxyScorer
    from autotune.search import finished_trials, run_search
    from autotune.spec import load_study_spec
    from autotune.studies import artifact_dir_for, storage_for

    phases: dict[str, float] = {}
    started = time.perf_counter()
    study_spec = load_study_spec(spec)
    context = prepare(study_spec)
    phases["load_and_train_s"] = time.perf_counter() - started
    unreachable = sorted(context.layers.unreachable)
    console.print(
        f"[bold]{study_spec.name}[/]: workload {context.workload.name}, {len(context.layer_kinds)} layers"
        + (f" ({len(unreachable)} more left as they are: the output does not depend on {unreachable})" if unreachable else "")
        + ", "
        f"{len(context.recovery.pruner.prunable)} prunable groups, "
        f"{len(context.space.distributions())} searched parameters ({context.space.size():,} plans), "
        f"targets {[t.name for t in study_spec.targets]}, storage {study_spec.storage}"
    )
    storage = storage_for(study_spec.storage)
    finished_trials(context, storage)  # a study defined differently is refused before anything is written
    scorer = ProxyScorer(context)
    evaluator = Evaluator(context, storage, artifact_dir_for(study_spec.storage))

    # The references are needed anyway; built first, a target that cannot realise this model stops the run
    # here with one line, before any trial.
    mark = time.perf_counter()
    references = reference_candidates(context, scorer)
    evaluator.run(references)
    phases["references_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    study = run_search(context, scorer, storage, trials)
    phases["search_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    pool, promoted = promote(context, scorer, study)
    phases["rescore_s"] = time.perf_counter() - mark
    agreement = stage_agreement(pool, scorer.objectives[0])
    study.set_user_attr("stage1_vs_stage2_spearman", agreement)
    console.print(
        f"promoted {len(promoted)} of {len(pool)} re-scored plans; "
        f"search-vs-rescore Spearman of {scorer.objectives[0]}: "
        + ("n/a" if agreement is None else f"{agreement:+.2f}")
    )

    mark = time.perf_counter()
    measured = evaluator.run(references + promoted)
    phases["full_evaluation_s"] = time.perf_counter() - mark
    phases["total_s"] = time.perf_counter() - started
    study.set_user_attr("last_run_phase_seconds", {k: round(v, 1) for k, v in phases.items()})
    for target_study in measured.values():
        console.print(front_table(target_study, context.workload.metric_name))
    console.print("phases: " + ", ".join(f"{k.removesuffix('_s')} {v:.0f}s" for k, v in phases.items()))


@app.command()
def front(
    study: str = typer.Argument(..., help="Study name or study spec."),
    storage: str | None = typer.Option(None, help="Optuna storage URL (default: the spec's, else the workspace's)."),
) -> None:
    """Print the measured Pareto front of every target of a study, with FP32 and uniform-INT8 rows."""
    import optuna

    from autotune.errors import AutotuneError
    from autotune.evaluate import measured_study_name
    from autotune.progress import console
    from autotune.report import front_table
    from autotune.studies import find_study_names, storage_for

    name, url = _storage_url(study, storage)
    backend = storage_for(url)
    prefix = measured_study_name(name, "")
    names = [n for n in find_study_names(backend) if n.startswith(prefix)]
    if not names:
        raise AutotuneError(f"no measured study for {name!r} in {url}; run `autotune run {study}` first")
    for measured in names:
        loaded = optuna.load_study(study_name=measured, storage=backend)
        typer.echo("")
        console.print(front_table(loaded), soft_wrap=False)
    proxy = optuna.load_study(study_name=name, storage=backend) if name in find_study_names(backend) else None
    if proxy is not None and proxy.user_attrs.get("stage1_vs_stage2_spearman") is not None:
        console.print(f"search-vs-rescore Spearman: {proxy.user_attrs['stage1_vs_stage2_spearman']:+.2f}")


@app.command()
def studies(storage: str | None = typer.Option(None, help="Optuna storage URL.")) -> None:
    """List the studies in the storage with their trial counts and objectives."""
    import optuna
    from rich.table import Table

    from autotune.paths import default_storage_url
    from autotune.progress import console
    from autotune.studies import storage_for

    backend = storage_for(storage or default_storage_url())
    table = Table(title=f"studies in {storage or default_storage_url()}")
    for header in ("study", "kind", "trials", "complete", "objectives"):
        table.add_column(header)
    for summary in optuna.get_all_study_summaries(backend, include_best_trial=False):
        loaded = optuna.load_study(study_name=summary.study_name, storage=backend)
        complete = len(loaded.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        table.add_row(
            summary.study_name,
            loaded.user_attrs.get("kind", ""),
            str(summary.n_trials),
            str(complete),
            ", ".join(loaded.metric_names or []),
        )
    console.print(table)


@app.command()
def dashboard(
    storage: str | None = typer.Option(None, help="Optuna storage URL."),
    port: int = typer.Option(8080, help="Port to bind on 127.0.0.1."),
) -> None:
    """Launch optuna-dashboard on the study storage and its artifact store, bound to 127.0.0.1."""
    import os
    import shutil

    from autotune.errors import AutotuneError
    from autotune.paths import default_storage_url
    from autotune.studies import artifact_dir_for

    url = storage or default_storage_url()
    executable = shutil.which("optuna-dashboard") or os.path.join(os.path.dirname(sys.executable), "optuna-dashboard")
    if not os.path.exists(executable):
        raise AutotuneError("optuna-dashboard is not installed in this environment (pip install optuna-dashboard)")
    artifacts = artifact_dir_for(url)
    artifacts.mkdir(parents=True, exist_ok=True)
    typer.echo(f"optuna-dashboard on http://127.0.0.1:{port} for {url} (artifacts {artifacts})")
    os.execv(
        executable, [executable, url, "--host", "127.0.0.1", "--port", str(port), "--artifact-dir", str(artifacts)]
    )


def _one_line(message: str, limit: int = 600) -> str:
    """Library messages quoted in an error can span lines (a state-dict mismatch lists every tensor)."""
    line = " ".join(message.split())
    return line if len(line) <= limit else line[: limit - 40] + " ... (--debug shows all)"


def main() -> None:
    """Entry point: a user error is one red line and exit code 2; --debug shows the traceback."""
    from autotune.errors import AutotuneError

    try:
        app(standalone_mode=True)  # typer reports usage errors and exits by itself
    except AutotuneError as exc:
        if _state["debug"]:
            raise
        typer.secho(f"error: {_one_line(str(exc))}", fg="red", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted: completed trials are kept in the storage; re-run to resume", err=True)
        sys.exit(130)
