"""Latency table settings on models autotune was not shaped around (tests/zoo.py), against whole plans timed there.

Per model and CPU target: `count` plans (uniform INT8 at pruning 0, 0.25 and 0.5, FP32, the rest drawn from the
model's search space) are built and timed at the throughput batch in interleaved rounds as the default recipe times probes (the truth is the median);
each table setting estimates them. Spearman and the median / largest |log(estimate / truth)|.

Run: `python -m benchmarks.zoo_latency` (about 45 min on 2 cores; `--models depthwise_cnn` for one) writes
docs/latency-zoo.md; each model's results are kept under .autotune/benchmarks/zoo-latency/ and `--render` re-renders.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / ".autotune" / "benchmarks" / "zoo-latency"
MODELS = ("depthwise_cnn", "nested_shared", "sequential_cnn", "tiny_bert")
VARIANTS = {
    "default": {},
    "sum": {"composition": "sum"},
    "per_precision": {"bases": "per_precision"},
    "per_precision+sum": {"bases": "per_precision", "composition": "sum"},
}
ONNXRUNTIME_VARIANTS = {
    "no_pairs": {"boundaries": "none"},
    "every_width": {"pruning_probes": "every_width"},
    "every_width+sum": {"pruning_probes": "every_width", "composition": "sum"},
    "every_width+per_precision+sum": {"pruning_probes": "every_width", "bases": "per_precision", "composition": "sum"},
}
OPENVINO_VARIANTS = {"pairs": {"boundaries": "pairs"}}
LABELS = {
    "default": "default table (one INT8 base, product of ratios; plus pair terms on ONNX Runtime once they were added)",
    "no_pairs": "default without pair terms (the default before them)",
    "pairs": "default with pair terms (adjacent float layers measured together)",
    "sum": "summed time deltas",
    "per_precision": "a base per precision",
    "per_precision+sum": "**a base per precision, summed deltas** (the check's fallback)",
    "every_width": "every pruned width probed",
    "every_width+sum": "every width, summed deltas",
    "every_width+per_precision+sum": "every width, a base per precision, summed deltas",
}


def measure(name: str, count: int, folder: Path) -> dict:
    from scipy.stats import spearmanr

    sys.path.insert(0, str(ROOT / "tests"))
    from test_any_model import FAMILIES, write_study

    from autotune.anchors import uniform_anchors
    from autotune.context import prepare
    from autotune.latency_table import LatencyTable, time_in_rounds, timing_context
    from autotune.plan import LayerChoice, Plan
    from autotune.proxies.latency_measured import SETTINGS, MeasuredLatency
    from autotune.spec import load_proxy_recipe, load_study_spec

    folder.mkdir(parents=True, exist_ok=True)
    spec_path = write_study(folder, name, *FAMILIES[name])
    for hardware in ("cpu-openvino", "cpu-onnxruntime"):  # the real measurement settings, not the tests' quick ones
        shutil.copy(ROOT / "hardware" / f"{hardware}.toml", folder / "hardware" / f"{hardware}.toml")
    os.chdir(folder)
    spec = load_study_spec(str(spec_path))
    context = prepare(spec)
    space = context.space
    anchors = uniform_anchors(space, (0.0, 0.25, 0.5))
    plans = {p.describe(): p for p in anchors}
    unpruned = anchors[0].describe()  # timed in every chunk of the plans, each chunk brought to its level, as tables do
    plans["fp32"] = Plan({n: LayerChoice(32) for n in context.build_context().layers.kinds})
    choices, rng = space.choices(), random.Random(1)
    while len(plans) < count:
        plan = space.plan_from_params({n: rng.choice(v) for n, v in choices.items()})
        plans[plan.digest()] = plan
    build = context.build_context()
    pruner, multiple, ratios = context.recovery.pruner, context.recovery.config.channel_multiple, space.prune_ratios()
    result = {"model": name, "plans": len(plans), "channel_multiple": multiple, "targets": {}}
    recipe = load_proxy_recipe("default").settings["latency_measured"]
    for hardware in spec.targets:
        default = MeasuredLatency(recipe | {"target": hardware})  # each variant departs from the default recipe's table
        defaults = {key: default.setting(key) for key in SETTINGS}
        started = time.perf_counter()
        timed = time_in_rounds(hardware, plans, pruner, timing_context(build), multiple, default.setting("probe_rounds"), anchor=unpruned)
        truth = {k: float(np.median(v)) for k, v in timed.items() if not isinstance(v, str)}
        keys = list(truth)
        found = {"truth_seconds": time.perf_counter() - started, "timed": len(keys), "variants": {}}
        variants = VARIANTS | (ONNXRUNTIME_VARIANTS if hardware.backend == "onnxruntime" else OPENVINO_VARIANTS)
        for variant, settings in variants.items():
            started = time.perf_counter()
            table = LatencyTable(
                hardware, pruner, build, multiple, prune_ratios=ratios, layer_bits=space.layer_bits(), probe_rounds=default.setting("probe_rounds"), **(defaults | settings)
            )
            estimates = np.array([table.estimate_ms(plans[k]) for k in keys])
            errors = np.abs(np.log(estimates / np.array([truth[k] for k in keys])))
            found["variants"][variant] = {
                "spearman": float(spearmanr(estimates, [truth[k] for k in keys]).statistic),
                "median_abs_log_error": float(np.median(errors)),
                "max_abs_log_error": float(np.max(errors)),
                "seconds": time.perf_counter() - started,
            }
            print(f"{name} {hardware.name} {variant}: {found['variants'][variant]['spearman']:+.2f}", flush=True)
        result["targets"][hardware.name] = found
    return result


def render(results: list[dict], out: Path) -> None:
    lines = [
        "# Latency tables on models of other shapes",
        "",
        "Generated by `python -m benchmarks.zoo_latency` (see its docstring). Per model of tests/zoo.py and CPU target, "
        "whole plans (uniform INT8 at pruning 0, 0.25 and 0.5, FP32, the rest drawn from the model's search space) built "
        "and timed at the throughput batch in interleaved rounds as the default recipe times table probes (3 rounds of 0.3 s "
        "until 2026-12-04, then 6 of 0.15 s); each latency table setting ranks them (Spearman) and "
        "misses them by a factor (the median and the largest |log(estimate / time)|, as factors). Tables are timed in "
        "rounds as the default recipe times them; \"s\" is the table's build time in that run (0 when the probes were "
        "already cached by a setting before it).",
        "",
    ]
    for result in results:
        lines += [f"## {result['model']} ({result['plans']} plans, {result['when']})", ""]
        if not any({"pairs", "no_pairs"} & set(found["variants"]) for found in result["targets"].values()):
            lines += ["Measured before the pair terms: no table below has them (ONNX Runtime's default had none).", ""]
        for target, found in result["targets"].items():
            lines += [
                f"**{target}** ({found['timed']} plans timed)",
                "",
                "| latency table | Spearman | median error | largest error | s |",
                "|---|---:|---:|---:|---:|",
            ]
            for variant, row in found["variants"].items():
                lines.append(
                    f"| {LABELS[variant]} | {row['spearman']:+.2f} | {np.exp(row['median_abs_log_error']):.2f}x "
                    f"| {np.exp(row['max_abs_log_error']):.1f}x | {row['seconds']:.0f} |"
                )
            lines.append("")
    out.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--plans", type=int, default=30)
    parser.add_argument("--render", action="store_true", help="re-render docs/latency-zoo.md from the kept results")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "latency-zoo.md")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.render:
        for name in args.models.split(","):
            started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            result = measure(name, args.plans, RESULTS / "studies" / name) | {"when": started}
            (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    kept = [json.loads((RESULTS / f"{name}.json").read_text()) for name in MODELS if (RESULTS / f"{name}.json").exists()]
    render(kept, args.out)


if __name__ == "__main__":
    main()
