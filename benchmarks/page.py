"""docs/benchmarks.md from one run's results: the method table per target, the issue's targets met or missed, proxy
fidelity, whole-cycle times, and two PNG plots per target (hypervolume vs full evaluations; measured fronts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.pages import write_page
from benchmarks.variants import SEARCH_VARIANTS

METHOD_ORDER = ("autotune", "random", "sweep", "reference", "nncf-accuracy-control", "int8", "fp32", "fp32-runtime-default")
LABELS = {
    "autotune": "autotune (proxy search + promotion)",
    "random": "random search",
    "sweep": "uniform sweep (INT8 + one pruning ratio)",
    "reference": "reference front (random + uniform plans)",
    "nncf-accuracy-control": "NNCF quantize_with_accuracy_control",
    "int8": "uniform INT8 (NNCF PTQ)",
    "fp32": "FP32 (f32 pinned)",
    "fp32-runtime-default": "FP32 at the runtime's default precision",
}


def method_order(methods) -> list[str]:
    """The fixed order, autotune's runs with other proxy recipes or search settings ("autotune:<variant>") right after
    autotune's."""
    variants = sorted(m for m in methods if m.startswith("autotune:"))
    return ["autotune", *variants, *METHOD_ORDER[1:]]


def label(method: str) -> str:
    if method in LABELS:
        return LABELS[method]
    variant = method.split(":", 1)[1]
    if variant in SEARCH_VARIANTS:
        return SEARCH_VARIANTS[variant][1]
    return f"autotune with proxies `{variant}`"


def color(method: str, methods) -> str:
    order = method_order(methods)
    return f"C{order.index(method) if method in order else len(order)}"


def _interval(value) -> str:
    if not value:
        return "-"
    median, low, high = value
    return f"{median:.2f}x [{low:.2f}-{high:.2f}]"


def _seeds_interval(per_seed: list) -> str:
    """The median seed's ratio with its interval over rounds, and the seeds' range where there are several."""
    if not per_seed:
        return "-"
    cell = _interval(per_seed[len(per_seed) // 2])
    return cell + (f" (seeds {per_seed[0][0]:.2f}x-{per_seed[-1][0]:.2f}x)" if len(per_seed) > 1 else "")


def rounds_above(runs: list[dict], baseline: dict) -> str:
    """How often each seed's hypervolume was above the baseline's when every timing round is taken alone."""
    base = baseline.get("hv_by_round", [])
    # Results stored before the rounds were kept (MiniLM's, 2026-12-02) have none: nothing to count, not an error.
    timed = [run["hv_by_round"] for run in runs if base and len(run.get("hv_by_round", [])) == len(base)]
    pairs = [(a, b) for values in timed for a, b in zip(values, base, strict=True)]
    if not pairs:
        return ""
    rounds = len(base)
    return f"; each timing round alone: above it in {sum(a > b for a, b in pairs)} of {len(pairs)} seed-rounds ({rounds} rounds)"


def _spread(values: list[float], fmt: str = "{:.3f}") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return fmt.format(float(np.median(values))) + " [" + fmt.format(min(values)) + "-" + fmt.format(max(values)) + "]"


def method_table(summary: dict, max_drop: float) -> list[str]:
    lines = [
        f"| method | full evaluations | hypervolume (of reference) | evaluations to 95% | best samples/s within {max_drop:g} pt vs INT8 | "
        f"best batch-1 within {max_drop:g} pt vs INT8 | smallest within {max_drop:g} pt vs FP32 | wall time s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method in method_order(summary["methods"]):
        runs = summary["methods"].get(method)
        if not runs:
            continue
        figures = list(runs.values())
        if "hv_final" not in figures[0]:  # a single build, not a search
            ratio = figures[0]["throughput_vs_int8"]
            seconds = figures[0].get("seconds")
            lines.append(
                f"| {label(method)} | 1 | - | - | {_interval(ratio)} (drop {figures[0]['drop_pts']:+.2f} pt) | - | - | "
                + (f"{seconds:.0f}" if seconds is not None else "-") + " |"
            )
            continue
        seeds = f" ({len(figures)} seeds)" if len(figures) > 1 else ""
        # The seed whose median ratio is the median over seeds, with its own interval over rounds.
        best = sorted((f["best_throughput_vs_int8"] for f in figures if f["best_throughput_vs_int8"]), key=lambda r: r[0])
        single = sorted((f["best_batch1_vs_int8"] for f in figures if f["best_batch1_vs_int8"]), key=lambda r: r[0])
        needed = [f["evaluations_to_95"] for f in figures]
        reached = sum(n is not None for n in needed)
        evaluations, to_95 = f"{figures[0]['evaluations']}", (
            f"{_spread(needed, '{:.0f}') if reached else 'not reached'}"
            f"{f' ({reached} of {len(needed)} seeds reached)' if 0 < reached < len(needed) else ''}"
        )
        if method == "reference" and summary.get("reference_plans"):
            # Only its first non-dominated ranks were re-timed: its figures are over those, in no search order.
            evaluations, to_95 = f"{summary['reference_plans']} ({summary['reference_timed']} re-timed)", "-"
        lines.append(
            f"| {label(method)}{seeds} | {evaluations} | {_spread([f['hv_final'] for f in figures])} | {to_95} | "
            f"{_seeds_interval(best)} | {_seeds_interval(single)} | "
            f"{_spread([f['smallest_size_vs_fp32'] for f in figures], '{:.2f}x')} | {_spread([f['seconds'] for f in figures], '{:.0f}')} |"
        )
    return lines


def accuracy_ceiling(fidelity: dict) -> dict | None:
    """The split-half ceiling of the accuracy Spearman, where the run computed one."""
    ceiling = fidelity.get("accuracy_ceiling")
    return ceiling if ceiling and ceiling.get("ceiling") is not None else None


def ceiling_sentence(ceiling: dict | None) -> str:
    """How high any accuracy proxy could rank these plans against drops measured on this validation set."""
    if ceiling is None:
        return ""
    return (
        f" Measured on this validation set, these drops cap any accuracy proxy's Spearman near {ceiling['ceiling']:.2f} "
        f"[{ceiling['low']:.2f}-{ceiling['high']:.2f}] (split-half reliability over {ceiling['splits']} random halvings,"
        " stepped up to the whole set: what a proxy equal to the true drop would reach)."
    )


def every_evaluated_clause(found: dict | None, kind: str) -> str:
    """The same proxy over every evaluated plan, for a target's verdict line (the verdict stays the measured front's)."""
    if not found or not found.get(kind) or found[kind]["spearman"] is None:
        return ""
    return f"; over all {found[kind]['plans']} evaluated plans {found[kind]['spearman']:+.2f}"


def every_evaluated_sentence(found: dict | None) -> list[str]:
    """The proxies over every plan the run evaluated (benchmarks/fidelity_spread.py), as a paragraph."""
    if not found:
        return []
    accuracy, ceiling, latency = found["accuracy"], found["accuracy_ceiling"], found.get("latency")
    text = (
        f"Over every plan this run's storage evaluated ({found['plans']}: the methods' and the reference front's random "
        f"plans; true drops from {found['drop_range_pts'][0]:+.2f} to {found['drop_range_pts'][1]:+.2f} points), the "
        f"accuracy proxy ranks at {accuracy['spearman']:+.3f} [{accuracy['low']:+.2f}, {accuracy['high']:+.2f}] (plans "
        "and validation images resampled)"
    )
    if ceiling.get("ceiling") is not None:
        text += f", where the measurement allows up to {ceiling['ceiling']:.2f} [{ceiling['low']:.2f}-{ceiling['high']:.2f}]"
    if latency:
        text += (
            f"; the latency proxy at {latency['spearman']:+.3f} [{latency['low']:+.2f}, {latency['high']:+.2f}] against each "
            f"plan's own evaluation timing ({latency['plans']} plans, timed when evaluated, not in the rounds)"
        )
    return [text + ".", ""]


def targets_verdict(summary: dict, max_drop: float) -> list[str]:
    """The issue's targets for this target, each met or missed, plainly."""
    methods = summary["methods"]
    autotune = list(methods.get("autotune", {}).values())
    sweep = list(methods.get("sweep", {}).values())
    lines = []

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("**met**" if ok else "**missed**")

    if autotune:
        needed = [f["evaluations_to_95"] for f in autotune]
        ok = all(n is not None and n <= 16 for n in needed)
        lines.append(f"- <= 16 full evaluations to 95% of the reference hypervolume: {verdict(ok)} (per seed: {needed})")
        best = [f["best_throughput_vs_int8"][0] for f in autotune if f["best_throughput_vs_int8"]]
        lines.append(
            f"- >= 1.5x uniform INT8 throughput within {max_drop:g} pt: {verdict(bool(best) and float(np.median(best)) >= 1.5)} "
            f"(median over seeds {float(np.median(best)) if best else float('nan'):.2f}x)"
        )
        vs_fp32 = [f["best_throughput_vs_runtime_default"][0] for f in autotune if f.get("best_throughput_vs_runtime_default")]
        lines.append(
            f"- >= 2x the runtime's default FP32 ({summary['runtime_float_default']} on this machine): "
            f"{verdict(bool(vs_fp32) and float(np.median(vs_fp32)) >= 2.0)} (median {float(np.median(vs_fp32)) if vs_fp32 else float('nan'):.2f}x)"
        )
        if sweep:
            above = [f["hv_final"] > sweep[0]["hv_final"] for f in autotune]
            lines.append(
                f"- measured front's hypervolume above the uniform sweep's: {verdict(all(above))} "
                f"({sum(above)} of {len(above)} seeds; sweep {sweep[0]['hv_final']:.3f}, autotune "
                f"{_spread([f['hv_final'] for f in autotune])}{rounds_above(autotune, sweep[0])})"
            )
    fidelity = summary["fidelity"]
    ceiling = accuracy_ceiling(fidelity)
    for kind in ("accuracy", "latency"):
        found = fidelity.get(kind)
        if found:
            lines.append(
                f"- Spearman >= 0.9 for the {kind} proxy over >= 20 measured plans: "
                f"{verdict(found['spearman'] is not None and found['spearman'] >= 0.9 and found['plans'] >= 20)} "
                f"({found['spearman']:+.2f}, 90% interval [{found['low']:+.2f}, {found['high']:+.2f}], {found['plans']} plans"
                + (f"; the measurement's own ceiling {ceiling['ceiling']:.2f}" if kind == "accuracy" and ceiling else "")
                + (every_evaluated_clause(fidelity.get("every_evaluated"), kind))
                + ")"
            )
    lines.append(
        f"- 0 promoted candidates dominated by uniform INT8: {verdict(summary['promoted_dominated_by_int8'] == 0)} "
        f"({summary['promoted_dominated_by_int8']} of {summary['promoted']})"
    )
    for method, figures in methods.items():
        if method.startswith("autotune:"):  # a proxy recipe or search setting under trial: its figures beside the default's
            runs = list(figures.values())
            needed = [f["evaluations_to_95"] for f in runs]
            best = [f["best_throughput_vs_int8"][0] for f in runs if f["best_throughput_vs_int8"]]
            dominated, promoted = summary.get("promoted_dominated_by_method", {}).get(method, [None, None])
            lines.append(
                f"- {label(method)}: hypervolume {_spread([f['hv_final'] for f in runs])} (autotune "
                f"{_spread([f['hv_final'] for f in autotune])}), evaluations to 95% {needed}, best within {max_drop:g} pt "
                f"{float(np.median(best)) if best else float('nan'):.2f}x INT8, {dominated} of {promoted} promoted dominated by INT8"
            )
    return lines


def plot(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    for name, summary in results["targets"].items():
        figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
        # Methods that spend evaluations in a search order (the reference plans were re-timed in part: none).
        searches = [m for m in method_order(summary["methods"]) if m.split(":")[0] in ("autotune", "random", "sweep")]
        for method in searches:
            runs = summary["methods"].get(method, {})
            for i, figures in enumerate(runs.values()):
                curve = figures["hv_curve"]
                left.plot(range(1, len(curve) + 1), curve, color=color(method, summary["methods"]), alpha=0.8 if i == 0 else 0.4,
                          label=label(method) if i == 0 else None)
        left.axhline(0.95, color="grey", linestyle=":", label="95% of reference")
        left.set_xlabel("full evaluations")
        left.set_ylabel("hypervolume / reference hypervolume")
        left.set_title(f"{name}: hypervolume vs full evaluations")
        left.legend(fontsize=8)
        rows = summary["rows"]
        for method in ["reference", *reversed(searches)]:
            keys = set(_keys(results, method))
            points = np.array([[rows[k]["batch_latency_ms"], rows[k]["drop_pts"]] for k in keys if k in rows])
            if len(points):
                right.scatter(points[:, 0], points[:, 1], s=18, color=color(method, summary["methods"]), label=label(method), alpha=0.7)
        for role, marker in (("fp32", "s"), ("int8", "D"), ("fp32-runtime-default", "^")):
            if role not in summary["roles"]:
                continue
            row = rows[summary["roles"][role]]
            right.scatter([row["batch_latency_ms"]], [row["drop_pts"]], marker=marker, s=60, color="black", label=role)
        if "nncf-accuracy-control" in rows:
            row = rows["nncf-accuracy-control"]
            right.scatter([row["batch_latency_ms"]], [row["drop_pts"]], marker="*", s=120, color="C4", label=LABELS["nncf-accuracy-control"])
        right.set_xlabel("ms per call at the throughput batch (median of rounds)")
        right.set_ylabel("accuracy drop (points)")
        right.set_title(f"{name}: measured plans")
        right.legend(fontsize=7)
        figure.tight_layout()
        path = out.with_name(f"{out.stem}-{name}.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        images.append(path.name)
    return images


def _keys(results: dict, method: str) -> list[str]:
    return [k for keys in results["evaluated"].get(method, {}).values() for k in keys]


def study_header(results: dict) -> list[str]:
    config = results["config"]
    seconds = config.get("round_seconds")
    protocol = f"at least {seconds:g} s per batch size" if seconds else "on the target file's [measure] protocol"
    return [
        f"Study `{config['study']}`; autotune: sampler `{results['sampler']}` (cold: `auto` is {results.get('cold_sampler', 'tpe')}), {config['trials']} proxy trials, "
        f"{config['evaluations']} full evaluations, seeds 0-{config['seeds'] - 1}; random search: the same number of "
        f"full evaluations, seeds 1000-{999 + config['seeds']}; uniform sweep ratios {list(config['sweep'])} (snapped to "
        f"the space's grid); every plan at the study's full recovery budget, distilled in "
        f"{config.get('recovery_precision', 'f32')}. Hypervolume on (quality drop in points, ms "
        f"per call at the throughput batch) with one reference point per target (5 points of drop, FP32's latency), as "
        f"a fraction of the reference front's. Speeds: median of {config['rounds']} interleaved rounds (every artifact "
        f"once per round, each measurement {protocol}, random order), each round's shift over all artifacts taken out "
        "first (a spell of load slows a whole round; the latency tables do the same), ratios taken within a round, "
        "[5th-95th percentile] over rounds. Several seeds: median [min-max] over seeds; a speed ratio is the median seed's, with "
        "its interval over rounds and the seeds' range.",
        "",
    ]


def provenance_sentence(provenance: dict | None, run_versions: dict) -> str:
    """When the cached plans behind the reference front were evaluated, and with which versions if not the run's."""
    if not provenance:
        return ""
    sets = provenance["versions"]
    if len(sets) == 1 and sets[0]["versions"] == run_versions:
        versions = "all with the versions above"
    else:
        versions = "; ".join(
            f"{entry['plans']} with " + ", ".join(f"{k} {v}" for k, v in entry["versions"].items()) for entry in sets
        )
    return (
        f" Those {provenance['plans']} plans were evaluated (and cached in the benchmark's storage) from "
        f"{provenance['first']} to {provenance['last']}, {versions}."
    )


def study_sections(results: dict, image_stem: str, level: str = "##", default_study: bool = True) -> list[str]:
    """Per target: the method table, what FP32 ran at, the issue's targets, proxy fidelity and the plots; then the
    whole-cycle times."""
    config = results["config"]
    max_drop = config["max_drop_pts"]
    lines = []
    for name, summary in results["targets"].items():
        lines += [f"{level} {name}", ""]
        lines += method_table(summary, max_drop)
        default = summary["runtime_float_default"]
        default_row = (
            " (the row \"FP32 at the runtime's default precision\" is that build)" if "fp32-runtime-default" in summary["roles"] else ""
        )
        lines += ["", f"The FP32 row ran at f32; left to itself, this runtime runs FP32 models at {default} on this "
                  f"machine{default_row}. Reference hypervolume: {summary['reference_hv_source']}" + (
                      f"; of the {summary['reference_plans']} reference plans, the {summary['reference_timed']} in the first "
                      f"{config['reference_timed_ranks']} non-dominated ranks of their own evaluation were re-timed in the rounds."
                      if summary.get("reference_plans") else "; no reference plans beyond the methods' were evaluated in this run."
                  ) + provenance_sentence(summary.get("reference_provenance"), results["versions"]), ""]
        heading = "Targets (issue 8):" if default_study else "The issue's targets are set for fashion-cnn; this study against them, for comparison:"
        lines += [heading, ""] + targets_verdict(summary, max_drop) + [""]
        fidelity = summary["fidelity"]
        if fidelity:
            lines.append(
                f"Proxy fidelity over {fidelity['accuracy']['plans']} measured plans (true drops from "
                f"{fidelity['drop_range_pts'][0]:+.2f} to {fidelity['drop_range_pts'][1]:+.2f} points; one drop's 90% "
                f"bootstrap interval over the validation set is {fidelity['drop_interval_width_pts']:.2f} points wide)."
                + ceiling_sentence(accuracy_ceiling(fidelity))
            )
            lines.append("")
            variants = fidelity.get("accuracy_by_activations", {})
            if variants:
                lines += ["| accuracy proxy simulates | Spearman vs measured drop | 90% interval |", "|---|---:|---:|"]
                for activations, found in variants.items():
                    label = "weights only" if activations == "none" else "weights + static INT8 activations"
                    lines.append(f"| {label} | {found['spearman']:+.3f} | [{found['low']:+.2f}, {found['high']:+.2f}] |")
                lines.append("")
            lines += every_evaluated_sentence(fidelity.get("every_evaluated"))
        lines += [f"![{name}]({image_stem}-{name}.png)", ""]
    if results["phases"]:
        title = "Whole-cycle times (autotune, per seed)" + ("" if default_study else f": {config['study']}")
        lines += [f"{level} {title}", "", "| seed | proxy search s | re-score s | full evaluation s | total s |", "|---|---:|---:|---:|---:|"]
        for seed, phases in results["phases"].items():
            total = sum(phases.values())
            lines.append(
                f"| {seed} | {phases['proxy_search_s']:.0f} | {phases['rescore_s']:.0f} | {phases['full_evaluation_s']:.0f} | {total:.0f} |"
            )
        lines.append("")
        if results.get("phases_note"):
            lines += [results["phases_note"], ""]
    return lines


def write_results(results: dict, out: Path, companions: dict[str, dict] | None = None, page: bool = True) -> None:
    """The run's JSON and plots beside `out`, and the page (unless `page` is False: a companion study's figures go into
    the main page). `companions`: other studies' results by image stem, each a section of the page."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    plot(results, out)
    if page:
        write_markdown(results, out, companions)


def write_markdown(results: dict, out: Path, companions: dict[str, dict] | None = None) -> None:
    """The page alone, from results already stored with their plots."""
    machine = results["machine"]
    lines = [
        "# autotune against the alternatives",
        "",
        f"Generated by `{results['command']}` on {results['date']} "
        f"in {results['seconds']} s. Machine: {machine['cpu']}, {machine['cores']} cores, threads per target "
        f"{results['threads']}; {machine['platform']}, Python {machine['python']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        + ".",
        "",
    ]
    lines += study_header(results) + study_sections(results, out.stem)
    for stem, companion in (companions or {}).items():
        machine = companion["machine"]
        lines += [
            f"## Study `{companion['config']['study']}`",
            "",
            f"Generated by `{companion['command']}` on {companion['date']} in {companion['seconds']} s, on "
            f"{machine['cpu']}, {machine['cores']} cores, with the versions above"
            + ("" if companion["versions"] == results["versions"] else f" except: {companion['versions']}") + ".",
            "",
        ]
        lines += study_header(companion) + study_sections(companion, stem, "###", default_study=False)
    write_page(out, "\n".join(lines))


def companions_of(main: Path) -> dict[str, dict]:
    """Other studies' results written beside the main page (docs/benchmarks-<study>.json), by image stem."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(main.parent.glob(f"{main.stem}-*.json"))}


def render(main: Path) -> None:
    """docs/benchmarks.md again from the stored results (the main study's and every companion's); plots untouched."""
    write_markdown(json.loads(main.with_suffix(".json").read_text()), main, companions_of(main))


if __name__ == "__main__":
    render(Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md")
