"""Measured latencies of earlier full evaluations, and the latency table's correction learnt from them."""

import json
import time
import types

import numpy as np
import pytest

from autotune.latency_history import LatencyCorrection, load_observations, observations_path, record_observation
from autotune.latency_table import architecture_key
from autotune.plan import Plan
from autotune.proxies.latency_measured import MeasuredLatency
from autotune.spec import load_hardware
from benchmarks.latency_fidelity import table_context


def float_layers(plan: Plan) -> int:
    return sum(choice.bits >= 16 for choice in plan.layers.values())


def test_observations_keep_each_plan_s_median_skip_broken_lines_and_stop_at_until(tmp_path, tiny_context):
    path = tmp_path / "observed.jsonl"
    first, second = tiny_context.space.random_plans(2, seed=0)
    for ms in (3.0, 1.0, 2.0):
        record_observation(path, first, ms, "s#0")
    record_observation(path, second, 5.0, "s#1")
    with path.open("a") as file:  # a write cut short, bad bytes, a plan with a missing field, a negative time
        file.write('{"plan": {"layers": {"a": {"bits": 8')
    record_observation(path, first, 2.0, "s#0")  # appended after the unfinished record: still read
    with path.open("ab") as file:
        file.write(b"\xff\xfe not utf-8\n")
    with path.open("a") as file:
        file.write(json.dumps({"plan": {"layers": {"a": {"bits": 8}}}, "batch_ms": 1.0, "at": 0}) + "\n")
        file.write(json.dumps({"plan": second.to_dict(), "batch_ms": -1.0, "at": 0}) + "\n")
    cutoff = time.time()
    time.sleep(0.01)
    record_observation(path, second, 50.0, "s#2")
    found = {plan.digest(): ms for plan, ms in load_observations(path)}
    assert found == {first.digest(): 2.0, second.digest(): pytest.approx(27.5)}
    assert {plan.digest(): ms for plan, ms in load_observations(path, until=cutoff)} == {
        first.digest(): 2.0,
        second.digest(): 5.0,
    }
    assert load_observations(tmp_path / "missing.jsonl") == []


def test_the_file_is_per_target_setting_architecture_and_channel_rounding(tiny_context):
    onnxruntime, openvino = load_hardware("cpu-onnxruntime"), load_hardware("cpu-openvino")
    architecture = architecture_key(tiny_context.recovery.pruner.teacher)
    paths = {
        observations_path(onnxruntime, architecture, 8),
        observations_path(openvino, architecture, 8),
        observations_path(onnxruntime, architecture, 1),
        observations_path(onnxruntime, "another-model", 8),
    }
    assert len(paths) == 4 and observations_path(onnxruntime, architecture, 8).name.startswith("cpu-onnxruntime-")


def test_a_correction_learns_a_cost_the_estimate_misses_and_shrinks_to_it_without_one(tiny_context):
    """A table that misses what each float layer costs ranks plans by their other layers only; the correction learns
    the missing cost from measured plans and ranks unseen ones by it. Where the estimate is right already, it changes
    the ranking of nothing."""
    from scipy.stats import spearmanr

    plans = tiny_context.space.random_plans(60, seed=1)
    layers = list(plans[0].layers)
    rng = np.random.default_rng(0)
    estimate = {p.digest(): float(np.exp(rng.normal(0, 0.05))) for p in plans}  # blind to float layers
    truth = {p.digest(): estimate[p.digest()] * np.exp(0.3 * float_layers(p)) for p in plans}
    learnt, unseen = plans[:24], plans[24:]
    correction = LatencyCorrection(lambda p: estimate[p.digest()], [(p, truth[p.digest()]) for p in learnt], layers)
    assert correction.learnt_from == 24
    measured = [truth[p.digest()] for p in unseen]
    alone = spearmanr([estimate[p.digest()] for p in unseen], measured).statistic
    corrected = spearmanr([correction.corrected_ms(estimate[p.digest()], p) for p in unseen], measured).statistic
    assert corrected > 0.95 and corrected > alone + 0.3

    exact = LatencyCorrection(lambda p: truth[p.digest()], [(p, truth[p.digest()]) for p in learnt], layers)
    assert all(abs(exact.log_correction(p)) < 1e-6 for p in unseen)


def test_the_latency_proxy_learns_from_what_full_evaluations_recorded_until_its_study_began(tiny_context, monkeypatch):
    """Real table on ONNX Runtime; the measured plans are recorded as a full evaluation records them, here with a
    cost per float layer the table's product of ratios does not hold."""
    monkeypatch.setattr(
        "autotune.latency_history.OBSERVATIONS_CACHE", "latency-observed-test"
    )  # not the e2e runs' files
    hardware = load_hardware("cpu-onnxruntime")
    context = table_context(tiny_context)
    proxy = MeasuredLatency({"target": hardware, "learn_from_measured": 8})
    table = proxy.table(context)
    assert proxy._correction is None and proxy.learnt_from == 0  # nothing measured yet in this workspace

    path = observations_path(hardware, architecture_key(context.pruner.teacher), context.channel_multiple)
    plans = tiny_context.space.random_plans(40, seed=2)
    truth = {p.digest(): table.estimate_ms(p) * np.exp(0.3 * float_layers(p)) for p in plans}
    before = time.time()
    for plan in plans[:12]:
        record_observation(path, plan, truth[plan.digest()], "e2e/full/cpu-onnxruntime#0")

    frozen = MeasuredLatency({"target": hardware, "learn_from_measured": 8})
    frozen.history_until = before  # a study begun before these were measured keeps the table alone
    frozen.table(context)
    assert frozen.learnt_from == 0

    learning = MeasuredLatency({"target": hardware, "learn_from_measured": 8})
    learning.table(context)
    assert learning.learnt_from == 12
    unseen = plans[12:]
    measured = np.log([truth[p.digest()] for p in unseen])
    errors = {
        "table": np.abs(np.log([table.estimate_ms(p) for p in unseen]) - measured).mean(),
        "corrected": np.abs(
            np.log([learning.compute(types.SimpleNamespace(plan=p, **vars(context))) for p in unseen]) - measured
        ).mean(),
    }
    assert errors["corrected"] < 0.5 * errors["table"], errors
    learning.history_until = before  # a cut-off set after first use (a resumed study's) is learnt again
    learning.table(context)
    assert learning.learnt_from == 0 and learning.compute(types.SimpleNamespace(plan=unseen[0], **vars(context))) == pytest.approx(
        table.estimate_ms(unseen[0])
    )


def test_learn_from_measured_below_eight_is_refused_naming_the_field(tmp_path):
    from autotune.errors import SpecError
    from autotune.spec import load_proxy_recipe

    path = tmp_path / "r.toml"
    path.write_text(
        'objectives = ["output_divergence", "latency_measured"]\n[latency_measured]\nlearn_from_measured = 3\n'
    )
    with pytest.raises(
        SpecError, match=r"r.toml: latency_measured.learn_from_measured: 3: expected 0 \(never\) or at least 8"
    ):
        load_proxy_recipe(str(path))
    path.write_text(
        'objectives = ["output_divergence", "latency_measured"]\n[latency_measured]\nlearn_from_measured = { openvino = 16 }\n'
    )
    assert load_proxy_recipe(str(path)).settings["latency_measured"]["learn_from_measured"] == {"openvino": 16}


def test_a_study_keeps_the_cut_off_it_began_with_and_the_references_are_scored_with_it(tiny_context, tmp_path):
    """run_search stores the cut-off on a new study from the scorer (set before the references are scored) and a
    resumed run takes it back from the study, whatever time it is now."""
    import dataclasses

    from autotune.scoring import ProxyScorer
    from autotune.search import latency_history_cut_off, run_search
    from autotune.studies import storage_for

    proxies = tiny_context.spec.proxies
    settings = dict(proxies.settings) | {"latency_measured": {"learn_from_measured": 8}}
    spec = dataclasses.replace(
        tiny_context.spec,
        name="cut-off",
        storage=f"sqlite:///{tmp_path / 'cut-off.db'}",
        targets=(load_hardware("cpu-onnxruntime"),),
        proxies=dataclasses.replace(proxies, settings=settings),
        anchors=(),
    )
    context = dataclasses.replace(tiny_context, spec=spec)
    storage = storage_for(spec.storage)
    first = ProxyScorer(context)
    began = latency_history_cut_off(context, storage)
    first.learn_latency_until(began)
    study = run_search(context, first, storage, trials=2)
    assert study.user_attrs["latency_history_until"] == began
    assert first.proxies["latency_measured@cpu-onnxruntime"].history_until == began

    time.sleep(0.01)
    assert latency_history_cut_off(context, storage) == began
    resumed = ProxyScorer(context)
    resumed.learn_latency_until(time.time())  # what a new run would set; the study's own value wins
    run_search(context, resumed, storage, trials=3)
    assert resumed.proxies["latency_measured@cpu-onnxruntime"].history_until == began


def test_a_record_that_cannot_be_written_costs_the_record_only(tiny_context, tmp_path, monkeypatch, workspace):
    from autotune.evaluate import Evaluator
    from autotune.studies import storage_for

    (workspace / "cache" / "blocked-records").write_text("a file where the folder should be")
    monkeypatch.setattr("autotune.latency_history.OBSERVATIONS_CACHE", "blocked-records")
    evaluator = Evaluator(tiny_context, storage_for(f"sqlite:///{tmp_path / 'x.db'}"), tmp_path / "artifacts")
    plan = tiny_context.space.random_plans(1, seed=4)[0]
    evaluator.record_latency(load_hardware("cpu-onnxruntime"), plan, 1.0, "x/full/cpu-onnxruntime#0")  # warns, no raise
