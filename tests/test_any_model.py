"""Models not shaped like ours, end to end: numbered Sequential containers, ModuleList depthwise blocks,
nested blocks with a module used twice and a concatenation, and a BERT encoder with dict inputs.

Each goes through the real CLI: search, promotion, full evaluation on both CPU targets.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from conftest import autotune_cli, quick_measurement_hardware
from optuna.trial import TrialState

TESTS = Path(__file__).resolve().parent

# workload -> (its output layer, the layer kinds it has besides the output layer)
FAMILIES = {
    "sequential_cnn": ("classifier.3", ("conv", "linear")),
    "depthwise_cnn": ("head", ("conv",)),
    "nested_shared": ("fc", ("conv",)),
    "tiny_bert": ("classifier", ("linear",)),
}
OUTPUT_RULE = '[[layers]]\nmatch = "{output}"\nbits = [8, 32]\n'
KIND_RULES = {
    "conv": '[[layers]]\nkind = "conv"\nbits = [8, 32]\nprune = [0.0, 0.25, 0.5]\n',
    "linear": '[[layers]]\nkind = "linear"\nbits = [4, 8, 32]\nprune = [0.0, 0.25, 0.5]\n',
}

STUDY = """
name = "{name}"
workload = "zoo:{name}"
search_space = "{name}"
proxies = "macs"
targets = ["cpu-openvino", "cpu-onnxruntime"]
storage = "sqlite:///{db}"

[search]
trials = 6
anchors = [0.0, 0.5]

[promotion]
candidates = 1
rescore = 2

[recovery]
rescore_steps = 3
full_steps = 10
batch_size = 32
recalibration_samples = 256
"""


def write_study(folder: Path, name: str, output: str, kinds: tuple[str, ...]) -> Path:
    for sub in ("studies", "search_spaces"):
        (folder / sub).mkdir(exist_ok=True)
    space = OUTPUT_RULE.format(output=output) + "".join(KIND_RULES[kind] for kind in kinds)
    (folder / "search_spaces" / f"{name}.toml").write_text(space)
    spec = folder / "studies" / f"{name}.toml"
    spec.write_text(STUDY.format(name=name, db=folder / "studies.db"))
    quick_measurement_hardware(folder)
    return spec


@pytest.fixture(scope="module")
def zoo_env():
    return {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_model_of_another_shape_runs_end_to_end_on_both_cpu_targets(name, tmp_path, zoo_env):
    spec = write_study(tmp_path, name, *FAMILIES[name])
    result = autotune_cli("run", str(spec), cwd=tmp_path, env=zoo_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "Statistics collection" not in result.stdout + result.stderr  # NNCF's own bars stay off the terminal
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    for target in ("cpu-openvino", "cpu-onnxruntime"):
        measured = optuna.load_study(study_name=f"{name}/full/{target}", storage=url)
        trials = measured.get_trials(states=(TrialState.COMPLETE,))
        roles = sorted(t.user_attrs["role"] for t in trials)
        assert roles[:1] == ["candidate"] and "fp32" in roles and "int8" in roles, roles
        for trial in trials:
            plan = trial.user_attrs["plan"]["layers"]
            assert set(trial.user_attrs["realised_precision"]) == set(plan)
            assert trial.values[0] < 50  # a measured drop in points, not a broken model
        assert f"{name}/full/{target}: measured front" in result.stderr


# ---------------------------------------------------------------- no dead parameters


def _context(name: str, tmp_path: Path, monkeypatch):
    import sys

    from autotune.context import prepare
    from autotune.spec import load_study_spec

    monkeypatch.syspath_prepend(str(TESTS))
    sys.modules.pop("zoo", None)
    monkeypatch.chdir(tmp_path)
    output, kinds = FAMILIES.get(name, ("head", ("conv", "linear")))
    workload = f"zoo:{name}" if name in FAMILIES else name
    spec = write_study(tmp_path, "s", output, kinds)
    spec.write_text(spec.read_text().replace('workload = "zoo:s"', f'workload = "{workload}"'))
    return prepare(load_study_spec(str(spec)))


def _fingerprint(model: torch.nn.Module) -> list:
    """Every tensor's name, shape and exact bytes."""
    return [(k, tuple(v.shape), v.detach().numpy().tobytes()) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name", [*FAMILIES, "fashion-cnn-tiny"])
def test_every_searched_parameter_changes_the_model(name, tmp_path, monkeypatch):
    """From random plans, change one parameter at a time: the pruned (or quantized) model always changes."""
    from autotune.compress import fake_quantize_weights

    context = _context(name, tmp_path, monkeypatch)
    space, recovery = context.space, context.recovery
    dists = space.choices()
    rng = random.Random(0)
    for _ in range(2):
        params = {n: rng.choice(values) for n, values in dists.items()}
        base_plan = space.plan_from_params(params)
        base_pruned = recovery.pruned(base_plan)
        base = _fingerprint(fake_quantize_weights(recovery.pruned(base_plan), base_plan))
        for parameter, values in dists.items():
            other = rng.choice([c for c in values if c != params[parameter]])
            plan = space.plan_from_params(params | {parameter: other})
            pruned = recovery.pruned(plan)
            if parameter.endswith(".prune"):
                assert _fingerprint(pruned) != _fingerprint(base_pruned), f"{name}: {parameter} -> {other} is dead"
            else:
                changed = _fingerprint(fake_quantize_weights(pruned, plan))
                assert changed != base, f"{name}: {parameter} -> {other} is dead"


def test_grouping_counts_one_parameter_per_coupled_group(tmp_path, monkeypatch):
    """Layers that lose channels together share one pruning parameter, named after the group's first layer."""
    context = _context("depthwise_cnn", tmp_path, monkeypatch)
    prune_params = sorted(n for n in context.space.distributions() if n.endswith(".prune"))
    assert prune_params == [
        "blocks.0.expand.0.prune",
        "blocks.1.expand.0.prune",
        "blocks.2.expand.0.prune",
        "stem.0.prune",
    ]
    groups = {g.root: g.layers for g in context.space.groups}
    assert groups["blocks.0.expand.0"] == ("blocks.0.expand.0", "blocks.0.depthwise.0")
    assert set(groups["stem.0"]) == {"stem.0", "blocks.0.project.0", "blocks.1.project.0", "blocks.2.project.0"}
    plan = context.space.plan_from_params({"stem.0.prune": 0.5})
    assert {n for n, c in plan.layers.items() if c.prune == 0.5} == set(groups["stem.0"])


def test_attention_is_pruned_by_whole_heads(tmp_path, monkeypatch):
    context = _context("tiny_bert", tmp_path, monkeypatch)
    root = "bert.encoder.layer.0.attention.self.query"
    group = next(g for g in context.space.groups if g.root == root)
    assert set(group.layers) == {root, root.replace("query", "key"), root.replace("query", "value")}
    assert all(width % 8 == 0 for width in group.widths)  # 4 heads of 8
    plan = context.space.plan_from_params({f"{root}.prune": 0.5})
    model = context.recovery.pruned(plan)
    attention = model.bert.encoder.layer[0].attention.self
    assert attention.num_attention_heads == 2 and attention.query.out_features == 16
    outputs = context.workload.io.run(model, context.workload.example_input)
    assert outputs.shape == (1, 2)


def test_layers_the_output_does_not_depend_on_are_not_planned(tmp_path, monkeypatch):
    """A probe computed and kept aside and a module never called are found by autograd and left alone."""
    from autotune.errors import PlanError
    from autotune.plan import LayerChoice, Plan

    context = _context("nested_shared", tmp_path, monkeypatch)
    assert context.layers.unreachable == {"probe", "spare"}
    assert not {"probe", "spare"} & set(context.layer_kinds)
    assert not any(p.startswith(("probe.", "spare.")) for p in context.space.distributions())
    with pytest.raises(PlanError, match="unknown layer"):
        context.recovery.pruned(Plan({"probe": LayerChoice(8)}))


def test_a_bert_pooler_is_left_alone_when_the_output_is_the_hidden_states():
    from transformers import BertConfig, BertModel

    from autotune.layers import index_model
    from autotune.workloads import ModelIO

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=8)).eval()
    example = {"input_ids": torch.randint(0, 32, (1, 8)), "attention_mask": torch.ones(1, 8, dtype=torch.long)}
    hidden = index_model(model, ModelIO(output="last_hidden_state", output_kind="embedding"), example)
    assert hidden.unreachable == {"pooler.dense"}
    pooled = index_model(model, ModelIO(output="pooler_output", output_kind="embedding"), example)
    assert pooled.unreachable == frozenset() and "pooler.dense" in pooled.layers
    assert all(p.requires_grad for p in model.parameters())  # the check leaves the model as it was


class FrozenBackbone(torch.nn.Module):
    """A linear probe on a backbone run without gradients, and a LeNet-style `.view` flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        self.head = torch.nn.Linear(6 * 12 * 12, 10)
        self.unused = torch.nn.Linear(4, 4)

    def forward(self, x):
        with torch.no_grad():
            features = self.backbone(x)
        return self.head(features.view(features.size(0), -1))


def test_a_backbone_run_without_gradients_is_still_planned_and_a_view_flatten_runs_channels_first():
    from autotune.layers import index_model
    from autotune.layout import channels_last_holds
    from autotune.workloads import ModelIO

    model, example = FrozenBackbone().eval(), torch.randn(2, 1, 28, 28)
    layers = index_model(model, ModelIO(), example)
    assert set(layers.layers) == {"backbone.0", "head"} and layers.unreachable == {"unused"}
    assert not channels_last_holds(model, ModelIO(), example)  # `.view` on a channels-last tensor raises


def test_image_models_that_allow_it_run_channels_last(tmp_path, monkeypatch):
    from autotune.layout import channels_last_holds
    from autotune.workloads.io import take

    context = _context("depthwise_cnn", tmp_path, monkeypatch)
    workload = context.workload
    assert channels_last_holds(context.recovery.teacher, workload.io, take(workload.calibration, slice(0, 2)))


# ---------------------------------------------------------------- identity and failing fast

FINGERPRINTS = '''
import torch
from zoo import sequential_cnn
import dataclasses


def perturbed():
    """The same architecture with other weights and, like many user workloads, no fingerprint."""
    workload = sequential_cnn()
    original = workload.model_factory

    def factory():
        model = original()
        with torch.no_grad():
            model.features[0].weight.mul_(1.01)
        return model

    return dataclasses.replace(workload, model_factory=factory, fingerprint="")


def plain():
    return dataclasses.replace(sequential_cnn(), fingerprint="")
'''


def test_user_models_without_fingerprints_never_share_recoveries(tmp_path, monkeypatch):
    from autotune.compress import Recovery, RecoveryConfig
    from autotune.workloads import load_workload

    (tmp_path / "user_models.py").write_text(FINGERPRINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(TESTS))
    plain, perturbed = load_workload("user_models:plain"), load_workload("user_models:perturbed")
    assert len(plain.fingerprint) == 64 and plain.fingerprint != perturbed.fingerprint
    assert load_workload("user_models:plain").fingerprint == plain.fingerprint  # stable across loads
    config = RecoveryConfig(batch_size=32, recalibration_samples=64)
    a, b = Recovery(plain, config), Recovery(perturbed, config)
    assert a.identity != b.identity
    plan = a.pruner.groups[0]
    ratios = {plan.root: 0.5}
    state_a, state_b = a.recover(ratios, 0), b.recover(ratios, 0)
    assert not torch.equal(state_a["features.0.weight"], state_b["features.0.weight"])


UNFINDABLE = '''
import dataclasses

import torch
from torch import nn
from zoo import sequential_cnn


def parametrized():
    """A layer whose weight is computed (weight norm): no initializer carries its name in the export."""
    workload = sequential_cnn()
    original = workload.model_factory

    def factory():
        model = original()
        nn.utils.parametrizations.weight_norm(model.classifier[1])
        return model

    return dataclasses.replace(workload, model_factory=factory, fingerprint="")
'''


def test_a_layer_a_target_cannot_find_stops_the_run_once_before_any_trial(tmp_path, zoo_env):
    (tmp_path / "user_models.py").write_text(UNFINDABLE)
    spec = write_study(tmp_path, "unfindable", "classifier.3", ("conv", "linear"))
    spec.write_text(spec.read_text().replace('workload = "zoo:unfindable"', 'workload = "user_models:parametrized"'))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), zoo_env["PYTHONPATH"]])}
    result = autotune_cli("run", str(spec), cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "classifier.1" in errors[0] and "cpu-openvino" in errors[0] and "weights found there" in errors[0]
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    summaries = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url)}
    assert summaries.get("unfindable", 0) == 0  # no proxy trial ran, none failed


@pytest.mark.parametrize("name", ["tiny_bert"])  # a depthwise CNN passed too (16 s); the suite is near its budget
def test_the_latency_proxy_learns_its_correction_on_other_architectures(name, tmp_path, monkeypatch):
    """A transformer (embeddings, heads pruned whole): its real ONNX Runtime table, plans recorded under its own
    architecture's file, with a cost per float layer the table's product of ratios does not hold."""
    import time
    import types

    from autotune.latency_history import observations_path, record_observation
    from autotune.latency_table import architecture_key
    from autotune.proxies.latency_measured import MeasuredLatency
    from autotune.spec import load_hardware
    from benchmarks.latency_fidelity import table_context

    monkeypatch.setattr("autotune.latency_history.OBSERVATIONS_CACHE", f"latency-observed-{name}")
    context = _context(name, tmp_path, monkeypatch)
    hardware, recovery = load_hardware("cpu-onnxruntime"), context.recovery
    proxy_context = table_context(context)
    plans = context.space.random_plans(30, seed=1)
    table = MeasuredLatency({"target": hardware}).table(proxy_context)

    def truth(plan):
        return table.estimate_ms(plan) * np.exp(0.3 * sum(c.bits >= 16 for c in plan.layers.values()))

    path = observations_path(hardware, architecture_key(recovery.pruner.teacher), recovery.config.channel_multiple)
    for plan in plans[:12]:
        record_observation(path, plan, truth(plan), f"{name}/full/cpu-onnxruntime#0")
    proxy = MeasuredLatency({"target": hardware, "learn_from_measured": 8})
    proxy.history_until = time.time()
    proxy.table(proxy_context)
    assert proxy.learnt_from == 12
    unseen = plans[12:]
    measured = np.log([truth(p) for p in unseen])
    alone = np.abs(np.log([table.estimate_ms(p) for p in unseen]) - measured).mean()
    corrected = np.abs(np.log([proxy.compute(types.SimpleNamespace(plan=p, **vars(proxy_context))) for p in unseen]) - measured).mean()
    assert corrected < 0.5 * alone, (corrected, alone)


@pytest.mark.parametrize("name", ["depthwise_cnn"])  # tiny BERT passed too (25 s); the suite is near its budget
def test_a_table_timed_in_rounds_anchors_every_chunk_on_other_architectures(name, tmp_path, monkeypatch):
    """A table's probes timed in several chunks on a model not shaped like ours: its INT8 base is timed in each chunk
    and every chunk is scaled to it; the table stays exact at its base and positive elsewhere. Probes timed briefly."""
    from autotune import latency_table
    from autotune.proxies.latency_measured import MeasuredLatency
    from autotune.spec import MeasureSettings, load_hardware
    from benchmarks.latency_fidelity import table_context

    context = _context(name, tmp_path, monkeypatch)
    monkeypatch.setattr(latency_table, "PROBE_MEASURE", MeasureSettings(warmup=1, min_repeats=2, min_seconds=0.002, max_repeats=20))
    monkeypatch.setattr(latency_table, "ROUND_CHUNK", 6)
    seen: list[tuple[list[dict], str | None]] = []
    real = latency_table.onto_anchor
    monkeypatch.setattr(latency_table, "onto_anchor", lambda chunks, anchor: seen.append((chunks, anchor)) or real(chunks, anchor))
    table = MeasuredLatency({"target": load_hardware("cpu-onnxruntime"), "probe_rounds": 3}).table(table_context(context))
    (chunks, anchor), = seen
    assert anchor == table.base.to_json() and len(chunks) > 1
    assert all(len(chunk[anchor]) == 3 for chunk in chunks)  # the base built and timed in every chunk, 3 rounds each
    assert table.estimate_ms(table.base) == pytest.approx(table.base_ms)
    estimates = [table.estimate_ms(plan) for plan in context.space.random_plans(10, seed=2)]
    assert all(np.isfinite(e) and e > 0 for e in estimates)


@pytest.mark.parametrize("name", [*FAMILIES, "fashion-cnn-tiny"])
def test_the_search_tries_each_plan_once_on_other_architectures(name, tmp_path, monkeypatch):
    """TPE as a study builds it (autotune.fresh_plans) over another model's space (numbered containers, depthwise
    blocks, shared modules, attention heads): every trial a distinct plan on the space's grid."""
    from autotune.search import make_sampler

    space = _context(name, tmp_path, monkeypatch).space
    choices = space.choices()
    trials = min(40, int(np.prod([len(values) for values in choices.values()])) // 2)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=make_sampler("tpe", 0, trials, space))

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        plan = space.suggest_plan(trial)
        kept = sum(1 - plan.choice(n).prune for n in plan.layers)
        return sum(plan.choice(n).bits for n in plan.layers) * kept, -kept

    study.optimize(objective, n_trials=trials)
    digests = [space.plan_from_params(t.params).digest() for t in study.trials]
    assert trials >= 10 and len(set(digests)) == trials, name
    assert all(t.params[n] in values for t in study.trials for n, values in choices.items()), name
