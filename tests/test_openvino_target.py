"""The OpenVINO build honours the plan: precisions read back from the compiled model, channels from the IR."""

import numpy as np
import openvino as ov
import pytest

from autotune.errors import TargetError
from autotune.plan import LayerChoice, Plan
from autotune.spec import load_hardware
from autotune.targets import make_target
from autotune.targets.export import export_onnx
from autotune.targets.openvino import layer_ops
from autotune.workloads.io import take


@pytest.fixture(scope="module")
def target():
    return make_target(load_hardware("cpu-openvino"))


def conv_out_channels(xml_path, model, context, folder):
    """Output channels of each conv layer as stored in the IR, its ops found through the ONNX export map."""
    build = context.build_context()
    exported = export_onnx(model, build.io, build.calibration, build.layers, folder / "map.onnx")
    ops = layer_ops(ov.Core().read_model(str(xml_path)), exported.layer_of_node)
    return {
        layer: {op.get_output_partial_shape(0)[1].get_length() for op in found}
        for layer, found in ops.items()
        if all(op.get_type_name() == "Convolution" for op in found)
    }


def test_mixed_plan_is_realised_as_planned(tiny_context, target, tmp_path):
    plan = Plan(
        {name: LayerChoice(8) for name in tiny_context.layer_kinds}
        | {"block1.conv1": LayerChoice(32, 0.5), "fc1": LayerChoice(4), "head": LayerChoice(32)}
    )
    model = tiny_context.recovery.recovered(plan, steps=0)
    artifact = target.build(model, plan, tiny_context.build_context(), tmp_path)
    assert artifact.realised_precision["block1.conv1"] == "f32"
    assert artifact.realised_precision["head"] == "f32"
    assert artifact.realised_precision["fc1"] in ("i4", "u4")
    assert artifact.realised_precision["stem.conv"] in ("u8", "i8")
    original = tiny_context.recovery.teacher.block1.conv1.out_channels
    assert artifact.channels["block1.conv1"] == original // 2
    assert conv_out_channels(artifact.files[0], model, tiny_context, tmp_path)["block1.conv1"] == {original // 2}
    assert all(path.is_file() for path in artifact.files) and artifact.size_bytes > 0


def runtime_graph(target, artifact) -> list[tuple[str, str]]:
    """The compiled model's nodes as the CPU plugin runs them: kernel type and precision, in order."""
    compiled = target._compile(artifact.files[0])
    return [
        (info["layerType"].astype(str), info["runtimePrecision"].astype(str))
        for info in (node.get_rt_info() for node in compiled.get_runtime_model().get_ordered_ops())
    ]


def test_a_build_only_timed_compiles_to_the_same_runtime_graph(tiny_context, target, tmp_path):
    """Latency tables build without bias correction: the kernels must not change."""
    from autotune.latency_table import timing_context

    group = next(g for g in tiny_context.recovery.pruner.prunable if len(g.layers) > 1)
    plan = Plan(
        {name: LayerChoice(8) for name in tiny_context.layer_kinds}
        | {name: LayerChoice(8, 0.5) for name in group.layers}
        | {"fc1": LayerChoice(4), "head": LayerChoice(32)}
    )
    model = tiny_context.recovery.pruner.prune(plan, tiny_context.recovery.config.channel_multiple)
    full = target.build(model, plan, tiny_context.build_context(), tmp_path / "full")
    timed = target.build(model, plan, timing_context(tiny_context.build_context()), tmp_path / "timed")
    assert timed.realised_precision == full.realised_precision and timed.channels == full.channels
    assert runtime_graph(target, timed) == runtime_graph(target, full)
    # The build did skip a step: bias correction moved some values of the full build.
    assert full.files[1].read_bytes() != timed.files[1].read_bytes()


def test_fp32_plan_reproduces_torch_outputs(tiny_context, target, tmp_path):
    plan = tiny_context.reference_plans()["fp32"]
    model = tiny_context.recovery.teacher
    artifact = target.build(model, plan, tiny_context.build_context(), tmp_path)
    assert set(artifact.realised_precision.values()) == {"f32"}
    inputs = take(tiny_context.workload.validation.inputs, slice(0, 200))
    expected = tiny_context.workload.io.run_batched(model, inputs).numpy()
    np.testing.assert_allclose(target.predict(artifact, inputs), expected, rtol=1e-3, atol=1e-4)


def test_int8_accuracy_and_measurement_are_sane(tiny_context, target, tmp_path):
    workload = tiny_context.workload
    fp32_model = tiny_context.recovery.teacher
    int8 = target.build(fp32_model, tiny_context.reference_plans()["int8"], tiny_context.build_context(), tmp_path)
    accuracy = target.evaluate(int8, workload.validation, workload.metric)
    fp32_accuracy = workload.metric(
        workload.io.run_batched(fp32_model, workload.validation.inputs).numpy(), workload.validation.labels_numpy()
    )
    assert abs(accuracy - fp32_accuracy) < 0.03
    measurement = target.measure(int8, workload.example_input)
    for value in (
        measurement.latency_p50_ms,
        measurement.latency_p95_ms,
        measurement.throughput_per_s,
        measurement.size_mb,
    ):
        assert np.isfinite(value) and value > 0
    assert measurement.latency_p95_ms >= measurement.latency_p50_ms
    assert measurement.latency_repeats >= target.spec.measure.min_repeats


def test_impossible_plans_are_refused(tiny_context, target, tmp_path):
    model = tiny_context.recovery.teacher
    with pytest.raises(TargetError, match="cannot run conv layer 'stem.conv' at 4 bits"):
        target.build(model, Plan({"stem.conv": LayerChoice(4)}), tiny_context.build_context(), tmp_path)
    with pytest.raises(Exception, match=r"unknown layer\(s\) \['encoder'\]"):
        target.build(model, Plan({"encoder": LayerChoice(8)}), tiny_context.build_context(), tmp_path)
