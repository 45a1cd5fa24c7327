"""Pruning, simulated quantization and cached recovery on the tiny real model."""

import copy

import torch

from autotune.compress import (
    Recovery,
    RecoveryConfig,
    fake_quantize_weights,
    output_channels,
    output_layers,
    prunable_layers,
    prune,
)
from autotune.plan import LayerChoice, Plan


def test_layers_and_outputs_are_discovered(tiny_workload):
    model = tiny_workload.fp32_model()
    layers = prunable_layers(model)
    assert len(layers) >= 6
    assert layers["fc1"] == "linear" and layers["stem.conv"] == "conv"
    assert output_layers(model, tiny_workload.example_input) == {"head"}


def test_pruning_removes_channels_for_real_and_keeps_the_model_runnable(tiny_workload):
    model = tiny_workload.fp32_model()
    before = output_channels(model)
    params_before = sum(p.numel() for p in model.parameters())
    plan = Plan({"block1.conv1": LayerChoice(32, 0.5), "fc1": LayerChoice(32, 0.25)})
    prune(model, plan, tiny_workload.example_input)
    after = output_channels(model)
    assert after["block1.conv1"] == before["block1.conv1"] // 2
    assert after["fc1"] < before["fc1"]
    assert after["head"] == before["head"]
    assert sum(p.numel() for p in model.parameters()) < params_before
    assert model(tiny_workload.example_input).shape == (1, 10)


def test_fake_quantization_error_grows_as_bits_shrink(tiny_workload):
    model = tiny_workload.fp32_model()
    weight = model.fc1.weight.detach().clone()
    errors = {}
    for bits in (8, 4):
        quantized = fake_quantize_weights(copy.deepcopy(model), Plan({"fc1": LayerChoice(bits)}))
        errors[bits] = torch.mean((quantized.fc1.weight - weight) ** 2).item()
        assert len(torch.unique(quantized.fc1.weight[0])) <= 2**bits
    assert 0 < errors[8] < errors[4]


def test_recovery_is_cached_by_pruning_subplan_and_deterministic(tiny_workload, workspace):
    recovery = Recovery(tiny_workload, RecoveryConfig(batch_size=64))
    plan_a = Plan({"down2.conv": LayerChoice(8, 0.5)})
    plan_b = Plan({"down2.conv": LayerChoice(32, 0.5), "fc1": LayerChoice(8)})  # same pruning
    first = recovery.recovered(plan_a, steps=5)
    cache_entries = len(list((workspace / "cache" / "recovery").rglob("output.pkl")))
    second = recovery.recovered(plan_b, steps=5)
    assert len(list((workspace / "cache" / "recovery").rglob("output.pkl"))) == cache_entries
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # A fresh Recovery (new process, same seed) reproduces the same weights from scratch.
    fresh = Recovery(tiny_workload, RecoveryConfig(batch_size=64, seed=0))
    fresh._recovered_state.clear()
    again = fresh.recovered(plan_a, steps=5)
    assert all(
        torch.allclose(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True)
    )


def test_recovery_improves_a_pruned_model(tiny_workload):
    recovery = Recovery(tiny_workload, RecoveryConfig(batch_size=64))
    plan = Plan({name: LayerChoice(32, 0.5) for name in ("stem.conv", "down1.conv", "down2.conv", "fc1")})
    data = tiny_workload.validation

    def accuracy(model):
        with torch.no_grad():
            return tiny_workload.metric(model(data.inputs).numpy(), data.labels.numpy())

    assert accuracy(recovery.recovered(plan, steps=60)) > accuracy(recovery.pruned(plan))
