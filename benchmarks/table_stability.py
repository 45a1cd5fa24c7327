"""How much a latency table changes when it is measured again: the default table and the check's fallback built
cold again and again on this machine, with the INT8 base timed in every chunk of the probes (`ANCHOR_IN_EVERY_CHUNK`)
and without it, the two arms in turn (A B B A A B ...). Agreement: Spearman between the estimates of two builds of
the same arm over sampled plans; fidelity: Spearman of each build's estimates against those plans timed in one
chunk of interleaved rounds (the truth of benchmarks/latency_fidelity.py). Probes are timed in chunks of at most 16
(`ROUND_CHUNK`): without an anchor, each chunk keeps the level of the load it was timed under.

Run: `python -m benchmarks.table_stability [--study fashion-cnn] [--plans 40] [--repeats 3]` (writes
docs/table-stability.md and its .json; about 15 minutes per target and repeat on 2 cores for fashion-cnn).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from autotune import latency_table
from autotune.context import prepare
from autotune.spec import load_hardware, load_study_spec
from benchmarks.fidelity import scorer_for
from benchmarks.latency_fidelity import VARIANTS, measure_plans, sample_plans, table_context
from benchmarks.metrics import spearman
from benchmarks.pages import fresh_workspace, quiet_libraries, write_results

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("default-rounds", "fallback-rounds")  # keys of benchmarks.latency_fidelity.VARIANTS
ARMS = {"anchor in every chunk": True, "no anchor": False}
TRUTH_ROUNDS = 6


def arm_order(repeat: int) -> list[str]:
    """The arms in turn, the order flipped every repeat (A B, B A, ...) so neither always runs first."""
    names = list(ARMS)
    return names if repeat % 2 == 0 else names[::-1]


def build_table(context, target: str, key: str, anchored: bool) -> tuple[object, float]:
    """One table measured cold (a fresh workspace: no cached probe), with or without the anchor; and its seconds."""
    previous = latency_table.ANCHOR_IN_EVERY_CHUNK
    latency_table.ANCHOR_IN_EVERY_CHUNK = anchored
    try:
        with fresh_workspace("table-stability-"):
            started = time.perf_counter()
            table = scorer_for(context, "none", VARIANTS[key][1]).proxies[f"latency_measured@{target}"].table(table_context(context))
            return table, time.perf_counter() - started
    finally:
        latency_table.ANCHOR_IN_EVERY_CHUNK = previous


def agreement(builds: list[dict], keys: list[str]) -> list[float]:
    """Spearman between the estimates of every two builds."""
    pairs = itertools.combinations(builds, 2)
    values = [spearman(np.array([a["estimates_ms"][k] for k in keys]), np.array([b["estimates_ms"][k] for k in keys])) for a, b in pairs]
    return [float(v) for v in values if v is not None]


def measure_target(study: str, target: str, count: int, repeats: int, seed: int, tables: tuple[str, ...]) -> dict:
    hardware = load_hardware(target)
    context = prepare(dataclasses.replace(load_study_spec(study), targets=(hardware,)))
    plans, _ = sample_plans(context, count, seed)
    times = measure_plans(context, hardware, plans, TRUTH_ROUNDS, latency_table.PROBE_MEASURE.min_seconds)
    keys = list(plans)
    truth = np.array([np.median(times[k]) for k in keys])
    builds: list[dict] = []
    for repeat in range(repeats):
        for arm in arm_order(repeat):
            for key in tables:
                table, seconds = build_table(context, target, key, ARMS[arm])
                estimate = np.array([table.estimate_ms(plans[k]) for k in keys])
                builds.append({
                    "arm": arm,
                    "table": key,
                    "repeat": repeat,
                    "seconds": seconds,
                    "base_ms": float(table.base_ms),
                    "fidelity": spearman(estimate, truth),
                    "estimates_ms": dict(zip(keys, estimate.tolist(), strict=True)),
                })
                print(f"{target}: {arm}, {key}, repeat {repeat + 1}: fidelity {builds[-1]['fidelity']:+.3f}, {seconds:.0f} s", flush=True)
    summary = {}
    for arm, key in itertools.product(ARMS, tables):
        mine = [b for b in builds if b["arm"] == arm and b["table"] == key]
        summary[f"{arm}|{key}"] = {
            "arm": arm,
            "table": key,
            "agreement": agreement(mine, keys),
            "fidelity": [b["fidelity"] for b in mine],
            "base_ms": [b["base_ms"] for b in mine],
            "seconds": float(np.median([b["seconds"] for b in mine])),
        }
    return {"plans": len(keys), "truth_ms": dict(zip(keys, truth.tolist(), strict=True)), "builds": builds, "summary": summary}


def cell(values: list[float]) -> str:
    return f"{np.median(values):+.3f} ({', '.join(f'{v:+.2f}' for v in values)})" if values else "-"


def render(results: dict) -> str:
    lines = [
        "# Latency tables measured again: the INT8 base in every chunk of probes, or not",
        "",
        f"Generated by `{results['command']}` on {results['date']} in {results['seconds']} s; {results['machine']}. "
        f"{results['plans']} plans of study `{results['study']}` (seed {results['seed']}; half uniform over the search "
        "space, half all-INT8 with random pruning), built unrecovered and timed at the throughput batch in one chunk of "
        f"{TRUTH_ROUNDS} interleaved rounds of 0.15 s, drift removed: the truth. Each table was then measured cold "
        f"{results['repeats']} times per arm, the arms in turn. Agreement: Spearman between the estimates of two builds "
        "of the same table and arm over the plans (median, then each pair); fidelity: each build against the truth "
        "(median, then each build); base: the INT8 base's time in each build, ms.",
        "",
    ]
    for target, found in results["targets"].items():
        lines += [
            f"## {target}",
            "",
            "| table | arm | agreement between builds | fidelity | base ms | s per build |",
            "|---|---|---|---|---|---:|",
        ]
        for row in found["summary"].values():
            label = VARIANTS[row["table"]][0].replace("**", "")
            bases = ", ".join(f"{v:.2f}" for v in row["base_ms"])
            lines.append(f"| {label} | {row['arm']} | {cell(row['agreement'])} | {cell(row['fidelity'])} | {bases} | {row['seconds']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="fashion-cnn")
    parser.add_argument("--targets", default="cpu-openvino,cpu-onnxruntime", help="comma-separated hardware files")
    parser.add_argument("--plans", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3, help="cold builds of each table per arm")
    parser.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated, of {', '.join(TABLES)}")
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--out", default=str(ROOT / "docs" / "table-stability.md"))
    args = parser.parse_args(argv)
    tables = tuple(args.tables.split(","))
    if not set(tables) <= set(TABLES):
        parser.error(f"--tables: {args.tables!r}: expected some of {', '.join(TABLES)}")
    if args.repeats < 2:
        parser.error("--repeats: at least 2 builds per arm to compare")
    quiet_libraries()
    started = time.time()
    from benchmarks.run import machine

    about = machine()
    results = {
        "command": " ".join(["python -m benchmarks.table_stability", *(argv if argv is not None else sys.argv[1:])]),
        "study": args.study,
        "plans": args.plans,
        "seed": args.seed,
        "repeats": args.repeats,
        "machine": f"{about['cpu']}, {about['cores']} cores, {about['platform']}",
        "targets": {
            name: measure_target(args.study, name, args.plans, args.repeats, args.seed, tables) for name in args.targets.split(",")
        },
    }
    write_results(args.out, results, render, started)


if __name__ == "__main__":
    main()
