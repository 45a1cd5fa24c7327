"""CPU through ONNX Runtime: static INT8 (QDQ) with calibration data, 4-bit MatMulNBits weights, FP32 exclusions."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from torch import nn

from autotune.errors import TargetError
from autotune.layers import out_channels
from autotune.plan import Plan
from autotune.targets.base import Artifact, BuildContext, Target
from autotune.targets.export import WEIGHT_INPUT, export_onnx, gemm_to_matmul, locate_layers
from autotune.workloads.io import Inputs, ModelIO, iter_batches


class CalibrationReader:
    """Feeds calibration samples to onnxruntime's static quantizer one at a time."""

    def __init__(self, calibration: Inputs, io: ModelIO) -> None:
        self._samples = iter([io.feed(part) for part in iter_batches(calibration, 1)])

    def get_next(self):
        return next(self._samples, None)


class OnnxRuntimeTarget(Target):
    backend = "onnxruntime"

    @classmethod
    def check_options(cls, fields) -> None:
        fields.number("int4_block_size", 32, 16, integer=True)
        value = fields.get("int8_reduce_range", (bool, str), "auto", 'true, false or "auto"')
        if value not in (True, False, "auto"):
            raise fields.error("int8_reduce_range", f'{value!r}: expected true, false or "auto"')
        fields.reject_unknown()

    def int8_reduce_range(self) -> tuple[bool, str]:
        """Whether INT8 weights keep 7 bits, and why. ONNX Runtime's x86 kernels multiply u8 activations by s8 weights
        in 16-bit sums where the CPU lacks VNNI, and those sums saturate: fashion-cnn's uniform INT8 scored 90.52%
        there (FP32 91.51%), 91.49% with 7-bit weights (AMD EPYC, AVX2 only). "auto" reduces only on such CPUs."""
        value = self.spec.options.get("int8_reduce_range", "auto")
        if value != "auto":
            return value, "set in the hardware file"
        return x86_without_vnni()

    def resolved_options(self) -> dict:
        return {**self.spec.options, "int8_reduce_range": self.int8_reduce_range()[0]}

    def _session(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.spec.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        # That optimizer quantizes a float layer whose neighbours are quantized: a 32-bit layer must stay float.
        return ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=["WeightBiasQuantization"]
        )

    def build(self, model: nn.Module, plan: Plan, context: BuildContext, directory: Path) -> Artifact:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        from onnxruntime.quantization.shape_inference import quant_pre_process

        logging.getLogger("onnxruntime").setLevel(logging.ERROR)
        layers = context.layers
        self.check_plan(plan, layers)
        directory.mkdir(parents=True, exist_ok=True)
        bits = {name: plan.choice(name).bits for name in layers.layers}
        transformer = "embedding" in layers.kinds.values()  # as the OpenVINO target decides
        exported = export_onnx(model, context.io, context.calibration, layers, directory / "float.onnx")
        path = exported.path
        # The quantizer's recommended pre-processing; graph optimisation is skipped so node names survive.
        quant_pre_process(str(path), str(path), skip_optimization=True, skip_symbolic_shape=True)
        graph = onnx.load(str(path))
        nodes = locate_layers(graph, layers, "ONNX")
        four_bit = [name for name, b in bits.items() if b == 4]
        gemms = [n for name in four_bit for n in nodes[name] if _op_type(graph, n) == "Gemm"]
        if gemms:
            gemm_to_matmul(graph, gemms)
            onnx.save(graph, str(path))
            nodes = locate_layers(graph, layers, "ONNX")
        current = path
        if any(b == 8 for b in bits.values()):
            # A transformer is quantized at its planned layers only: by default the quantizer also puts QDQ on
            # LayerNormalization, Where and the attention's activation x activation MatMuls, whose MinMax ranges
            # (outlier hidden dimensions, masked scores) wreck the output (MiniLM: Lee 0.34 instead of 0.64).
            # Nor are a MatMul's outputs re-quantized before the bias add: that rounding alone took MiniLM's
            # agreement with FP32 from 0.986 to 0.924, and leaving it out was no slower (MatMulIntegerToFloat).
            eight_bit = [n for name, b in bits.items() if b == 8 for n in nodes[name]]
            quantized = directory / "int8.onnx"
            quantize_static(
                str(current),
                str(quantized),
                CalibrationReader(context.calibration, context.io),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=self.int8_reduce_range()[0],
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=[n for name, b in bits.items() if b != 8 for n in nodes[name]],
                nodes_to_quantize=eight_bit if transformer else None,
                extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]} if transformer else None,
            )
            current = quantized
        if four_bit:
            quantizer = MatMulNBitsQuantizer(
                onnx.load(str(current)),
                bits=4,
                block_size=self.spec.options.get("int4_block_size", 32),
                is_symmetric=True,
                nodes_to_include=[n for name in four_bit for n in nodes[name]],
                op_types_to_quantize=("__only_included__",),  # nodes_to_include widens the op filter otherwise
            )
            quantizer.process()
            compressed = directory / "int4.onnx"
            quantizer.model.save_model_to_file(str(compressed), use_external_data_format=False)
            current = compressed
        final = directory / "model.onnx"
        current.replace(final)
        for leftover in directory.glob("*.onnx"):
            if leftover != final:
                leftover.unlink()
        realised = self._verify(onnx.load(str(final)), layers, bits)
        modules = dict(model.named_modules())
        channels = {name: out_channels(modules[name]) for name in layers.layers}
        return Artifact(self.name, directory, (final,), plan, realised, channels, context.io)

    def _verify(self, graph: onnx.ModelProto, layers, bits: dict[str, int]) -> dict[str, str]:
        """What each layer's nodes became: 4-bit MatMulNBits, a QDQ pair with INT8 weights, or plain f32."""
        producers = {out: node for node in graph.graph.node for out in node.output}
        initializers = {init.name: init for init in graph.graph.initializer}
        by_name = {node.name: node for node in graph.graph.node}
        realised = {}
        located = locate_layers(graph, layers, "quantized ONNX")
        for layer, node_name in ((layer, name) for layer, names in located.items() for name in names):
            node, planned = by_name[node_name], bits[layer]
            if node.op_type in ("MatMulNBits", "GatherBlockQuantized"):
                # GatherBlockQuantized may leave out `bits`: its schema's default is 4.
                found = f"int{next((a.i for a in node.attribute if a.name == 'bits'), 4)}"
            else:
                weight_port = WEIGHT_INPUT.get(node.op_type, 1)
                weight = producers.get(node.input[weight_port])
                activation = producers.get(node.input[1 - weight_port])
                weight_int8 = (
                    weight is not None
                    and weight.op_type == "DequantizeLinear"
                    and weight.input[0] in initializers
                    and initializers[weight.input[0]].data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
                )
                # A Gather's other input is token indices, never quantized: its weight alone says int8.
                activation_quantized = node.op_type == "Gather" or (
                    activation is not None and activation.op_type == "DequantizeLinear"
                )
                found = "int8" if weight_int8 and activation_quantized else "f32" if not weight_int8 else "int8-weights"
            expected = {32: "f32", 8: "int8", 4: "int4"}[planned]
            if found != expected:
                raise TargetError(
                    f"target {self.name!r}: layer {layer!r} was planned at {planned} bits but the built graph has {found}"
                )
            realised[layer] = found
        return realised

    def predict(self, artifact: Artifact, inputs: Inputs, batch_size: int = 256) -> np.ndarray:
        session = self._session(artifact.files[0])
        outputs = [session.run(None, artifact.io.feed(part))[0] for part in iter_batches(inputs, batch_size)]
        return np.concatenate(outputs)

    def server(self, artifact: Artifact):
        session = self._session(artifact.files[0])
        return lambda inputs: session.run(None, artifact.io.feed(inputs))[0]

    def runner(self, artifact: Artifact, batch: Inputs):
        session = self._session(artifact.files[0])
        feed = artifact.io.feed(batch)
        return lambda: session.run(None, feed)


VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # any of them sums u8 x s8 products in 32 bits


def x86_without_vnni() -> tuple[bool, str]:
    """True on an x86 CPU without VNNI (ONNX Runtime's u8 x s8 sums saturate there), and what was detected."""
    import torch

    flags = torch.cpu.get_capabilities()  # the CPU's feature flags, as torch's cpuinfo reads them
    if flags.get("architecture") not in ("x86_64", "x86"):
        return False, f"not an x86 CPU ({flags.get('architecture')}): no u8 x s8 saturation"
    found = [name for name in VNNI_FLAGS if flags.get(name)]
    if found:
        return False, f"this CPU has {found[0]}: INT8 weights keep 8 bits"
    return True, f"this x86 CPU has none of {list(VNNI_FLAGS)}: INT8 weights keep 7 bits"


def _op_type(graph: onnx.ModelProto, node_name: str) -> str:
    return next(node.op_type for node in graph.graph.node if node.name == node_name)
