"""One contract for every target in hardware/ and every registered proxy: adding one gets these tests.

Targets: builds honour the plan, an FP32 plan reproduces the FP32 model, an INT8 plan keeps a sane
accuracy, measurement gives positive finite numbers, bad plans raise clear errors, builds are
deterministic. A target that cannot run here (no GPU) is exercised through its CPU build where it
offers one, and its measurement is skipped with the reason.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from autotune.errors import AutotuneError, PlanError, TargetError
from autotune.plan import LayerChoice, Plan
from autotune.proxies import ProxyContext, registered_proxies
from autotune.spec import list_entries, load_hardware, load_proxy_recipe
from autotune.targets import make_target
from autotune.workloads.io import take

HARDWARE = list_entries("hardware")
PROXIES = sorted(registered_proxies())


@pytest.fixture(scope="module", params=HARDWARE)
def target(request):
    """The target as configured, or its CPU build when the configured device is absent (marked)."""
    spec = load_hardware(request.param)
    built = make_target(spec)
    ok, why = built.available()
    if not ok:
        fallback = built.cpu_variant()
        if fallback is None:
            pytest.skip(f"{request.param}: {why}")
        fallback.unavailable_reason = why
        return fallback
    built.unavailable_reason = None
    return built


def plan_for(target, context, bits: int, prune: dict[str, float] | None = None) -> Plan:
    """Each layer at `bits` where the target realises it on that layer kind, else FP32."""
    choices = {}
    for name, kind in context.layer_kinds.items():
        chosen = bits if target.spec.supports(kind, bits) else 32
        choices[name] = LayerChoice(chosen, (prune or {}).get(name, 0.0))
    return Plan(choices)


def accuracy_of(outputs: np.ndarray, context) -> float:
    return context.workload.metric(outputs, context.workload.validation.labels_numpy())


def torch_outputs(context, model, inputs) -> np.ndarray:
    """The selected output of the torch model, read the way the workload reads it."""
    return context.workload.io.run_batched(model, inputs).numpy()


def test_build_honours_the_plan(target, tiny_context, tmp_path):
    lowest = min(b for bits in target.spec.weight_bits.values() for b in bits)
    plan = plan_for(target, tiny_context, lowest, prune={"block1.conv1": 0.5})
    plan = Plan(dict(plan.layers) | {"head": LayerChoice(32)})
    model = tiny_context.recovery.recovered(plan, steps=0)
    artifact = target.build(model, plan, tiny_context.build_context(), tmp_path)
    assert set(artifact.realised_precision) == set(tiny_context.layer_kinds)
    for name, precision in artifact.realised_precision.items():
        assert (precision == "f32") == (plan.choice(name).bits == 32), (name, precision, plan.choice(name))
    teacher_channels = tiny_context.recovery.teacher.block1.conv1.out_channels
    assert artifact.channels["block1.conv1"] < teacher_channels
    assert all(path.is_file() for path in artifact.files) and artifact.size_bytes > 0


def test_fp32_plan_reproduces_fp32_outputs(target, tiny_context, tmp_path):
    model = tiny_context.recovery.teacher
    artifact = target.build(model, tiny_context.reference_plans()["fp32"], tiny_context.build_context(), tmp_path)
    inputs = take(tiny_context.workload.validation.inputs, slice(0, 256))
    expected = torch_outputs(tiny_context, model, inputs)
    np.testing.assert_allclose(target.predict(artifact, inputs), expected, rtol=1e-3, atol=1e-3)


def test_int8_plan_keeps_a_sane_accuracy(target, tiny_context, tmp_path):
    model = tiny_context.recovery.teacher
    fp32 = accuracy_of(torch_outputs(tiny_context, model, tiny_context.workload.validation.inputs), tiny_context)
    artifact = target.build(model, plan_for(target, tiny_context, 8), tiny_context.build_context(), tmp_path)
    accuracy = target.evaluate(artifact, tiny_context.workload.validation, tiny_context.workload.metric)
    assert fp32 - accuracy < 0.03, (fp32, accuracy)


def test_builds_are_deterministic(target, tiny_context, tmp_path):
    plan = plan_for(target, tiny_context, 8)
    model = tiny_context.recovery.teacher
    inputs = tiny_context.workload.validation.inputs[:64]
    first = target.predict(target.build(model, plan, tiny_context.build_context(), tmp_path / "a"), inputs)
    second = target.predict(target.build(model, plan, tiny_context.build_context(), tmp_path / "b"), inputs)
    np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-5)


def test_measurement_is_positive_and_finite(target, tiny_context, tmp_path):
    if target.unavailable_reason:
        pytest.skip(f"{target.name}: measurement needs the configured device: {target.unavailable_reason}")
    artifact = target.build(
        tiny_context.recovery.teacher, plan_for(target, tiny_context, 8), tiny_context.build_context(), tmp_path
    )
    measurement = target.measure(artifact, tiny_context.workload.example_input)
    values = (
        measurement.latency_p50_ms,
        measurement.latency_p95_ms,
        measurement.batch_latency_ms,
        measurement.throughput_per_s,
        measurement.size_mb,
    )
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert measurement.latency_p95_ms >= measurement.latency_p50_ms
    assert measurement.latency_spread >= 0 and measurement.latency_repeats >= target.spec.measure.min_repeats


def test_bad_plans_raise_clear_errors(target, tiny_context, tmp_path):
    model = tiny_context.recovery.teacher
    with pytest.raises(PlanError, match=r"unknown layer\(s\) \['encoder.attention'\]"):
        target.build(model, Plan({"encoder.attention": LayerChoice(8)}), tiny_context.build_context(), tmp_path)
    impossible = next(
        (
            (name, bits)
            for name, kind in tiny_context.layer_kinds.items()
            for bits in (4, 8)
            if not target.spec.supports(kind, bits)
        ),
        None,
    )
    if impossible:
        name, bits = impossible
        with pytest.raises(TargetError, match=f"cannot run .* layer '{name}' at {bits} bits"):
            target.build(model, Plan({name: LayerChoice(bits)}), tiny_context.build_context(), tmp_path)


def test_every_hardware_file_names_a_registered_backend():
    assert {"cpu-openvino", "cpu-onnxruntime", "gpu-torchao"} <= set(HARDWARE)


# ---------------------------------------------------------------- proxies


@pytest.fixture(scope="module")
def proxy_contexts(tiny_context):
    from autotune.compress import fake_quantize_weights

    reference = tiny_context.recovery.teacher
    io = tiny_context.workload.io
    reference_outputs = io.run_batched(reference, tiny_context.calibration)

    def context_for(plan: Plan) -> ProxyContext:
        recovered = tiny_context.recovery.recovered(plan, 0)
        compressed = fake_quantize_weights(tiny_context.recovery.recovered(plan, 0), plan)
        return ProxyContext(
            plan,
            compressed,
            recovered,
            reference,
            tiny_context.calibration,
            reference_outputs,
            io=io,
            channel_multiple=tiny_context.recovery.config.channel_multiple,
            pruner=tiny_context.recovery.pruner,
            build=tiny_context.build_context(),
            prune_ratios=tiny_context.space.prune_ratios(),  # as the scorer passes them
            layer_bits=tiny_context.space.layer_bits(),
        )

    return context_for


def make_proxy(name: str):
    """Each proxy as the built-in default recipe configures it (latency probes timed in rounds: with one timing each,
    a loaded CI machine once estimated the tiny model's pruned INT8 at 3x its FP32, 0.29 against 0.10 ms)."""
    cls = registered_proxies()[name]
    settings = dict(load_proxy_recipe("default").settings.get(name, {}))
    if cls.per_target:
        settings["target"] = load_hardware("cpu-openvino")
    return cls(settings)


@pytest.mark.parametrize("name", PROXIES)
def test_proxy_is_finite_and_deterministic(name, tiny_context, proxy_contexts):
    proxy = make_proxy(name)
    plan = tiny_context.space.uniform_plan(8, 0.3)
    first, second = proxy(proxy_contexts(plan)), proxy(proxy_contexts(plan))
    assert math.isfinite(first) and first >= 0
    assert first == pytest.approx(second, rel=1e-6)


@pytest.mark.parametrize("name", PROXIES)
def test_proxy_prefers_the_uncompressed_model(name, tiny_context, proxy_contexts):
    """Compression never looks worse than doing nothing on cost proxies, nor better on fidelity proxies."""
    proxy = make_proxy(name)
    fp32 = proxy(proxy_contexts(tiny_context.reference_plans()["fp32"]))
    compressed = proxy(proxy_contexts(tiny_context.space.uniform_plan(8, 0.5)))
    assert compressed != fp32
    if name in ("model_size", "latency_macs", "latency_measured"):
        assert compressed < fp32
    else:
        assert compressed > fp32


@pytest.mark.parametrize("name", PROXIES)
def test_proxy_rejects_a_plan_for_another_model(name, tiny_context, proxy_contexts):
    context = proxy_contexts(tiny_context.reference_plans()["fp32"])
    context.plan = Plan({"encoder.attention": LayerChoice(8)})
    with pytest.raises(AutotuneError, match="unknown layer"):
        make_proxy(name)(context)


def test_every_proxy_module_is_registered():
    modules = {p.stem for p in (Path(__file__).parent.parent / "autotune" / "proxies").glob("*.py")} - {
        "__init__",
        "base",
    }
    assert modules <= {registered_proxies()[n].__module__.rsplit(".", 1)[1] for n in PROXIES}
