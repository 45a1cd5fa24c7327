"""One whole autotune cycle timed from cold caches: start-up, proxy search (with its latency tables), re-score, and
the full evaluation of the promoted plans with their recovery on every target; the base model's own training is
excluded (its checkpoint is copied in). Issue 8's targets on 2 cores: fashion-cnn within 10 min, minilm within 20 min,
for 200 proxy trials and 16 full evaluations.

Run: `python -m benchmarks.cycle [--study fashion-cnn] [--seed 0]` (writes docs/cycle-time.md; one study per run, a
section each).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from optuna.trial import TrialState

from autotune.context import prepare
from autotune.evaluate import Evaluator, tool_versions
from autotune.promotion import reference_candidates
from autotune.scoring import ProxyScorer
from autotune.spec import load_study_spec
from autotune.studies import storage_for
from benchmarks import methods
from benchmarks.metrics import resampled_spearman
from benchmarks.pages import fresh_workspace, quiet_libraries, write_study_section
from benchmarks.run import machine

TARGET_MINUTES = {"fashion-cnn": 10, "minilm": 20}


def timed_cycle(study: str, seed: int, trials: int, evaluations: int) -> dict:
    """Seconds per phase of one cycle in a fresh workspace that holds only the trained base model."""
    with fresh_workspace("autotune-cycle-") as fresh:
        spec = dataclasses.replace(load_study_spec(study), name="cycle", storage=f"sqlite:///{fresh / 'cycle.db'}")
        phases = {}
        started = time.perf_counter()
        context = prepare(spec)
        scorer = ProxyScorer(context)
        phases["start_up_s"] = time.perf_counter() - started
        storage = storage_for(spec.storage)
        plans, search, promoted = methods.autotune_plans(context, scorer, storage, trials, evaluations, seed, spec.sampler)
        phases["proxy_search_s"], phases["rescore_s"] = search["proxy_search_s"], search["rescore_s"]
        started = time.perf_counter()
        studies = Evaluator(context, storage, fresh / "artifacts").run(reference_candidates(context, scorer) + promoted)
        phases["full_evaluation_s"] = time.perf_counter() - started
        fidelity = {name: promoted_fidelity(study) for name, study in studies.items()}
    return {
        "plans": len(plans),
        "targets": [t.name for t in spec.targets],
        "recovery_precision": context.recovery.config.precision,
        "phases": phases,
        "fidelity": fidelity,
    }


def promoted_fidelity(study, draws: int = 2000) -> dict:
    """How the proxies ranked the promoted plans this cycle measured: the accuracy proxy after the search's recovery
    (stage 1) and after the re-score's (stage 2) against the measured drop, the latency proxy against the measured
    batch latency; each Spearman with a 90% interval over resampled plans (the drops' own noise not included)."""
    recorded = study.user_attrs.get("fidelity", {})
    objective, latency = recorded.get("objective"), recorded.get("latency_proxy")
    trials = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("role") == "candidate" and f"stage2.{objective}" in t.user_attrs
    ]
    drops = np.array([t.values[0] for t in trials])
    columns = {
        "stage 1 accuracy": ([t.user_attrs[f"stage1.{objective}"] for t in trials], drops),
        "stage 2 accuracy": ([t.user_attrs[f"stage2.{objective}"] for t in trials], drops),
    }
    if latency and all(f"stage2.{latency}" in t.user_attrs for t in trials):
        measured = [t.user_attrs["measurement"]["batch_latency_ms"] for t in trials]
        columns["latency"] = ([t.user_attrs[f"stage2.{latency}"] for t in trials], np.array(measured))
    found = {"plans": len(trials), "drops": [float(drops.min()), float(drops.max())] if len(trials) else None}
    return found | {name: resampled_spearman(proxy, truth, draws) for name, (proxy, truth) in columns.items()}


def fidelity_lines(fidelity: dict) -> list[str]:
    """The promoted plans' proxy fidelity per target, as a table."""
    if not fidelity:
        return []

    def cell(value: dict | None) -> str:
        if not value or value["spearman"] is None:
            return "-"
        return f"{value['spearman']:+.2f} [{value['low']:+.2f}, {value['high']:+.2f}]"

    lines = [
        "Proxy fidelity over the promoted plans this cycle measured (Spearman, 90% interval over resampled plans; the "
        "stage 2 accuracy proxy is what promotion ranked by, after the re-score's recovery, which the full evaluation "
        "continues):",
        "",
        "| target | plans | measured drops (points) | stage 1 accuracy | stage 2 accuracy | latency |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for target, found in fidelity.items():
        drops = f"{found['drops'][0]:+.2f} to {found['drops'][1]:+.2f}" if found["drops"] else "-"
        lines.append(
            f"| {target} | {found['plans']} | {drops} | {cell(found.get('stage 1 accuracy'))} | "
            f"{cell(found.get('stage 2 accuracy'))} | {cell(found.get('latency'))} |"
        )
    return [*lines, ""]


def section_title(study: str, found: dict) -> str:
    """A study's section per recovery precision: a CPU that multiplies bf16 natively distils in it, one that does not
    in f32, and both machines' figures stay on the page."""
    return f"{study}, recovery in {found['recovery_precision']}"


def section(study: str, seed: int, trials: int, found: dict) -> list[str]:
    """One study's figures, with the machine and versions they were measured on (sections are rerun one at a time)."""
    phases = found["phases"]
    about = machine()
    total = sum(phases.values())
    limit = TARGET_MINUTES.get(study)
    verdict = (
        f" Target: within {limit} min: **{'met' if total <= limit * 60 else 'missed'}** ({total / 60:.1f} min)." if limit else ""
    )
    return [
        f"## {section_title(study, found)}",
        "",
        f"Seed {seed}, {trials} proxy trials, {found['plans']} promoted plans evaluated on {', '.join(found['targets'])} "
        f"(plus FP32 and uniform INT8 as references), recovery distilled in {found['recovery_precision']}, measured "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {about['cpu']} ({about['cores']} cores) with "
        + ", ".join(f"{k} {v}" for k, v in tool_versions().items())
        + ".",
        "",
        "| start-up s | proxy search s | re-score s | full evaluation s | total s |",
        "|---:|---:|---:|---:|---:|",
        f"| {phases['start_up_s']:.0f} | {phases['proxy_search_s']:.0f} | {phases['rescore_s']:.0f} | "
        f"{phases['full_evaluation_s']:.0f} | {total:.0f} |",
        "",
        "Start-up loads the workload and the base model; the proxy search includes measuring the latency tables on "
        "its first trial (a later cycle on the same model and target finds them cached). The base model's training is "
        f"excluded.{verdict}",
        "",
        *fidelity_lines(found.get("fidelity", {})),
    ]


def write(out: Path, title: str, lines: list[str]) -> None:
    """Replace the section of this title (study and recovery precision), keeping the others."""
    header = [
        "# Whole-cycle time from cold caches",
        "",
        "Generated by `python -m benchmarks.cycle`, one study per run; each section names the machine it ran on. A study "
        "has a section per recovery precision: bf16 where the CPU multiplies it natively (AMX tiles; AVX512-BF16 alone did not pay: docs/recovery-precision.md), else f32.",
        "",
    ]
    write_study_section(out, header, title, lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="fashion-cnn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--evaluations", type=int, default=16)
    parser.add_argument("--out", default="docs/cycle-time.md")
    args = parser.parse_args(argv)
    quiet_libraries()
    found = timed_cycle(args.study, args.seed, args.trials, args.evaluations)
    write(Path(args.out), section_title(args.study, found), section(args.study, args.seed, args.trials, found))
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
