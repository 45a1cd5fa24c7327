"""CPU through ONNX Runtime: static INT8 (QDQ) with calibration data, 4-bit MatMulNBits weights, FP32 exclusions."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from autotune.compress import output_channels, prunable_layers
from autotune.errors import TargetError
from autotune.plan import Plan
from autotune.targets.base import Artifact, Target
from autotune.targets.export import export_onnx, gemm_to_matmul, match_layer_nodes, onnx_prefix

WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


def _weight_nodes(graph: onnx.ModelProto, layers, op_types: tuple[str, ...]) -> dict[str, str]:
    names = [node.name for node in graph.graph.node if node.op_type in op_types]
    return match_layer_nodes(layers, names, "ONNX")


class CalibrationReader:
    """Feeds calibration samples to onnxruntime's static quantizer one at a time."""

    def __init__(self, calibration: torch.Tensor) -> None:
        self._samples = iter([{"input": sample[None].numpy()} for sample in calibration])

    def get_next(self):
        return next(self._samples, None)


class OnnxRuntimeTarget(Target):
    backend = "onnxruntime"

    @classmethod
    def check_options(cls, fields) -> None:
        fields.number("int4_block_size", 32, 16, integer=True)
        fields.reject_unknown()

    def _session(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.spec.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def build(self, model: nn.Module, plan: Plan, calibration: torch.Tensor, directory: Path) -> Artifact:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        from onnxruntime.quantization.shape_inference import quant_pre_process

        logging.getLogger("onnxruntime").setLevel(logging.ERROR)
        kinds = prunable_layers(model)
        self.check_plan(plan, kinds)
        directory.mkdir(parents=True, exist_ok=True)
        bits = {name: plan.choice(name).bits for name in kinds}
        path = export_onnx(model, calibration, directory / "float.onnx")
        # The quantizer's recommended pre-processing; graph optimisation is skipped so node names survive.
        quant_pre_process(str(path), str(path), skip_optimization=True)
        four_bit = [name for name, b in bits.items() if b == 4]
        graph = onnx.load(str(path))
        if four_bit:
            graph = gemm_to_matmul(graph, [onnx_prefix(name) for name in four_bit])
            onnx.save(graph, str(path))
        nodes = _weight_nodes(graph, kinds, WEIGHT_OPS)
        current = path
        if any(b == 8 for b in bits.values()):
            quantized = directory / "int8.onnx"
            quantize_static(
                str(current),
                str(quantized),
                CalibrationReader(calibration),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=[nodes[name] for name, b in bits.items() if b != 8],
            )
            current = quantized
        if four_bit:
            quantizer = MatMulNBitsQuantizer(
                onnx.load(str(current)),
                bits=4,
                block_size=self.spec.options.get("int4_block_size", 32),
                is_symmetric=True,
                nodes_to_include=[nodes[name] for name in four_bit],
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
        realised = self._verify(onnx.load(str(final)), bits)
        return Artifact(self.name, directory, (final,), plan, realised, output_channels(model))

    def _verify(self, graph: onnx.ModelProto, bits: dict[str, int]) -> dict[str, str]:
        """Count what each layer became: a 4-bit MatMulNBits, a QDQ pair with INT8 weights, or plain FP32."""
        producers = {out: node for node in graph.graph.node for out in node.output}
        initializers = {init.name: init for init in graph.graph.initializer}
        by_name = {node.name: node for node in graph.graph.node}
        realised = {}
        for layer, node_name in _weight_nodes(graph, bits, (*WEIGHT_OPS, "MatMulNBits")).items():
            node, planned = by_name[node_name], bits[layer]
            if node.op_type == "MatMulNBits":
                found = f"int{next(a.i for a in node.attribute if a.name == 'bits')}"
            else:
                weight = producers.get(node.input[1])
                activation = producers.get(node.input[0])
                weight_int8 = (
                    weight is not None
                    and weight.op_type == "DequantizeLinear"
                    and weight.input[0] in initializers
                    and initializers[weight.input[0]].data_type == onnx.TensorProto.INT8
                )
                activation_quantized = activation is not None and activation.op_type == "DequantizeLinear"
                found = (
                    "int8" if weight_int8 and activation_quantized else "fp32" if not weight_int8 else "int8-weights"
                )
            expected = {32: "fp32", 8: "int8", 4: "int4"}[planned]
            if found != expected:
                raise TargetError(
                    f"target {self.name!r}: layer {layer!r} was planned at {planned} bits but the built graph has {found}"
                )
            realised[layer] = found
        return realised

    def predict(self, artifact: Artifact, inputs: torch.Tensor, batch_size: int = 500) -> np.ndarray:
        session = self._session(artifact.files[0])
        name = session.get_inputs()[0].name
        outputs = [
            session.run(None, {name: inputs[s : s + batch_size].numpy()})[0] for s in range(0, len(inputs), batch_size)
        ]
        return np.concatenate(outputs)

    def runner(self, artifact: Artifact, batch: np.ndarray):
        session = self._session(artifact.files[0])
        feed = {session.get_inputs()[0].name: batch}
        return lambda: session.run(None, feed)
