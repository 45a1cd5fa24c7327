"""CPU through OpenVINO: NNCF INT8 post-training quantization, INT4/INT8 weight compression, FP32 exclusions.

Layers are found through the ONNX export (weight initializer -> node name); `ov.convert_model` names each
op after its ONNX node (`/features/features.0/Conv/WithoutBiases`), and NNCF keeps op names. What each
layer really executes at is read back from the compiled CPU graph.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from torch import nn

from autotune.errors import TargetError
from autotune.layers import out_channels
from autotune.plan import HALF_PRECISION_BITS, Plan
from autotune.progress import third_party_output_hidden
from autotune.targets.base import Artifact, BuildContext, Target
from autotune.targets.export import export_onnx
from autotune.workloads.io import Inputs, batch_size, flatten, input_names, iter_batches, take

WEIGHT_OPS = {"Convolution": 1, "GroupConvolution": 1, "MatMul": 1, "Gather": 0}
# Ops NNCF puts between a weight constant and its consumer.
WEIGHT_PATH = {"Convert", "Reshape", "Transpose", "Unsqueeze", "Squeeze", "FakeQuantize", "FakeConvert", "Subtract", "Multiply"}
RUNTIME_COMPUTE = {"Convolution", "Deconvolution", "FullyConnected", "MatMul", "Gather"}
REALISED = {32: {"f32"}, 16: {"bf16", "f16"}, 8: {"u8", "i8"}, 4: {"i4", "u4"}}
FLOAT_PRECISION_KEY = "autotune_float_precision"  # rt_info of the IR: the precision hint its float layers need


def _weight_constant(op):
    """The Constant feeding an op's weight input, or None when the input is an activation."""
    port = WEIGHT_OPS.get(op.get_type_name(), 1)
    value = op.input_value(port)
    for _ in range(12):
        node = value.get_node()
        kind = node.get_type_name()
        if kind == "Constant":
            return node
        if kind not in WEIGHT_PATH:
            return None
        value = node.input_value(0)
    return None


def layer_ops(ov_model, node_layers: dict[str, str]) -> dict[str, list]:
    """Layer -> its weighted ops, by the ONNX node each op was converted from."""
    found: dict[str, list] = {}
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() not in WEIGHT_OPS or _weight_constant(op) is None:
            continue
        layer = node_layers.get(op.get_friendly_name().removesuffix("/WithoutBiases"))
        if layer is not None:
            found.setdefault(layer, []).append(op)
    return found


class OpenVINOTarget(Target):
    backend = "openvino"

    @classmethod
    def check_options(cls, fields) -> None:
        fields.number("int4_group_size", -1, integer=True)
        fields.get("int4_mode", str, "int4_sym")
        fields.reject_unknown()

    @classmethod
    def native_half(cls, options: dict) -> tuple[str | None, str]:
        try:
            import openvino as ov
        except ImportError:  # a spec naming this target loads on a machine without the runtime (it cannot build)
            return None, "openvino is not installed"

        capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        for capability, half in (("BF16", "bf16"), ("FP16", "f16")):
            if capability in capabilities:
                return half, ""
        return None, f"the OpenVINO CPU plugin lists {list(capabilities)} (BF16 needs AMX or AVX512-BF16)"

    def runtime_float_default(self) -> str | None:
        import openvino as ov

        return _precision_label(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))

    def _config(self, float_precision: str = "f32") -> dict:
        return {
            "INFERENCE_NUM_THREADS": self.spec.threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            # Never the runtime's silent default (bf16 on AMX CPUs): the plan says which float layers run at.
            "INFERENCE_PRECISION_HINT": float_precision,
        }

    def build(self, model: nn.Module, plan: Plan, context: BuildContext, directory: Path) -> Artifact:
        import nncf
        import openvino as ov

        logging.getLogger("nncf").setLevel(logging.ERROR)
        layers = context.layers
        self.check_plan(plan, layers)
        directory.mkdir(parents=True, exist_ok=True)
        exported = export_onnx(model, context.io, context.calibration, layers, directory / "model.onnx")
        ov_model = ov.convert_model(str(exported.path))
        ops = layer_ops(ov_model, exported.layer_of_node)
        missing = [name for name in layers.layers if name not in ops]
        if missing:
            raise TargetError(
                f"target {self.name!r}: cannot find layer(s) {missing} in the OpenVINO model; found {sorted(ops)}"
            )
        bits = {name: plan.choice(name).bits for name in layers.layers}
        kinds = layers.kinds
        names = {layer: [op.get_friendly_name() for op in found] for layer, found in ops.items()}

        def others(selected) -> nncf.IgnoredScope | None:
            ignored = [n for layer in layers.layers if not selected(layer) for n in names[layer]]
            return nncf.IgnoredScope(names=ignored) if ignored else None

        with third_party_output_hidden():
            ov_model = self._compress(ov_model, context, bits, kinds, others, names)
        # The precision hint applies to the whole model (check_plan refuses mixed float plans); it travels in the IR.
        float_precision = self.spec.half if HALF_PRECISION_BITS in bits.values() else "f32"
        ov_model.set_rt_info(float_precision, FLOAT_PRECISION_KEY)
        xml_path = directory / "model.xml"
        ov.save_model(ov_model, str(xml_path), compress_to_fp16=False)
        exported.path.unlink()
        realised = self._verify(xml_path, names, bits)
        modules = dict(model.named_modules())
        return Artifact(
            target=self.name,
            directory=directory,
            files=(xml_path, xml_path.with_suffix(".bin")),
            plan=plan,
            realised_precision=realised,
            channels={name: out_channels(modules[name]) for name in layers.layers},
            io=context.io,
        )

    def _compress(
        self, ov_model, context: BuildContext, bits: dict[str, int], kinds: dict[str, str], others, names: dict
    ):
        """NNCF static INT8 for conv/linear layers, INT8 tables for embeddings, INT4 weights."""
        import nncf

        layers = context.layers

        def static_int8(layer: str) -> bool:
            return bits[layer] == 8 and kinds[layer] != "embedding"

        quantized = any(static_int8(layer) for layer in layers.layers)
        if quantized:
            samples = [take(context.calibration, slice(i, i + 1)) for i in range(batch_size(context.calibration))]
            ov_model = nncf.quantize(
                ov_model,
                nncf.Dataset(samples, context.io.feed),
                subset_size=len(samples),
                ignored_scope=others(static_int8),
                model_type=nncf.ModelType.TRANSFORMER if "embedding" in kinds.values() else None,
                # Bias correction only shifts biases: 0.46 s of a 3.45 s build of fashion-cnn-tiny on an AMD EPYC.
                advanced_parameters=nncf.AdvancedQuantizationParameters(disable_bias_correction=context.timing_only),
            )
        tables = [layer for layer, kind in kinds.items() if kind == "embedding" and bits[layer] == 8]
        embeddings = [n for layer in tables for n in names[layer]]
        if embeddings and quantized:
            compress_embedding_tables(ov_model, embeddings)
        elif embeddings:
            ov_model = nncf.compress_weights(
                ov_model,
                mode=nncf.CompressWeightsMode.INT8_ASYM,
                ignored_scope=others(lambda layer: bits[layer] == 8 and kinds[layer] == "embedding"),
            )
        if any(b == 4 for b in bits.values()):
            mode = getattr(nncf.CompressWeightsMode, self.spec.options.get("int4_mode", "int4_sym").upper())
            ov_model = nncf.compress_weights(
                ov_model,
                mode=mode,
                ratio=1.0,
                group_size=self.spec.options.get("int4_group_size", -1),
                all_layers=True,
                ignored_scope=others(lambda layer: bits[layer] == 4),
            )
        return ov_model

    def _compile(self, xml_path: Path, batch: Inputs | None = None):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(xml_path))
        if batch is not None:  # static shapes for timing: the CPU plugin is faster without dynamic dims
            model.reshape({name: ov.PartialShape(list(value.shape)) for name, value in _feed_shapes(batch).items()})
        return core.compile_model(model, "CPU", self._config(float_precision(model)))

    def _verify(self, xml_path: Path, names: dict[str, list[str]], bits: dict[str, int]) -> dict[str, str]:
        """Each layer's execution precision in the compiled runtime graph, checked against the plan.

        The CPU plugin fuses and renames nodes: a layer's runtime node is the compute node whose original
        names include the op's name (or its Gemm base, or `<op>/...`), else the one reading the op's
        weight constant (kept by name).
        """
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(xml_path))
        compiled = core.compile_model(model, "CPU", self._config(float_precision(model)))
        ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
        runtime = []
        for node in compiled.get_runtime_model().get_ordered_ops():
            info = node.get_rt_info()
            if "layerType" not in info or info["layerType"].astype(str) not in RUNTIME_COMPUTE:
                continue
            originals = [n for n in info["originalLayersNames"].astype(str).split(",") if n]
            inputs = {node.input_value(i).get_node().get_friendly_name() for i in range(node.get_input_size())}
            runtime.append((originals, inputs, info["runtimePrecision"].astype(str).lower()))
        realised = {}
        for layer, op_names in names.items():
            precisions = []
            for op_name in op_names:
                keys = _runtime_keys(ops[op_name])
                found = [p for originals, _, p in runtime if any(_names_op(n, keys) for n in originals)]
                if not found:
                    constant = _weight_constant(ops[op_name])
                    found = [p for _, inputs, p in runtime if constant is not None and constant.get_friendly_name() in inputs]
                precisions.extend(found[:1] or ["not found"])
            if not precisions or any(p not in REALISED[bits[layer]] for p in precisions):
                raise TargetError(
                    f"target {self.name!r}: layer {layer!r} was planned at {bits[layer]} bits "
                    f"but the compiled model runs it at {precisions or 'no precision (layer not found)'}"
                )
            realised[layer] = precisions[0]
        return realised

    def predict(self, artifact: Artifact, inputs: Inputs, batch_size: int = 256) -> np.ndarray:
        compiled = self._compile(artifact.files[0])
        request = compiled.create_infer_request()
        outputs = []
        for part in iter_batches(inputs, batch_size):
            request.infer(artifact.io.feed(part))
            outputs.append(request.get_output_tensor(0).data.copy())
        return np.concatenate(outputs)

    def server(self, artifact: Artifact):
        request = self._compile(artifact.files[0]).create_infer_request()

        def answer(inputs: Inputs) -> np.ndarray:
            request.infer(artifact.io.feed(inputs))
            return request.get_output_tensor(0).data.copy()

        return answer

    def runner(self, artifact: Artifact, batch: Inputs):
        feed = artifact.io.feed(batch)
        request = self._compile(artifact.files[0], batch).create_infer_request()
        return lambda: request.infer(feed)


def float_precision(ov_model) -> str:
    """The precision hint an IR was built for (IRs built before 16-bit plans existed: f32)."""
    if ov_model.has_rt_info(FLOAT_PRECISION_KEY):
        return ov_model.get_rt_info(FLOAT_PRECISION_KEY).astype(str)
    return "f32"


def _precision_label(element_type) -> str:
    return element_type.get_type_name()  # "f32", "bf16", "f16"


def compress_embedding_tables(ov_model, gather_names: list[str]) -> None:
    """Store the tables of the named Gather ops as u8 with a scale and zero point per embedding dimension (column),
    for a model that also has static INT8 layers.

    NNCF's INT8 weight compression scales each row, which the CPU plugin runs compressed (GatherCompressed) only in a
    model without static INT8 layers. With them, its low-precision transformations take over the table's
    dequantization, cannot move a per-row scale past the Gather, and fold the table back to f32. A per-column scale
    moves behind the Gather, which then reads u8. (Not for a model without static INT8 layers: GatherCompressed
    reads per-row scales, and a per-column one there corrupts memory at inference.)
    """
    from openvino import opset13 as ops

    gathers = {op.get_friendly_name(): op for op in ov_model.get_ordered_ops()}
    for name in gather_names:
        gather = gathers[name]
        table = gather.input_value(0).get_node()
        if table.get_type_name() != "Constant":
            raise TargetError(f"embedding {name!r}: its table is computed by {table.get_type_name()}, not a constant")
        weights = table.get_data().astype(np.float32)
        low, high = weights.min(axis=0, keepdims=True), weights.max(axis=0, keepdims=True)
        scale = np.maximum((high - low) / 255.0, np.finfo(np.float32).tiny)
        zero_point = np.round(-low / scale)
        quantized = ops.constant(np.clip(np.round(weights / scale) + zero_point, 0, 255).astype(np.uint8))
        quantized.set_friendly_name(table.get_friendly_name())  # the parameter's name, as before
        dequantized = ops.multiply(
            ops.subtract(ops.convert(quantized, "f32"), ops.constant(zero_point.astype(np.float32))),
            ops.constant(scale.astype(np.float32)),
        )
        gather.input(0).replace_source_output(dequantized.output(0))


def _runtime_keys(op) -> set[str]:
    """Names a runtime node may list for this op: its own, its Gemm base name, its bias Add's name."""
    name = op.get_friendly_name()
    keys = {name, name.removesuffix("/WithoutBiases")}
    for target in op.output(0).get_target_inputs():
        consumer = target.get_node()
        if consumer.get_type_name() == "Add":
            keys.add(consumer.get_friendly_name())
    return keys


def _names_op(original: str, keys: set[str]) -> bool:
    return original in keys or any(original.startswith(key + "/") for key in keys)


def _feed_shapes(batch: Inputs) -> dict:
    return dict(zip(input_names(batch), flatten(batch), strict=True))
