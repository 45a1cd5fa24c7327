"""Acceptance gates: per-class accuracy, calibration (ECE) and temperature scaling, SLO and cost bounds, checked
on real builds of the tiny model and shown by the front table."""

from __future__ import annotations

import dataclasses

import numpy as np
import optuna
import pytest
import torch
from rich.console import Console

from autotune.errors import SpecError
from autotune.evaluate import Evaluator
from autotune.gates import Gates, gate_failures, only_calibration
from autotune.plan import LayerChoice, Plan
from autotune.promotion import Candidate
from autotune.quality import class_accuracy, expected_calibration_error, fit_temperature
from autotune.report import front_table, measured_rows
from autotune.spec import load_hardware, load_study_spec
from autotune.targets import make_target


def write(folder, name, text):
    (folder / f"{name}.toml").write_text(text)


def test_fitted_temperature_recovers_the_one_that_generated_the_labels():
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(20000, 10, generator=generator)
    labels = torch.multinomial(torch.softmax(logits / 2.5, dim=-1), 1, generator=generator).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)
    before, after = expected_calibration_error(logits, labels), expected_calibration_error(logits, labels, 2.5)
    assert before > 0.1 and after < 0.02  # overconfident logits, repaired by the temperature


def test_ece_and_class_accuracy_match_a_hand_count():
    # Two samples at confidence 0.9 (one right), two at 0.6 (both right): ECE = (2|0.5-0.9| + 2|1-0.6|) / 4.
    p = np.log([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    assert expected_calibration_error(p, labels) == pytest.approx(0.4, abs=1e-6)
    assert class_accuracy(p, labels) == {"0": 1.0, "1": 0.5}


def test_each_gate_names_its_bound():
    gates = Gates(max_drop_pts=1.0, max_class_drop_pts=3.0, max_ece_increase=0.01, max_cost_per_million=0.5)
    measured = {"drop_pts": 1.5, "class_drops": {"3": 1.0, "6": 4.2}, "ece_increase": 0.02,
                "latency_p95_ms": 2.0, "cost_per_million": 0.7}
    failures = gate_failures(gates, measured, slo_p95_ms=1.0)
    assert [line.split(":")[0] for line in failures] == ["drop", "class", "ece", "slo", "cost"]
    assert "class 6 drops 4.20 > 3 pts" in failures[1]
    assert gate_failures(Gates(), measured, slo_p95_ms=None) == []
    assert gate_failures(dataclasses.replace(gates, latency_slo=False), measured, 1.0)[3].startswith("cost")
    assert only_calibration(["ece: +0.02 > 0.01"]) and not only_calibration(failures) and not only_calibration([])


def test_gate_errors_name_the_field(catalogue):
    base = 'workload = "fashion-cnn-tiny"\nsearch_space = "cnn-mixed"\nproxies = "default"\ntargets = ["cpu-openvino"]\n'
    write(catalogue / "studies", "a", base + "[gates]\nmax_drop_pts = -1\n")
    with pytest.raises(SpecError, match=r"a.toml: gates.max_drop_pts: -1 is below the minimum"):
        load_study_spec("a")
    write(catalogue / "studies", "b", base + "[gates]\nmax_latency = 3\n")
    with pytest.raises(SpecError, match=r"b.toml: gates.max_latency: unknown field"):
        load_study_spec("b")
    assert load_study_spec("fashion-cnn-tiny").gates == Gates()


def test_class_and_calibration_gates_refuse_a_workload_that_is_not_a_classifier(catalogue):
    from autotune.context import prepare

    write(catalogue / "studies", "m", 'workload = "minilm"\nsearch_space = "minilm"\nproxies = "minilm"\n'
          'targets = ["cpu-onnxruntime-text"]\n[gates]\nmax_ece_increase = 0.01\n')
    with pytest.raises(SpecError, match=r"m.toml: gates.max_ece_increase: workload 'minilm' is not a classifier"):
        prepare(load_study_spec("m"))


@pytest.fixture(scope="module")
def evaluated(tiny_context, tmp_path_factory):
    """FP32, INT8 and a half-pruned unrecovered candidate built on ONNX Runtime, under two sets of gates."""
    from autotune.studies import storage_for

    folder = tmp_path_factory.mktemp("gates")
    storage = storage_for(f"sqlite:///{folder / 'gates.db'}")
    hardware = load_hardware("cpu-onnxruntime")
    kinds = tiny_context.layer_kinds
    pruned = Plan({n: LayerChoice(8, 0.5 if n != "head" else 0.0) for n in kinds})
    candidates = [Candidate(role, plan) for role, plan in tiny_context.reference_plans().items()]
    candidates.append(Candidate("candidate", pruned))
    studies = {}
    for name, gates in {
        "class": Gates(max_class_drop_pts=0.5),
        "ece": Gates(max_ece_increase=0.0),
    }.items():
        spec = dataclasses.replace(
            tiny_context.spec,
            name=f"gates-{name}",
            gates=gates,
            recovery=dataclasses.replace(tiny_context.spec.recovery, full_steps=0),
        )
        context = dataclasses.replace(tiny_context, spec=spec)
        evaluator = Evaluator(context, storage, folder / "artifacts")
        studies[name] = evaluator.run_target(make_target(hardware), hardware, candidates)
    return studies


def _by_role(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    return {t.user_attrs["role"]: t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}


def test_a_candidate_breaking_a_per_class_bound_is_rejected_and_kept_off_the_front(evaluated):
    study = evaluated["class"]
    trials = _by_role(study)
    assert set(study.user_attrs["fp32_class_accuracy"]) == {str(c) for c in range(10)}
    candidate = trials["candidate"]
    worst = candidate.user_attrs["worst_class"]
    assert worst["drop_pts"] > 0.5
    assert candidate.user_attrs["gate_failures"] == [f"class: class {worst['class']} drops {worst['drop_pts']:.2f} > 0.5 pts"]
    assert trials["fp32"].user_attrs["gate_failures"] == []
    rows = {r.role: r for r in measured_rows(study)}
    assert not rows["candidate"].on_front and rows["candidate"].gate_failures
    console = Console(record=True, width=250)
    console.print(front_table(study))
    text = console.export_text()
    assert "fails gate class: class" in text and "pass" in text


def test_a_calibration_failure_is_repaired_by_a_fitted_temperature(evaluated):
    trials = _by_role(evaluated["ece"])
    candidate, fp32 = trials["candidate"], trials["fp32"]
    assert "temperature" in candidate.user_attrs and candidate.user_attrs["temperature"] > 0
    before, after = candidate.user_attrs["ece_before_temperature"], candidate.user_attrs["ece"]
    assert before > fp32.user_attrs["ece"]  # compression (half the channels, no distillation) hurt calibration
    assert after < before
    assert all(line.startswith("ece:") for line in candidate.user_attrs["gate_failures"])  # never another gate
    assert "temperature" not in fp32.user_attrs and "temperature" not in trials["int8"].user_attrs
