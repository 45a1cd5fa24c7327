"""Pruning, simulated quantization and cached recovery on the tiny real model."""

import copy

import torch

from autotune.compress import Recovery, RecoveryConfig, fake_quantize_weights
from autotune.layers import index_model, out_channels, output_layers
from autotune.plan import LayerChoice, Plan
from autotune.pruning import GroupPruner


def output_channels(model):
    """Output channels of every conv/linear layer, by qualified module name."""
    return {
        name: out_channels(module)
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))
    }


def test_layers_and_outputs_are_discovered(tiny_workload):
    model = tiny_workload.fp32_model()
    io, example = tiny_workload.io, tiny_workload.example_input
    layers = index_model(model, io, example).kinds
    assert len(layers) >= 6
    assert layers["fc1"] == "linear" and layers["stem.conv"] == "conv"
    assert output_layers(model, io, example) == {"head"}


def test_pruning_removes_channels_for_real_and_keeps_the_model_runnable(tiny_workload):
    model = tiny_workload.fp32_model()
    io, example = tiny_workload.io, tiny_workload.example_input
    before = output_channels(model)
    params_before = sum(p.numel() for p in model.parameters())
    plan = Plan({"block1.conv1": LayerChoice(32, 0.5), "fc1": LayerChoice(32, 0.25)})
    pruned = GroupPruner(model, io, example, index_model(model, io, example)).prune(plan)
    after = output_channels(pruned)
    assert after["block1.conv1"] == before["block1.conv1"] // 2
    assert after["fc1"] < before["fc1"]
    assert after["head"] == before["head"]
    assert sum(p.numel() for p in pruned.parameters()) < params_before
    assert io.run(pruned, example).shape == (1, 10)


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
    # down2.conv and block2.conv2 lose their channels together (one pruning group): one ratio for both.
    plan_a = Plan({"down2.conv": LayerChoice(8, 0.5), "block2.conv2": LayerChoice(8, 0.5)})
    plan_b = Plan(
        {"down2.conv": LayerChoice(32, 0.5), "block2.conv2": LayerChoice(4, 0.5), "fc1": LayerChoice(8)}
    )  # same pruning
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


def test_a_continued_recovery_trains_only_the_remaining_steps_on_the_later_batches(tiny_workload, workspace):
    """The full evaluation continues the re-score's recovery: recovering 10 steps after 5 runs 5 more optimiser steps on
    the batches of steps 5-9 (the teacher's answers for them are new), starts from the cached 5-step state, is cached
    apart from a fresh 10-step recovery and reproduces from scratch in a new process."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    plan = Plan({"down2.conv": LayerChoice(8, 0.5), "block2.conv2": LayerChoice(8, 0.5), "fc1": LayerChoice(8, 0.25)})
    steps = []
    handle = register_optimizer_step_post_hook(lambda *args: steps.append(1))
    try:
        recovery = Recovery(tiny_workload, RecoveryConfig(batch_size=64))
        earlier = recovery.recovered(plan, steps=5)
        assert len(steps) == 5 and len(recovery._answers.answers) == 5
        continued = recovery.recovered(plan, steps=10, after=5)
        assert len(steps) == 10 and len(recovery._answers.answers) == 10
        fresh = recovery.recovered(plan, steps=10)
        assert len(steps) == 20 and len(recovery._answers.answers) == 10
        assert recovery.recovered(plan, steps=5, after=5) is not None and len(steps) == 20  # after >= steps: the 5-step one
        again = Recovery(tiny_workload, RecoveryConfig(batch_size=64))
        again._recovered_state.clear()
        reproduced = again.recovered(plan, steps=10, after=5)
        assert len(steps) == 30  # the 5-step recovery, then the 5 continued steps
    finally:
        handle.remove()
    names = [n for n, v in continued.state_dict().items() if v.is_floating_point()]
    assert any(not torch.equal(continued.state_dict()[n], earlier.state_dict()[n]) for n in names)
    assert any(not torch.allclose(continued.state_dict()[n], fresh.state_dict()[n]) for n in names)
    for name in names:
        torch.testing.assert_close(reproduced.state_dict()[name], continued.state_dict()[name])


def test_teacher_answers_are_computed_once_and_change_no_weight(tiny_workload):
    """Every plan's distillation walks the same batches: the teacher runs once per step for the whole study, and the
    recovered weights equal those of a recovery that runs the teacher at every step."""
    plan = Plan({"down2.conv": LayerChoice(8, 0.5), "block2.conv2": LayerChoice(8, 0.5), "fc1": LayerChoice(8, 0.25)})

    def recover_twice(limit_bytes: int | None):
        recovery = Recovery(tiny_workload, RecoveryConfig(batch_size=64))
        calls = []
        teacher = recovery.teacher  # students are pruned copies of it and carry the hook too: count the teacher only
        teacher.register_forward_hook(lambda module, *args: calls.append(1) if module is teacher else None)
        ratios = recovery.pruner.group_ratios(plan)
        states = [recovery.recover(ratios, 6)]
        if limit_bytes is not None:  # a cap too small for one batch: the teacher runs at every step
            recovery._answers.limit_bytes = limit_bytes
            recovery._answers.answers.clear()
        states.append(recovery.recover({name: ratio * 0.5 for name, ratio in ratios.items()}, 6))
        return states, len(calls)

    shared, shared_calls = recover_twice(None)
    plain, plain_calls = recover_twice(0)
    # Batch-norm re-calibration runs the student, never the teacher; the 6 steps each ran it once.
    assert shared_calls == 6 and plain_calls == 12
    for state_shared, state_plain in zip(shared, plain, strict=True):
        for name, value in state_shared.items():
            assert torch.equal(value, state_plain[name]), name


def test_distillation_trains_convolutions_channels_last_to_the_same_weights(tiny_workload):
    """channels_last only makes it faster: a recovery in the default layout reaches the same weights up to float
    rounding, and the recovered state comes back in the default layout (exporters and the cache see plain tensors)."""
    plan = Plan({"down2.conv": LayerChoice(8, 0.5), "block2.conv2": LayerChoice(8, 0.5), "fc1": LayerChoice(8, 0.25)})
    recovery = Recovery(tiny_workload, RecoveryConfig(batch_size=64))
    ratios = recovery.pruner.group_ratios(plan)
    assert recovery.training_layout == torch.channels_last
    fast = recovery.recover(ratios, 6)
    recovery.training_layout = torch.contiguous_format  # what a model that cannot run channels_last gets
    plain = recovery.recover(ratios, 6)
    # AdamW moves a weight by about the learning rate per step whatever its gradient's size, so a rounding difference
    # in a near-zero gradient can move it that far: 6 steps at 1e-3 bound the difference.
    for name, value in fast.items():
        assert value.is_contiguous(), name
        torch.testing.assert_close(value, plain[name], rtol=1e-3, atol=6e-3)


def test_recovery_improves_a_pruned_model(tiny_workload):
    recovery = Recovery(tiny_workload, RecoveryConfig(batch_size=64))
    pruned_layers = ("stem.conv", "down1.conv", "block1.conv2", "down2.conv", "block2.conv2", "fc1")
    plan = Plan({name: LayerChoice(32, 0.5) for name in pruned_layers})
    data = tiny_workload.validation

    def accuracy(model):
        return tiny_workload.metric(tiny_workload.io.run_batched(model, data.inputs).numpy(), data.labels_numpy())

    assert accuracy(recovery.recovered(plan, steps=60)) > accuracy(recovery.pruned(plan))


def test_bf16_recovery_distils_in_bf16_and_is_cached_apart_from_f32(tiny_workload, workspace):
    """bf16 autocast changes the arithmetic, not the recipe's outcome: a different cache entry, different weights (kept in
    f32), and a recovered model about as accurate as the f32 one. The f32 identity is the one recorded before the
    setting existed, so earlier caches still match."""
    assert "precision" not in RecoveryConfig(batch_size=64).to_json()
    assert '"precision": "bf16"' in RecoveryConfig(batch_size=64, precision="bf16").to_json()
    assert RecoveryConfig(precision="bf16").to_json(distils=False) == RecoveryConfig().to_json()
    pruned_layers = ("stem.conv", "down1.conv", "block1.conv2", "down2.conv", "block2.conv2", "fc1")
    plan = Plan({name: LayerChoice(32, 0.5) for name in pruned_layers})
    data = tiny_workload.validation
    seen = []
    original_linear = torch.nn.functional.linear

    def spying_linear(x, weight, bias=None):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return original_linear(x, weight, bias)

    def accuracy(model):
        return tiny_workload.metric(tiny_workload.io.run_batched(model, data.inputs).numpy(), data.labels_numpy())

    def cache_entries():
        return len(list((workspace / "cache" / "recovery").rglob("output.pkl")))

    before, recovered = cache_entries(), {}
    for precision in ("f32", "bf16"):
        recovery = Recovery(tiny_workload, RecoveryConfig(batch_size=64, seed=7, precision=precision))
        seen.clear()
        torch.nn.functional.linear = spying_linear
        try:
            recovered[precision] = recovery.recovered(plan, steps=40)
        finally:
            torch.nn.functional.linear = original_linear
        assert set(seen) >= ({torch.bfloat16} if precision == "bf16" else {None})
        assert all(p.dtype == torch.float32 for p in recovered[precision].parameters())
    assert cache_entries() == before + 2
    assert not torch.equal(recovered["f32"].fc1.weight, recovered["bf16"].fc1.weight)
    unrecovered = accuracy(Recovery(tiny_workload, RecoveryConfig(batch_size=64)).pruned(plan))
    assert accuracy(recovered["bf16"]) > unrecovered
    assert abs(accuracy(recovered["bf16"]) - accuracy(recovered["f32"])) < 0.05


def test_batchnorm_from_the_scoring_batch_equals_recalibrating_on_it_then_scoring(tiny_workload):
    """One train-mode-BatchNorm pass gives the outputs of a model re-calibrated on that batch (to float
    rounding of the biased/unbiased variance), leaves it in eval mode with those statistics, and keeps
    every non-BatchNorm module in eval mode."""
    from autotune.compress import batchnorm_from_batches, recalibrate_batchnorm
    from autotune.workloads import LabelledData

    recovery = Recovery(tiny_workload, RecoveryConfig())
    plan = Plan({"block1.conv1": LayerChoice(8, 0.5)})
    batch = tiny_workload.calibration[:128]
    one_pass = recovery.pruned(plan)
    with batchnorm_from_batches(one_pass) as model:
        assert all(m.training == isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        with torch.no_grad():
            scored = model(batch)
    assert not any(m.training for m in one_pass.modules())
    two_pass = recovery.pruned(plan)
    recalibrate_batchnorm(two_pass, LabelledData(batch), RecoveryConfig(batch_size=128, recalibration_samples=128))
    with torch.no_grad():
        expected = two_pass(batch)
        assert torch.allclose(one_pass(batch), expected, atol=1e-5)  # same statistics afterwards
    assert torch.allclose(scored, expected, atol=2e-2, rtol=1e-2)
    assert (scored.argmax(1) == expected.argmax(1)).float().mean() > 0.97
    unrecalibrated = recovery.pruned(plan)
    with torch.no_grad():
        assert not torch.allclose(unrecalibrated(batch), expected, atol=2e-2, rtol=1e-2)


def test_batchnorm_recalibrated_channels_last_has_the_same_statistics_in_the_default_layout(tiny_workload):
    """Re-calibration runs in the training layout only for speed: the statistics match the default layout's to float
    rounding and the model comes back with contiguous weights (exporters and the cache see plain tensors)."""
    from autotune.compress import recalibrate_batchnorm

    recovery = Recovery(tiny_workload, RecoveryConfig())
    plan = Plan({"block1.conv1": LayerChoice(8, 0.5), "down2.conv": LayerChoice(8, 0.25), "block2.conv2": LayerChoice(8, 0.25)})
    config = RecoveryConfig(batch_size=128, recalibration_samples=512)
    plain, fast = recovery.pruned(plan), recovery.pruned(plan)
    recalibrate_batchnorm(plain, tiny_workload.recovery, config)
    recalibrate_batchnorm(fast, tiny_workload.recovery, config, torch.channels_last)
    unchanged = recovery.pruned(plan).state_dict()
    changed = [n for n, v in plain.state_dict().items() if n.endswith("running_mean") and not torch.equal(v, unchanged[n])]
    assert changed  # the statistics were re-estimated
    for name, value in fast.state_dict().items():
        assert value.is_contiguous(), name
        torch.testing.assert_close(value, plain.state_dict()[name], rtol=1e-4, atol=1e-5)


def test_simulated_int8_activations_round_the_inputs_of_the_named_layers_only():
    """Static INT8 as CPU runtimes run it: each named layer's input is rounded to 256 levels over its calibrated range
    (unsigned after a ReLU, symmetric where the input goes negative); other layers see exact inputs."""
    from autotune.compress import activation_ranges, quantize_activations
    from autotune.workloads.io import ModelIO

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    inputs = torch.randn(64, 4)
    io = ModelIO()
    ranges = activation_ranges(model, io, inputs, ["0", "2"])
    assert ranges["2"][0] == 0.0 and ranges["0"][0] < 0  # after the ReLU never negative; the raw input is
    seen = {}
    model[2].register_forward_pre_hook(lambda module, args: seen.__setitem__("2", args[0].clone()))
    quantized = quantize_activations(copy.deepcopy(model), ["2"], ranges)
    quantized[2].register_forward_pre_hook(lambda module, args: seen.__setitem__("q", args[0].clone()))
    with torch.no_grad():
        exact, rounded = model(inputs), quantized(inputs)
    step = ranges["2"][1] / 255
    assert not torch.equal(exact, rounded)
    levels = seen["q"] / step
    assert torch.allclose(levels, levels.round(), atol=1e-3) and (seen["q"] - seen["2"]).abs().max() <= step / 2 + 1e-6
