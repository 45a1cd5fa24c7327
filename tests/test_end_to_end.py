"""A small study run through the real CLI: both studies, artifacts, a front, resume, failures, dashboard."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
from conftest import autotune_cli, quick_measurement_hardware
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.trial import TrialState

from autotune.proxies import registered_proxies
from autotune.proxies.base import Proxy

STUDY = """
name = "e2e"
workload = "fashion-cnn-tiny"
search_space = "cnn-mixed"
proxies = "{proxies}"
targets = ["cpu-openvino", "cpu-onnxruntime"]
storage = "sqlite:///{db}"

[search]
trials = {trials}

[promotion]
candidates = 2
rescore = 3

[recovery]
rescore_steps = 5
full_steps = 20
batch_size = 64
"""


@pytest.fixture(scope="module")
def study_run(tmp_path_factory, tiny_workload):
    folder = tmp_path_factory.mktemp("e2e")
    (folder / "studies").mkdir()
    db = folder / "studies.db"
    spec = folder / "studies" / "e2e.toml"
    spec.write_text(STUDY.format(proxies="default", db=db, trials=10))
    quick_measurement_hardware(folder)
    result = autotune_cli("run", str(spec), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, spec, f"sqlite:///{db}", result


def test_run_creates_proxy_and_measured_studies(study_run):
    _, _, url, result = study_run
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    assert names == {"e2e", "e2e/full/cpu-openvino", "e2e/full/cpu-onnxruntime"}
    proxy = optuna.load_study(study_name="e2e", storage=url)
    assert proxy.metric_names == [
        "output_divergence",
        "latency_measured@cpu-openvino",
        "latency_measured@cpu-onnxruntime",
    ]
    complete = proxy.get_trials(states=(TrialState.COMPLETE,))
    assert len(proxy.trials) == 10 and complete
    assert all("plan" in t.user_attrs and "proxy.model_size" in t.user_attrs for t in complete)
    assert proxy.user_attrs["staging"] and any(s["promoted"] for s in proxy.user_attrs["staging"])

    for target in ("cpu-openvino", "cpu-onnxruntime"):
        check_measured_study(optuna.load_study(study_name=f"e2e/full/{target}", storage=url))
    for target in ("cpu-openvino", "cpu-onnxruntime"):
        assert f"e2e/full/{target}: measured front" in result.stderr
    assert "$/M req" in result.stderr and "save vs INT8" in result.stderr


def check_measured_study(measured: optuna.Study) -> None:
    assert measured.metric_names == ["accuracy_drop_pts", "batch_latency_p50_ms", "size_mb"]
    assert measured.user_attrs["price_per_hour"] == 0.0893
    fidelity = measured.user_attrs["fidelity"]
    assert fidelity["latency_proxy"] == f"latency_measured@{measured.user_attrs['target']}"
    trials = measured.get_trials(states=(TrialState.COMPLETE,))
    roles = [t.user_attrs["role"] for t in trials]
    assert roles.count("fp32") == 1 and roles.count("int8") == 1 and 1 <= roles.count("candidate") <= 2
    fp32 = next(t for t in trials if t.user_attrs["role"] == "fp32")
    assert fp32.values[0] == 0.0 and fp32.user_attrs["accuracy"] > 0.6
    for trial in trials:
        assert all(math.isfinite(v) and v >= -100 for v in trial.values)
        for layer, choice in trial.user_attrs["plan"]["layers"].items():  # the plan is visible as parameters
            assert trial.params[f"{layer}.bits"] == choice["bits"]
            assert trial.params[f"{layer}.prune"] == choice["prune"]
        assert set(trial.user_attrs["realised_precision"]) == set(trial.user_attrs["plan"]["layers"])
        assert trial.user_attrs["cost_per_million"] > 0
        assert trial.user_attrs["fp32_divergence"] >= 0  # the built model's outputs vs torch FP32's
    assert fp32.user_attrs["fp32_divergence"] < 1e-4


def test_full_evaluations_record_their_measured_latency_for_later_latency_proxies(study_run, tiny_context):
    from autotune.latency_history import observations_path
    from autotune.latency_table import architecture_key
    from autotune.spec import load_hardware

    _, _, url, _ = study_run
    recovery = tiny_context.recovery
    for target in ("cpu-openvino", "cpu-onnxruntime"):
        path = observations_path(load_hardware(target), architecture_key(recovery.pruner.teacher), recovery.config.channel_multiple)
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        by_origin = {r["origin"]: r for r in records}  # other tests of this session record the same architecture too
        trials = optuna.load_study(study_name=f"e2e/full/{target}", storage=url).get_trials(states=(TrialState.COMPLETE,))
        assert trials
        for trial in trials:
            record = by_origin[f"e2e/full/{target}#{trial.number}"]
            assert record["plan"] == trial.user_attrs["plan"]
            assert record["batch_ms"] == trial.user_attrs["batch_latency_p50_ms"]


def test_artifacts_hold_the_model_plan_and_recipe(study_run, tmp_path):
    folder, _, url, _ = study_run
    store = FileSystemArtifactStore(str(folder / "artifacts"))
    measured = optuna.load_study(study_name="e2e/full/cpu-openvino", storage=url)
    trial = next(t for t in measured.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs["role"] == "candidate")
    metas = {m.filename: m for m in get_all_artifact_meta(trial, storage=measured._storage)}
    assert {"model.xml", "model.bin", "plan.json", "recipe.json"} <= set(metas)
    download_artifact(
        artifact_store=store, artifact_id=metas["recipe.json"].artifact_id, file_path=str(tmp_path / "r.json")
    )
    recipe = json.loads((tmp_path / "r.json").read_text())
    assert recipe["plan"] == trial.user_attrs["plan"]
    assert recipe["workload"]["fingerprint"] and recipe["versions"]["openvino"]
    assert recipe["recovery"]["steps"] == 20
    assert recipe["recovery"]["continues"] == 5  # the re-score's 5 steps, continued for 15


def test_front_prints_references_and_candidates(study_run):
    folder, spec, url, _ = study_run
    result = autotune_cli("front", "e2e", "--storage", url, cwd=folder)
    assert result.returncode == 0, result.stderr
    text = " ".join((result.stdout + result.stderr).split())  # table captions wrap at the console width
    for target in ("cpu-openvino", "cpu-onnxruntime"):
        assert f"e2e/full/{target}" in text
    assert "fp32" in text and "int8" in text and "candidate" in text
    assert "proxy fidelity" in text and "latency_measured@cpu-onnxruntime vs measured batch latency" in text


def test_the_search_starts_from_uniform_anchors_and_each_with_the_layers_a_target_runs_faster_in_float(
    study_run, monkeypatch
):
    from autotune.anchors import MIN_ANCHOR_GAIN, target_anchors, uniform_anchors
    from autotune.context import prepare
    from autotune.plan import Plan
    from autotune.scoring import ProxyScorer
    from autotune.spec import load_study_spec

    folder, spec_path, url, _ = study_run
    monkeypatch.chdir(folder)  # the study's quick hardware files, whose latency tables the run cached
    spec = load_study_spec(str(spec_path))
    context = prepare(spec)
    estimators = ProxyScorer(context).latency_estimators()
    assert set(estimators) == {"cpu-openvino", "cpu-onnxruntime"}
    anchors = uniform_anchors(context.space, spec.anchors)
    expected = target_anchors(context.space, anchors, estimators)  # from the tables the run measured

    trials = optuna.load_study(study_name="e2e", storage=url).get_trials()
    first = [Plan.from_dict(t.user_attrs["plan"]) for t in trials[: len(anchors) + len(expected)]]
    assert [p.digest() for p in first] == [p.digest() for p in anchors + [plan for plan, _ in expected]]
    tagged = trials[len(anchors) : len(first)]
    assert [t.user_attrs["anchor"] for t in tagged] == [f"float where faster on {target}" for _, target in expected]
    assert all("anchor" not in t.user_attrs for t in trials[: len(anchors)] + trials[len(first) :])
    for trial, (plan, target) in zip(tagged, expected, strict=True):
        uniform = next(t for t in trials[: len(anchors)] if t.user_attrs["plan_digest"] == anchors_with(plan, anchors))
        ms = trial.user_attrs[f"proxy.latency_measured@{target}"]
        assert ms == pytest.approx(estimators[target](plan))
        assert ms < uniform.user_attrs[f"proxy.latency_measured@{target}"] * (1 - MIN_ANCHOR_GAIN)


def test_each_latency_table_is_checked_against_whole_plans_timed_on_its_target(study_run):
    from autotune.latency_check import CHECK_MIN_SPEARMAN, FALLBACK_MARGIN, MIN_CHECK_PLANS, TableCheck

    _, _, url, result = study_run
    checks = optuna.load_study(study_name="e2e", storage=url).user_attrs["latency_check"]
    assert set(checks) == {"latency_measured@cpu-openvino", "latency_measured@cpu-onnxruntime"}
    for name, check in checks.items():
        assert MIN_CHECK_PLANS <= check["plans"] <= 12 and check["target"] == name.split("@")[1]
        assert -1.0 <= check["spearman"] <= 1.0 and check["median_error"] >= 1.0
        chosen = TableCheck(**check).chosen_spearman  # without the pair terms where the check dropped them
        fell_short = chosen < CHECK_MIN_SPEARMAN
        assert (check["fallback_spearman"] is not None) == fell_short  # the fallback is measured only when needed
        assert check["uses_fallback"] == (fell_short and check["fallback_spearman"] >= chosen + FALLBACK_MARGIN)
        assert f"latency table on {check['target']} ranks {check['plans']} whole plans timed on it" in result.stderr


def anchors_with(plan, anchors) -> str:
    """The digest of the uniform anchor `plan` was derived from: the one with the same pruning."""
    return next(a.digest() for a in anchors if a.pruning() == plan.pruning())


def test_rerun_resumes_without_duplicating(study_run):
    folder, spec, url, _ = study_run
    names = ("e2e", "e2e/full/cpu-openvino", "e2e/full/cpu-onnxruntime")
    before = {name: len(optuna.load_study(study_name=name, storage=url).trials) for name in names}
    result = autotune_cli("run", str(spec), cwd=folder)
    assert result.returncode == 0, result.stderr[-2000:]
    after = {name: len(optuna.load_study(study_name=name, storage=url).trials) for name in before}
    assert after == before
    result = autotune_cli("run", str(spec), "--trials", "13", cwd=folder)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(optuna.load_study(study_name="e2e", storage=url).trials) == 13


def test_a_changed_search_space_is_not_mixed_into_an_old_study(study_run):
    folder, spec, url, _ = study_run
    changed = folder / "studies" / "changed.toml"
    changed.write_text(
        STUDY.format(proxies="default", db=url.removeprefix("sqlite:///"), trials=10).replace(
            "rescore_steps = 5", "rescore_steps = 5\nlearning_rate = 0.01"
        )
    )
    result = autotune_cli("run", str(changed), cwd=folder)
    assert result.returncode == 2
    assert "was created from a different workload" in result.stderr


class FlakyProxy(Proxy):
    """Fails for plans with any 4-bit layer, as a broken user proxy would."""

    name = "flaky_for_test"

    def compute(self, context):
        return math.nan if 4 in context.plan.bits().values() else 0.1


def test_failing_proxy_trials_are_recorded_and_the_study_goes_on(tmp_path, monkeypatch, tiny_workload):
    from autotune.context import prepare
    from autotune.scoring import ProxyScorer
    from autotune.search import run_search
    from autotune.spec import load_study_spec
    from autotune.studies import storage_for

    monkeypatch.setitem(registered_proxies(), "flaky_for_test", FlakyProxy)
    monkeypatch.chdir(tmp_path)
    for folder in ("studies", "proxies"):
        (tmp_path / folder).mkdir()
    (tmp_path / "proxies" / "flaky.toml").write_text(
        'objectives = ["flaky_for_test", "latency_macs"]\ncalibration_samples = 32\n'
    )
    db = tmp_path / "flaky.db"
    (tmp_path / "studies" / "flaky.toml").write_text(STUDY.format(proxies="flaky", db=db, trials=12))
    context = prepare(load_study_spec("flaky"))
    study = run_search(context, ProxyScorer(context), storage_for(f"sqlite:///{db}"))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(study.trials) == 12
    assert failed and study.get_trials(states=(TrialState.COMPLETE,))
    assert all("returned nan" in t.user_attrs["fail_reason"] for t in failed)


def test_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path):
    (tmp_path / "studies").mkdir()
    db = tmp_path / "never.db"
    bad = tmp_path / "studies" / "bad.toml"
    bad.write_text(
        f'workload = "fashion-cnn-tiny"\nsearch_space = "cnn-mixed"\nproxies = "default"\ntargets = ["cpu-openvino"]\nstorage = "sqlite:///{db}"\n[search]\ntrials = "many"\n'
    )
    result = autotune_cli("run", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "bad.toml: search.trials: 'many' is not an integer" in lines[0]
    assert "Traceback" not in result.stderr and not db.exists()
    bad.write_text(
        bad.read_text()
        .replace('workload = "fashion-cnn-tiny"', 'workload = "nowhere.module:make"')
        .replace('"many"', "3")
    )
    result = autotune_cli("run", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and "cannot import 'nowhere.module'" in result.stderr and not db.exists()
    result = autotune_cli("--debug", "run", str(bad), cwd=tmp_path)
    assert "Traceback" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dashboard_serves_both_studies(study_run):
    folder, _, url, _ = study_run
    port = _free_port()
    executable = shutil.which("autotune", path=os.path.dirname(sys.executable))
    server = subprocess.Popen(
        [executable, "dashboard", "--storage", url, "--port", str(port)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        names = None
        deadline = time.time() + 60
        while time.time() < deadline and names is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    names = {s["study_name"] for s in json.load(response)["study_summaries"]}
            except OSError:
                time.sleep(0.5)
        assert names is not None, "dashboard did not answer within 60 s"
        assert {"e2e", "e2e/full/cpu-openvino", "e2e/full/cpu-onnxruntime"} <= names
    finally:
        server.terminate()
        server.wait(timeout=10)
