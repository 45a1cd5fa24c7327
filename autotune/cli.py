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
    from autotune.spec import load_study_spec

    started = time.perf_counter()
    study_spec = load_study_spec(spec)  # before the heavy imports: a bad spec is answered at once
    from autotune.context import prepare
    from autotune.pipeline import describe, run_study
    from autotune.progress import console

    context = prepare(study_spec)
    console.print(describe(context))
    run_study(context, trials, started=started)


@app.command()
def cycle(
    spec: str = typer.Argument(..., help="Study spec: its name is the lineage."),
    model: str | None = typer.Option(None, help="Checkpoint (a state dict) of the new model version."),
    version: str = typer.Option("", help="A version string for this model (recorded with the cycle)."),
    warm_start_from: str | None = typer.Option(
        None, help="Seed from this lineage, cycle (lineage/c2) or study instead of the previous cycle."
    ),
    cold: bool = typer.Option(False, help="No warm start from earlier cycles (recipes in the spec still seed)."),
    new: bool = typer.Option(False, help="Run a new cycle even if this model and data already had one."),
    trials: int | None = typer.Option(None, help="Override the spec's proxy-trial budget."),
) -> None:
    """Run the next cycle of a lineage on a new model version: warm start, search, gates, promotion policy."""
    from autotune.spec import load_study_spec

    study_spec = load_study_spec(spec)  # before the heavy imports: a bad spec is answered at once
    from autotune.cycle import run_cycle

    outcome = run_cycle(study_spec, model, version, warm_start_from, cold, trials, "manual", new)
    raise typer.Exit(outcome.exit_code)


@app.command()
def watch(
    spec: str = typer.Argument(..., help="Study spec with a [watch] table."),
    once: bool = typer.Option(False, help="Check the triggers once, run a cycle if one fires, and exit."),
) -> None:
    """Run as a service: start a warm cycle when a new checkpoint appears, traffic drifts, or the cadence is due."""
    from autotune.spec import load_study_spec

    study_spec = load_study_spec(spec)  # before the heavy imports: a bad spec is answered at once
    from autotune.watch import Watcher

    raise typer.Exit(Watcher(study_spec).serve(once=once))


def _lineage_storage(lineage: str, storage: str | None):
    from autotune.studies import artifact_dir_for, storage_for

    name, url = _storage_url(lineage, storage)
    return name, storage_for(url), artifact_dir_for(url)


@app.command("promote")
def promote_command(
    lineage: str = typer.Argument(..., help="Lineage (the study spec's name) or its spec."),
    trial: str = typer.Argument(..., help="Measured trial number of the latest cycle, or cN:number."),
    target: str = typer.Option(..., help="Hardware target the version is deployed on."),
    reason: str = typer.Option("", "--why", help="Why it is promoted (kept in the history)."),
    storage: str | None = typer.Option(None, help="Optuna storage URL."),
) -> None:
    """Record a measured candidate as the deployed version for a target (refused if it fails a gate)."""
    from autotune import deploy

    name, backend, _ = _lineage_storage(lineage, storage)
    record = deploy.promote(backend, name, target, trial, reason or "manual promotion")
    typer.echo(f"{name}@{target}: v{record['version']} deployed (cycle c{record['cycle']} trial {record['trial']}); "
               + _delta_text(record["deltas"]))


@app.command()
def rollback(
    lineage: str = typer.Argument(..., help="Lineage (the study spec's name) or its spec."),
    target: str = typer.Option(..., help="Hardware target."),
    reason: str = typer.Option("", "--why", help="Why (kept in the history)."),
    storage: str | None = typer.Option(None, help="Optuna storage URL."),
) -> None:
    """Return a target to the version deployed before the current one."""
    from autotune import deploy

    name, backend, _ = _lineage_storage(lineage, storage)
    removed, restored = deploy.rollback(backend, name, target, reason or "manual rollback")
    typer.echo(f"{name}@{target}: rolled back from v{removed['version']} to v{restored['version']}")


@app.command()
def history(
    lineage: str = typer.Argument(..., help="Lineage (the study spec's name) or its spec."),
    storage: str | None = typer.Option(None, help="Optuna storage URL."),
) -> None:
    """The lineage's changelog: cycles, promotions, rollbacks, regressions, and what is deployed now."""
    from rich.table import Table

    from autotune.lineage import Lineage
    from autotune.plan import Plan
    from autotune.progress import console

    name, backend, _ = _lineage_storage(lineage, storage)
    record = Lineage(backend, name, create=False)
    table = Table(title=f"history of {name}")
    for header in ("when", "event", "who", "details"):
        table.add_column(header)
    for event in record.history():
        details = {k: v for k, v in event.items() if k not in ("event", "when", "who", "record")}
        if isinstance(details.get("deltas"), dict):
            details["deltas"] = _delta_text(details["deltas"])
        if "record" in event:
            details["deltas"] = _delta_text(event["record"]["deltas"])
            details["plan"] = Plan.from_dict(event["record"]["plan"]).counts()
        table.add_row(event["when"], event["event"], event["who"], ", ".join(f"{k}={v}" for k, v in details.items() if v not in ("", None, {}, [])))
    console.print(table, soft_wrap=False)
    for target in record.targets():
        current = record.current(target)
        metrics = current["metrics"]
        console.print(
            f"deployed on {target}: v{current['version']} (cycle c{current['cycle']} trial {current['trial']}, "
            f"{current['when']} by {current['who']}): drop {metrics['drop_pts']:.2f} pts, "
            f"p50 {metrics['latency_p50_ms']:.3f} ms, {metrics['size_mb']:.2f} MB"
        )


@app.command()
def unlock(
    lineage: str = typer.Argument(..., help="Lineage (the study spec's name) or its spec."),
    storage: str | None = typer.Option(None, help="Optuna storage URL."),
) -> None:
    """Remove a cycle lock left by a process that died on another machine (a dead process on this one is taken
    over by itself). Only when no cycle of the lineage is really running."""
    from autotune.lineage import Lineage

    name, backend, _ = _lineage_storage(lineage, storage)
    record = Lineage(backend, name, create=False)
    held = record.locked()
    if held is None:
        typer.echo(f"{name}: no cycle lock")
        return
    backend.delete_study(held["_study_id"])
    record.log("unlock", holder={k: v for k, v in held.items() if not k.startswith("_")})
    typer.echo(f"{name}: removed the lock of cycle {held.get('cycle')} (pid {held.get('pid')} on {held.get('host')})")


@app.command("export")
def export_command(
    lineage: str = typer.Argument(..., help="Lineage (the study spec's name) or its spec."),
    directory: str = typer.Argument(..., help="Where to write the artifact, recipe.json and deployment.json."),
    target: str = typer.Option(..., help="Hardware target."),
    storage: str | None = typer.Option(None, help="Optuna storage URL."),
) -> None:
    """Write the deployed artifact of a target with its recipe (plan, tool versions, seeds, metrics)."""
    from pathlib import Path

    from autotune import deploy

    name, backend, artifacts = _lineage_storage(lineage, storage)
    record = deploy.export(backend, artifacts, name, target, Path(directory))
    typer.echo(f"{name}@{target} v{record['version']} written to {directory}: {sorted(record['artifact_ids'])} + deployment.json")


@app.command()
def recipes(storage: str | None = typer.Option(None, help="Optuna storage URL.")) -> None:
    """Every promoted plan across lineages, with its metrics: proven configurations to reuse."""
    from rich.table import Table

    from autotune import deploy
    from autotune.paths import default_storage_url
    from autotune.progress import console
    from autotune.studies import storage_for

    table = Table(title="promoted recipes")
    for header in ("recipe", "deployed", "cycle", "plan", "drop pts", "p50 ms", "MB", "$/M req", "when"):
        table.add_column(header)
    for found in deploy.recipes(storage_for(storage or default_storage_url())):
        m = found["metrics"]
        cost = m.get("cost_per_million")
        table.add_row(
            found["recipe"],
            "yes" if found["deployed"] else "",
            f"c{found['cycle']}",
            found["plan_counts"],
            f"{m['drop_pts']:.2f}",
            f"{m['latency_p50_ms']:.3f}",
            f"{m['size_mb']:.2f}",
            "" if cost is None else f"{cost:.4f}",
            found["when"],
        )
    console.print(table, soft_wrap=False)


def _delta_text(deltas: dict) -> str:
    if not deltas:
        return "no earlier version"
    return "vs previous: " + ", ".join(f"{k} {v:+.3g}" for k, v in deltas.items())


@app.command()
def front(
    study: str = typer.Argument(..., help="Study name or study spec."),
    storage: str | None = typer.Option(None, help="Optuna storage URL (default: the spec's, else the workspace's)."),
) -> None:
    """Print the measured Pareto front of every target of a study, with FP32 and uniform-INT8 rows."""
    import optuna

    from autotune.errors import AutotuneError
    from autotune.progress import console
    from autotune.report import front_table, replay_table
    from autotune.studies import find_study_names, measured_study_name, storage_for

    name, url = _storage_url(study, storage)
    backend = storage_for(url)
    prefix = measured_study_name(name, "")
    names = [n for n in find_study_names(backend) if n.startswith(prefix)]
    if not names and f"{name}/lineage" in find_study_names(backend):  # a lineage: its latest cycle
        from autotune.lineage import Lineage

        latest = Lineage(backend, name).latest_cycle()
        if latest is not None:
            name = f"{name}/c{latest['cycle']}"
            prefix = measured_study_name(name, "")
            names = [n for n in find_study_names(backend) if n.startswith(prefix)]
    if not names:
        raise AutotuneError(f"no measured study for {name!r} in {url}; run `autotune run {study}` first")
    for measured in names:
        loaded = optuna.load_study(study_name=measured, storage=backend)
        typer.echo("")
        console.print(front_table(loaded), soft_wrap=False)
        ab = replay_table(loaded)
        if ab is not None:
            console.print(ab, soft_wrap=False)
    proxy_name = f"{name}/proxy" if f"{name}/proxy" in find_study_names(backend) else name
    proxy = optuna.load_study(study_name=proxy_name, storage=backend) if proxy_name in find_study_names(backend) else None
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
    from autotune.interrupts import install_ctrl_c

    install_ctrl_c()  # Ctrl-C lands between storage calls, never inside one
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
