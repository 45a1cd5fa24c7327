"""The benchmark command runs end to end on the tiny study and writes its page, data and plots (not its numbers);
the figures it reports come from tested pieces (hypervolume curves, bootstrap intervals)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def test_quick_benchmark_runs_and_writes_its_files(tiny_workload, tmp_path):
    from benchmarks.run import main

    out = tmp_path / "docs" / "benchmarks.md"
    main(
        ["--quick", "--folder", str(tmp_path / "bench"), "--out", str(out), "--trials", "4", "--evaluations", "1",
         "--reference-evaluations", "1", "--sweep", "0.5", "--rounds", "1", "--proxy-variants", "macs",
         "--search-variants", "uniform-anchors,tpe"]
    )
    page = out.read_text()
    assert "## cpu-openvino" in page and "Targets (issue 8)" in page and "| autotune" in page
    assert (tmp_path / "docs" / "benchmarks-cpu-openvino.png").stat().st_size > 10_000
    results = json.loads(out.with_suffix(".json").read_text())
    summary = results["targets"]["cpu-openvino"]
    assert {"autotune", "random", "sweep", "reference", "nncf-accuracy-control", "fp32", "int8"} <= set(summary["methods"])
    # autotune with another proxy recipe is a method of its own, beside the default's, in the table and the verdicts.
    assert "autotune:macs" in summary["methods"] and "autotune:macs" in summary["promoted_dominated_by_method"]
    assert page.count("autotune with proxies `macs`") >= 2
    # So is autotune under another search setting: its own proxy study, named by the setting.
    assert "autotune:uniform-anchors" in summary["methods"]
    assert page.count("autotune with the uniform anchors alone (no target anchors)") >= 2
    # A search variant naming a sampler searches with it, in proxy studies of its own; the default's are GP then TPE.
    import optuna

    stored = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'bench' / 'bench.db'}")
    samplers = {s.user_attrs.get("sampler") for s in stored if "/autotune/tpe-s0-" in s.study_name}
    assert "autotune:tpe" in summary["methods"] and samplers == {"tpe"}
    assert {s.user_attrs.get("sampler") for s in stored if "/autotune/gp-tpe-s0-" in s.study_name} == {"gp-tpe"}
    assert "cold: `auto` is gp-tpe" in page
    for row in summary["rows"].values():
        assert np.isfinite([row["drop_pts"], row["batch_latency_ms"], row["throughput_per_s"], row["size_mb"]]).all()
    assert summary["rows"][summary["roles"]["fp32"]]["drop_pts"] == 0.0
    # Every evaluated plan's recipe travels with the figures (a new machine has no storage to read them from).
    evaluated = {k for runs in results["evaluated"].values() for keys in runs.values() for k in keys}
    assert set(summary["plans"]) == evaluated and all(entry["plan"]["layers"] for entry in summary["plans"].values())
    assert set(summary["fidelity"]["accuracy_ceiling"]) == {"ceiling", "low", "high", "splits"}
    # The proxies over every evaluated plan too (the reference front's random plans included), drops from each artifact
    # predicted again; a stored run gets the same figures afterwards from its storage.
    spread = summary["fidelity"]["every_evaluated"]
    assert spread["plans"] == len(evaluated - set(summary["roles"].values())) and spread["accuracy"]["plans"] == spread["plans"]
    assert "Over every plan this run's storage evaluated" in page
    from benchmarks.fidelity_spread import add_to_results

    again = add_to_results(out.with_suffix(".json"), tmp_path / "bench")["targets"]["cpu-openvino"]["fidelity"]["every_evaluated"]
    assert again["drop_range_pts"] == spread["drop_range_pts"] and again["accuracy"] == spread["accuracy"]
    assert results["versions"]["openvino"] and results["machine"]["cores"] >= 1
    # The cached plans behind the reference front carry their evaluation dates and versions (from their recipes).
    provenance = summary["reference_provenance"]
    assert provenance["plans"] >= summary["reference_plans"] and provenance["first"] <= provenance["last"]
    assert provenance["versions"] == [{"versions": results["versions"], "plans": provenance["plans"]}]
    assert f"Those {provenance['plans']} plans were evaluated" in page and "all with the versions above" in page
    # Every method's front lies inside the reference front (all plans measured in the run).
    assert all(f["hv_final"] <= 1.0 + 1e-9 for runs in summary["methods"].values() for f in runs.values() if "hv_final" in f)
    # Each timing round alone gives a hypervolume per method too, and the verdict against the sweep counts them.
    autotune = next(iter(summary["methods"]["autotune"].values()))
    assert len(autotune["hv_by_round"]) == results["config"]["rounds"] and all(0 <= v <= 1 + 1e-9 for v in autotune["hv_by_round"])
    assert "each timing round alone: above it in" in page
    # Where OpenVINO runs FP32 at a 16-bit float by default (AMX), that build is a baseline beside f32 pinned.
    default = summary["runtime_float_default"]
    assert (default != "f32") == ("fp32-runtime-default" in summary["methods"])
    # Another study's figures (MiniLM's) become a section of the same page, its plots beside it.
    from benchmarks.page import render, write_results

    other = results | {"config": results["config"] | {"study": "other"}}
    write_results(other, out.with_name("benchmarks-other.json"), page=False)
    render(out)
    page = out.read_text()
    assert "## Study `other`" in page and "### cpu-openvino" in page and "The issue's targets are set for fashion-cnn" in page
    assert "![cpu-openvino](benchmarks-other-cpu-openvino.png)" in page
    assert (tmp_path / "docs" / "benchmarks-other-cpu-openvino.png").stat().st_size > 10_000


def test_hypervolume_curve_grows_with_evaluations_and_counts_the_budget_to_a_level():
    from benchmarks.metrics import evaluations_to_reach, hypervolume_curve

    points = np.array([[4.0, 9.0], [3.0, 5.0], [3.5, 6.0], [1.0, 8.0]])
    curve = hypervolume_curve(points, np.array([5.0, 10.0]))
    assert np.all(np.diff(curve) >= 0) and curve[0] == pytest.approx(1.0)
    assert curve[2] == curve[1]  # a dominated point adds nothing
    assert evaluations_to_reach(curve, curve[-1]) == 4 and evaluations_to_reach(curve, 1e9) is None


def test_steady_rounds_take_out_a_slow_round_and_keep_ratios_within_a_round():
    """A spell that slows a whole round no longer decides which plan is fastest: a plan timed fast in the slow round
    only because the spell had passed (the ONNX Runtime rounds of 2026-12-04) stops outranking one that was faster
    in every steady round; every ratio within a round stays as timed."""
    from benchmarks.run import steady_rounds

    timed = {  # rounds 3 and 4 slow everything 1.5x, except `lucky` in round 3
        "lucky": {"batch_latency_ms": [1.55, 1.55, 1.58, 2.32]},
        "fast": {"batch_latency_ms": [1.45, 1.45, 2.18, 2.18]},
        "int8": {"batch_latency_ms": [2.60, 2.60, 3.90, 3.90]},
    }
    raw = {k: float(np.median(v["batch_latency_ms"])) for k, v in timed.items()}
    assert raw["lucky"] < raw["fast"]
    steady = steady_rounds(timed)
    median = {k: float(np.median(v["batch_latency_ms"])) for k, v in steady.items()}
    assert median["fast"] < median["lucky"] < median["int8"]
    for r in range(4):
        assert steady["int8"]["batch_latency_ms"][r] / steady["fast"]["batch_latency_ms"][r] == pytest.approx(
            timed["int8"]["batch_latency_ms"][r] / timed["fast"]["batch_latency_ms"][r]
        )


def test_spearman_interval_includes_the_measurement_noise():
    """A proxy ranking plans perfectly gets +1, but plans whose true drops lie within the noise get a wide interval."""
    from benchmarks.metrics import spearman_interval

    rng = np.random.default_rng(0)
    images = 2000
    accuracy = np.array([0.90, 0.899, 0.898, 0.897, 0.896])  # neighbours 0.1 point apart
    correct = (rng.random((len(accuracy), images)) < accuracy[:, None]).astype(float)
    reference = (rng.random(images) < 0.91).astype(float)

    def drop_of(i, picked):
        return 100 * (reference[picked].mean() - correct[i, picked].mean())

    measured = [drop_of(i, np.arange(images)) for i in range(len(accuracy))]
    found = spearman_interval(np.array(measured), drop_of, len(accuracy), images, draws=200)
    assert found["spearman"] == pytest.approx(1.0)
    assert found["low"] < 0.5 and found["high"] == pytest.approx(1.0)


def test_plan_interval_ranks_every_resample_as_one_spearman_at_a_time_would():
    """The bootstrap over plans ranks all resamples at once; ties and resamples of one distinct value included."""
    from benchmarks.fidelity import plan_interval
    from benchmarks.metrics import spearman

    rng = np.random.default_rng(3)
    for plans in (4, 12, 40):
        proxy = rng.normal(size=plans)
        proxy[:2] = proxy[0]  # a tie
        measured = proxy + rng.normal(size=plans)
        draws = np.random.default_rng(0).integers(plans, size=(300, plans))  # plan_interval's resamples (seed 0)
        one_at_a_time = [v for v in (spearman(proxy[w], measured[w]) for w in draws) if v is not None]
        assert plan_interval(proxy, measured, draws=300) == pytest.approx(np.percentile(one_at_a_time, [5, 95]).tolist())
    assert plan_interval(np.arange(10.0), np.arange(10.0) ** 2) == pytest.approx([1.0, 1.0])


def test_split_half_ceiling_is_high_for_plans_far_apart_and_low_for_plans_within_the_noise():
    """Drops measured on a validation set cap any proxy's Spearman: near 1 when plans differ by far more than the noise,
    near 0 when their true drops are equal. Errors every plan shares (hard images) do not lower it."""
    from benchmarks.metrics import split_half_ceiling

    rng = np.random.default_rng(1)
    images = 4000
    hard = rng.random(images) < 0.1  # images every plan tends to miss: a shared error, not noise between plans

    def ceiling_of(accuracy: np.ndarray) -> float:
        correct = (rng.random((len(accuracy), images)) < accuracy[:, None]) & ~(hard & (rng.random((len(accuracy), images)) < 0.8))

        def drop_of(i, picked):
            return 100 * (1.0 - correct[i, picked].mean())

        found = split_half_ceiling(drop_of, len(accuracy), images, splits=40)
        assert found["low"] <= found["ceiling"] <= found["high"] and found["splits"] == 40
        return found["ceiling"]

    assert ceiling_of(np.linspace(0.99, 0.80, 12)) > 0.95
    assert ceiling_of(np.full(12, 0.95)) < 0.6


def test_auto_sampler_is_tpe_cold_and_nsga2_warm():
    from autotune.search import sampler_name

    assert sampler_name("auto", warm=False) == "gp-tpe" and sampler_name("auto", warm=True) == "nsga2"
    assert sampler_name("gp", warm=True) == "gp"


def test_fitted_latency_learns_a_latency_that_follows_kept_channels_and_precision():
    from autotune.plan import LayerChoice, Plan
    from benchmarks.fidelity import fitted_latency

    rng = np.random.default_rng(0)
    layers = [f"block{i}.conv" for i in range(6)]
    plans, latencies = [], []
    for _ in range(80):
        choices = {name: LayerChoice(int(rng.choice([4, 8, 32])), float(rng.choice([0.0, 0.3, 0.6]))) for name in layers}
        plans.append(Plan(choices))
        # Each layer's cost: its kept channels, three times dearer as a float; 5% measurement noise.
        cost = sum((1 - c.prune) * (3.0 if c.bits == 32 else 1.0) for c in choices.values())
        latencies.append(cost * rng.lognormal(0, 0.05))
    found = fitted_latency(plans, np.array(latencies))
    assert found["10-fold"][0] > 0.9 and found["learnt from 48"][0] > 0.9
    low, high = found["learnt from 16"][1]
    assert low <= found["learnt from 16"][0] <= high


def test_proxy_variants_page_marks_what_too_few_plans_cannot_rank():
    """A run with a handful of measured plans (the quick benchmark's) gets "-" cells and no fitted latency, not a crash."""
    from autotune.plan import LayerChoice, Plan
    from benchmarks.fidelity import fitted_latency, ranking_cell

    assert ranking_cell(np.array([1.0, 2.0]), np.array([2.0, 1.0])) == "-"  # two plans rank nothing
    assert ranking_cell(np.ones(5), np.arange(5.0)) == "-"  # one distinct proxy value
    assert ranking_cell(np.arange(6.0), np.arange(6.0) ** 2).startswith("+1.000 [+1.00, +1.00]")
    plans = [Plan({"conv": LayerChoice(8, ratio)}) for ratio in (0.0, 0.3, 0.5, 0.7)]
    assert fitted_latency(plans, np.array([4.0, 3.0, 2.0, 1.0])) == {}


def test_whole_cycle_is_timed_in_a_fresh_workspace_and_each_study_keeps_its_section(tiny_workload, tmp_path, catalogue):
    """The timing's plumbing on the tiny study with MAC-count latency: a cold latency table on OpenVINO would add 45 s
    of probes the test does not look at."""
    import os

    from benchmarks.cycle import section, section_title, timed_cycle, write

    tiny = (REPO / "studies" / "fashion-cnn-tiny.toml").read_text()
    (catalogue / "studies" / "cycle-tiny.toml").write_text(tiny.replace('proxies = "default"', 'proxies = "macs"'))
    home = os.environ["AUTOTUNE_HOME"]
    before = sorted((Path(home) / "cache").rglob("*"))
    found = timed_cycle("cycle-tiny", 0, 3, 1)
    assert os.environ["AUTOTUNE_HOME"] == home and sorted((Path(home) / "cache").rglob("*")) == before
    assert found["plans"] == 1 and all(seconds > 0 for seconds in found["phases"].values())
    out = tmp_path / "cycle-time.md"
    write(out, "other", ["## other", "", "kept", ""])
    for _ in range(2):  # a rerun replaces its own section
        write(out, section_title("fashion-cnn-tiny", found), section("fashion-cnn-tiny", 0, 3, found))
    # The same study recovered in the other precision (another machine) keeps a section of its own.
    other = found | {"recovery_precision": "bf16" if found["recovery_precision"] == "f32" else "f32"}
    write(out, section_title("fashion-cnn-tiny", other), section("fashion-cnn-tiny", 0, 3, other))
    page = out.read_text()
    title = f"## fashion-cnn-tiny, recovery in {found['recovery_precision']}"
    assert "## other" in page and f"kept\n\n{title}" in page and page.count(title) == 1
    assert page.count("## fashion-cnn-tiny, recovery in ") == 2
    assert "| start-up s | proxy search s |" in page
    # The promoted plan's proxies are reported per target against what the cycle measured (one plan: no ranking).
    assert set(found["fidelity"]) == set(found["targets"])
    assert all(f["plans"] == 1 and f["stage 2 accuracy"]["spearman"] is None for f in found["fidelity"].values())
    assert "| target | plans | measured drops (points) | stage 1 accuracy | stage 2 accuracy | latency |" in page


def test_cycle_fidelity_ranks_the_promoted_plans_measured_proxies_against_their_drops():
    """Read from a real measured study: only candidates with re-score scores count; each Spearman has its interval."""
    import optuna
    from optuna.distributions import FloatDistribution

    from benchmarks.cycle import fidelity_lines, promoted_fidelity

    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_user_attr("fidelity", {"objective": "output_divergence", "latency_proxy": "latency_measured@cpu"})
    for index, drop in enumerate([0.1, 0.3, 0.2, 0.6, 0.9, 0.4]):
        attrs = {
            "role": "candidate",
            "stage1.output_divergence": -drop,  # ranks them backwards
            "stage2.output_divergence": drop * 2,  # ranks them exactly
            "stage2.latency_measured@cpu": float(index),
            "measurement": {"batch_latency_ms": float(index) + 0.5},
        }
        study.add_trial(
            optuna.trial.create_trial(
                values=[drop, 1.0], params={"x": 0.0}, distributions={"x": FloatDistribution(0, 1)}, user_attrs=attrs
            )
        )
    study.add_trial(  # a reference: no re-score scores
        optuna.trial.create_trial(values=[0.0, 2.0], params={"x": 0.0}, distributions={"x": FloatDistribution(0, 1)},
                                  user_attrs={"role": "fp32"})
    )
    found = promoted_fidelity(study)
    assert found["plans"] == 6 and found["drops"] == [0.1, 0.9]
    assert found["stage 2 accuracy"]["spearman"] == pytest.approx(1.0)
    assert found["stage 1 accuracy"]["spearman"] == pytest.approx(-1.0)
    assert found["latency"]["spearman"] == pytest.approx(1.0)
    assert found["stage 2 accuracy"]["low"] == pytest.approx(1.0)  # every resample with a ranking ranks it exactly
    assert "| cpu | 6 | +0.10 to +0.90 | -1.00 [-1.00, -1.00] | +1.00 [+1.00, +1.00] | +1.00 [+1.00, +1.00] |" in (
        "\n".join(fidelity_lines({"cpu": found}))
    )


def test_recovery_precision_compares_the_same_plans_both_ways_and_writes_its_section(tiny_workload, tmp_path):
    """Both recoveries of each plan are computed afresh (no cache shared with the session's workspace) and built for
    every target; the page reports the accuracy change per target and the recovery seconds."""
    import os

    from autotune.spec import load_study_spec
    from benchmarks.recovery_precision import main

    home = os.environ["AUTOTUNE_HOME"]
    before = sorted((Path(home) / "cache").rglob("*"))
    out = tmp_path / "recovery-precision.md"
    main(["--study", "fashion-cnn-tiny", "--plans", "2", "--out", str(out)])
    assert os.environ["AUTOTUNE_HOME"] == home and sorted((Path(home) / "cache").rglob("*")) == before
    page = out.read_text()
    assert "## fashion-cnn-tiny" in page and "2 pruned plans, 30 distillation steps each" in page
    targets = [t.name for t in load_study_spec("fashion-cnn-tiny").targets]
    assert all(f"| {target} | " in page for target in targets)
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert len(rows) == 2 and all(line.count("|") == 2 * len(targets) + 4 for line in rows)


def test_latency_fidelity_ranks_table_variants_against_plans_timed_in_rounds(tiny_context, tmp_path):
    from autotune.latency_history import observations_path, record_observation
    from autotune.latency_table import architecture_key
    from autotune.spec import load_hardware
    from benchmarks.latency_fidelity import main

    # What an earlier run recorded: 10 plans of the whole space, measured (here: the 1 + their kept work, in ms).
    recovery = tiny_context.recovery
    records = tmp_path / "observed" / observations_path(
        load_hardware("cpu-onnxruntime"), architecture_key(recovery.pruner.teacher), recovery.config.channel_multiple
    ).name
    records.parent.mkdir()
    for plan in tiny_context.space.random_plans(10, seed=3):
        record_observation(records, plan, 1.0 + sum(1 - c.prune for c in plan.layers.values()), "earlier#0")
    out = tmp_path / "latency-fidelity.md"
    main(["--study", "fashion-cnn-tiny", "--plans", "22", "--rounds", "2", "--round-seconds", "0.02",
          "--variants", "default-rounds", "--targets", "cpu-onnxruntime", "--out", str(out),
          "--observed", str(records.parent)])
    results = json.loads(out.with_suffix(".json").read_text())
    found = results["targets"]["cpu-onnxruntime"]
    assert results["plans"] == 22 and set(found["times_ms"]) == set(results["plan_recipes"])
    assert all(len(times) == 2 and min(times) > 0 for times in found["times_ms"].values())
    assert [row["key"] for row in found["variants"]] == ["default-rounds"]
    assert all(-1 <= row["spearman"] <= 1 for row in found["variants"])
    # The table corrected from 16 measured plans, ranked on the 6 others beside the table alone on the same plans.
    for row in found["variants"]:
        assert set(row["estimates_ms"]) == set(results["plan_recipes"])
        cells = row["corrected"]["random plans"]["learnt from 16"]
        assert all(-1 <= cells[k][0] <= 1 for k in ("table", "corrected")) and -2 <= cells["gain"][0] <= 2
    page = out.read_text()
    assert "## cpu-onnxruntime" in page and "probes timed in 6 interleaved rounds" in page and "| latency fitted" in page
    assert "| 16 random plans |" in page
    seen = found["variants"][-1]["observed"]
    assert seen["learnt_from"] == 10 and len(seen["observed"]) == 10 and seen["alpha"] >= 1
    assert all(-1 <= seen[k][0] <= 1 for k in ("table", "corrected"))
    assert "Learnt from the 10 plans an earlier run measured" in page


def test_an_unknown_method_is_refused_before_any_work(capsys):
    from benchmarks.run import main

    with pytest.raises(SystemExit) as exited:
        main(["--quick", "--methods", "autotune,grid"])
    assert exited.value.code == 2 and "--methods: unknown ['grid']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--quick", "--search-variants", "uniform-anchors,no-sampler"])
    assert exited.value.code == 2 and "--search-variants: unknown ['no-sampler']" in capsys.readouterr().err


def test_onnxruntime_reduce_range_builds_the_same_models_both_ways_and_writes_its_section(tiny_workload, tmp_path):
    """FP32 and each quantized plan built with 8-bit and with 7-bit INT8 weights, scored, timed in rounds; the page
    says what `auto` resolved to on this machine. The session's workspace is left as it was."""
    import os

    from autotune.targets.onnxruntime import x86_without_vnni
    from benchmarks.onnxruntime_reduce_range import main

    home = os.environ["AUTOTUNE_HOME"]
    before = sorted((Path(home) / "cache").rglob("*"))
    out = tmp_path / "onnxruntime-reduce-range.md"
    main(["--study", "fashion-cnn-tiny", "--plans", "2", "--rounds", "1", "--out", str(out)])
    assert sorted((Path(home) / "cache").rglob("*")) == before
    page = out.read_text()
    assert "## fashion-cnn-tiny" in page and x86_without_vnni()[1] in page
    assert "| cpu-onnxruntime | " in page
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert len(rows) == 2 and all(line.rstrip().endswith("x |") for line in rows)


def test_recovery_budgets_are_compared_on_the_same_plans_each_with_its_own_step_count(tiny_workload, tmp_path):
    """`full_steps` is the study's budget, not a recovery-recipe field: each value recovers every plan with that many
    steps, in a workspace of its own."""
    import os

    from benchmarks.recovery_recipe import main

    home = os.environ["AUTOTUNE_HOME"]
    before = sorted((Path(home) / "cache").rglob("*"))
    out = tmp_path / "recovery-full-steps.md"
    main(["--study", "fashion-cnn-tiny", "--field", "full_steps", "--values", "40", "10", "--plans", "2", "--out", str(out)])
    assert sorted((Path(home) / "cache").rglob("*")) == before
    page = out.read_text()
    assert "2 pruned plans, distillation steps (" in page and "`full_steps` 40 vs 10" in page
    assert "| cpu-openvino | " in page and "s with 40, " in page
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    seconds = [[float(cell) for cell in line.rstrip(" |").split("|")[-2:]] for line in rows]
    assert all(value > 0 for pair in seconds for value in pair)
    with pytest.raises(SystemExit):
        main(["--study", "fashion-cnn-tiny", "--field", "full_steps", "--values", "40", "0"])


def test_a_speed_cell_over_seeds_shows_the_median_seed_and_the_seeds_range():
    from benchmarks.page import _seeds_interval

    per_seed = sorted([(1.55, 1.55, 1.59), (1.21, 1.19, 1.26), (1.38, 1.35, 1.46)], key=lambda r: r[0])
    assert _seeds_interval(per_seed) == "1.38x [1.35-1.46] (seeds 1.21x-1.55x)"
    assert _seeds_interval([(1.1, 1.0, 1.2)]) == "1.10x [1.00-1.20]"
    assert _seeds_interval([]) == "-"


def test_the_benchmark_recovers_as_a_study_would_on_this_machine():
    from autotune.context import native_bf16
    from benchmarks.run import Config, resolved_recovery_precision

    assert resolved_recovery_precision(Config()) == ("bf16" if native_bf16("cpu")[0] else "f32")
    assert resolved_recovery_precision(Config(recovery_precision="f32")) == "f32"


def test_timing_protocols_are_compared_on_the_same_built_plans_and_written_to_a_page(tiny_workload, tmp_path):
    """Each protocol run several times over the same plans, in turn; the page gives each protocol's run-to-run
    Spearman as measured and with the round drift removed."""
    from benchmarks.timing_protocol import main

    out = tmp_path / "timing-protocol.md"
    main(["--study", "fashion-cnn-tiny", "--targets", "cpu-onnxruntime", "--plans", "4", "--repeats", "2",
          "--protocols", "2x0.01,4x0.005", "--out", str(out)])
    results = json.loads(out.with_suffix(".json").read_text())
    found = results["targets"]["cpu-onnxruntime"]
    assert [run["protocol"] for run in found["runs"]] == ["2x0.01", "4x0.005"] * 2  # in turn, not one after the other
    assert [len(next(iter(run["timings"].values()))) for run in found["runs"]] == [2, 4, 2, 4]
    for row in found["protocols"].values():
        assert len(row["raw"]) == len(row["drift_removed"]) == 1  # two runs: one pair
    assert "| 2x0.01 | " in out.read_text() and "| 4x0.005 | " in out.read_text()
    with pytest.raises(SystemExit):
        main(["--protocols", "3xfast"])


def test_table_stability_builds_each_table_cold_in_both_arms_in_turn(tiny_workload, tmp_path, monkeypatch):
    """Each table measured cold per arm and repeat, the arms in turn; the page gives agreement between builds and
    fidelity against plans timed in one chunk. Probes timed briefly: the test is about the runs, not the numbers."""
    from autotune import latency_table
    from autotune.spec import MeasureSettings
    from benchmarks.table_stability import main

    monkeypatch.setattr(latency_table, "PROBE_MEASURE", MeasureSettings(warmup=1, min_repeats=2, min_seconds=0.002, max_repeats=20))
    monkeypatch.setattr(latency_table, "ROUND_CHUNK", 8)  # several chunks of the tiny model's probes
    out = tmp_path / "table-stability.md"
    main(["--study", "fashion-cnn-tiny", "--targets", "cpu-onnxruntime", "--plans", "4", "--repeats", "2",
          "--tables", "default-rounds", "--out", str(out)])
    found = json.loads(out.with_suffix(".json").read_text())["targets"]["cpu-onnxruntime"]
    arms = [build["arm"] for build in found["builds"]]
    assert arms == ["anchor in every chunk", "no anchor", "no anchor", "anchor in every chunk"]
    assert all(len(build["estimates_ms"]) == 4 and build["base_ms"] > 0 for build in found["builds"])
    for row in found["summary"].values():
        assert len(row["agreement"]) == 1 and len(row["fidelity"]) == 2
    assert latency_table.ANCHOR_IN_EVERY_CHUNK  # restored after each build
    assert "| anchor in every chunk |" in out.read_text() and "| no anchor |" in out.read_text()
    with pytest.raises(SystemExit):
        main(["--tables", "every"])


def test_rounds_above_counts_seed_rounds_and_skips_results_stored_without_rounds():
    from benchmarks.page import rounds_above

    sweep = {"hv_by_round": [0.90, 0.95]}
    seeds = [{"hv_by_round": [0.92, 0.94]}, {"hv_by_round": [0.96, 0.97]}]
    assert rounds_above(seeds, sweep) == "; each timing round alone: above it in 3 of 4 seed-rounds (2 rounds)"
    # MiniLM's results of 2026-12-02 predate the rounds: the page renders them without the count.
    assert rounds_above([{"hv_final": 0.9}], {"hv_final": 0.8}) == ""


def test_sampler_runs_stored_by_one_run_join_a_later_one_of_the_same_budget(tmp_path):
    from benchmarks.samplers import load_runs

    runs = {f"{name}/{seed}": [[0.1 * seed, 1.0, 2.0]] * 3 for name in ("tpe", "gp") for seed in range(2)}
    stored = {
        "config": {"trials": 3, "seeds": 2, "samplers": "tpe,gp"},
        "runs": runs,
        "seconds_by_run": {key: 1.5 for key in runs},
        "distinct_by_run": {key: 3 for key in runs},
    }
    path = tmp_path / "samplers.json"
    path.write_text(json.dumps(stored))
    earlier = load_runs(path, trials=3, seeds=2, names=["tpe"])  # this run repeats tpe: only gp is taken
    assert earlier["names"] == ["gp"] and set(earlier["runs"]) == {("gp", 0), ("gp", 1)}
    assert earlier["runs"][("gp", 1)].shape == (3, 3) and earlier["seconds"][("gp", 0)] == 1.5
    with pytest.raises(SystemExit, match="3 trials x 2 seeds, this run 200 x 2"):
        load_runs(path, trials=200, seeds=2, names=["tpe"])
    path.write_text(json.dumps({"config": stored["config"]}))
    with pytest.raises(SystemExit, match="no 'runs'"):
        load_runs(path, trials=3, seeds=2, names=["tpe"])
