"""The ONNX Runtime build: INT8 weights at 7 bits where the CPU lacks VNNI, as the hardware file and machine decide."""

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from autotune.errors import SpecError
from autotune.plan import LayerChoice, Plan
from autotune.spec import load_hardware
from autotune.targets import make_target
from autotune.targets.onnxruntime import x86_without_vnni


def target_with(reduce_range):
    spec = load_hardware("cpu-onnxruntime")
    return make_target(dataclasses.replace(spec, options={**spec.options, "int8_reduce_range": reduce_range}))


def int8_weight_extremes(path) -> list[int]:
    """The largest |quantized value| of each INT8 weight the graph dequantizes (its 8-bit integers, as stored)."""
    graph = onnx.load(str(path)).graph
    initializers = {init.name: init for init in graph.initializer}
    extremes = []
    for node in graph.node:
        stored = initializers.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if stored is not None and stored.data_type == onnx.TensorProto.INT8:
            extremes.append(int(np.abs(numpy_helper.to_array(stored).astype(np.int16)).max()))
    return extremes


def test_int8_weights_keep_seven_bits_where_asked_and_the_recipe_records_what_auto_resolved_to(tiny_context, tmp_path):
    """reduce_range=True stores every INT8 weight within [-64, 64]; 8-bit weights reach 127 (per-channel MinMax puts
    each channel's largest weight at the end of the range). "auto" resolves from this machine's CPU flags."""
    plan = Plan({name: LayerChoice(8) for name in tiny_context.layer_kinds})
    model = tiny_context.recovery.recovered(plan, steps=0)
    extremes = {}
    for setting in (True, False):
        target = target_with(setting)
        artifact = target.build(model, plan, tiny_context.build_context(), tmp_path / str(setting))
        assert set(artifact.realised_precision.values()) == {"int8"}
        extremes[setting] = int8_weight_extremes(artifact.files[0])
        assert target.resolved_options()["int8_reduce_range"] is setting
    assert extremes[True] and max(extremes[True]) <= 64
    assert extremes[False] and max(extremes[False]) == 127
    auto = target_with("auto")
    reduced, why = x86_without_vnni()
    assert auto.int8_reduce_range() == (reduced, why) and auto.resolved_options()["int8_reduce_range"] is reduced
    assert load_hardware("cpu-onnxruntime").options["int8_reduce_range"] == "auto"


@pytest.mark.parametrize(
    ("value", "message"),
    [('"sometimes"', r"options.int8_reduce_range: 'sometimes': expected true, false or \"auto\""),
     ("7", r"options.int8_reduce_range: 7 is not true, false or \"auto\"")],
)
def test_a_bad_reduce_range_names_the_file_and_field(catalogue, value, message):
    (catalogue / "hardware" / "h.toml").write_text(f'backend = "onnxruntime"\n[options]\nint8_reduce_range = {value}\n')
    with pytest.raises(SpecError, match=rf"h.toml: {message}"):
        load_hardware("h")
