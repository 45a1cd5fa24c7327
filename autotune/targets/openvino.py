"""CPU through OpenVINO: NNCF INT8 post-training quantization, INT4 weight compression, FP32 exclusions."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autotune.compress import output_channels, prunable_layers
from autotune.errors import TargetError
from autotune.plan import Plan
from autotune.targets.base import Artifact, Target
from autotune.targets.export import export_onnx, match_layer_nodes, onnx_prefix

WEIGHT_OPS = ("Convolution", "MatMul", "GroupConvolution")
# Runtime precisions the CPU plugin reports for a layer that really runs at the planned bits.
RUNTIME_WEIGHT_LAYERS = {"Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution"}
REALISED = {32: {"f32"}, 8: {"u8", "i8"}, 4: {"i4", "u4"}}


class OpenVINOTarget(Target):
    backend = "openvino"

    @classmethod
    def check_options(cls, fields) -> None:
        fields.number("int4_group_size", -1, integer=True)
        fields.get("int4_mode", str, "int4_sym")
        fields.reject_unknown()

    def _config(self) -> dict:
        return {
            "INFERENCE_NUM_THREADS": self.spec.threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",  # no silent bf16/f16: FP32 layers must stay FP32
        }

    def build(self, model: nn.Module, plan: Plan, calibration: torch.Tensor, directory: Path) -> Artifact:
        import nncf
        import openvino as ov

        logging.getLogger("nncf").setLevel(logging.ERROR)
        kinds = prunable_layers(model)
        self.check_plan(plan, kinds)
        directory.mkdir(parents=True, exist_ok=True)
        onnx_path = export_onnx(model, calibration, directory / "model.onnx")
        ov_model = ov.convert_model(str(onnx_path))
        op_names = self._weight_ops(ov_model, kinds)
        bits = {name: plan.choice(name).bits for name in kinds}

        if any(b == 8 for b in bits.values()):
            not_int8 = [op_names[name] for name, b in bits.items() if b != 8]
            dataset = nncf.Dataset([sample[None].numpy() for sample in calibration])
            ov_model = nncf.quantize(
                ov_model,
                dataset,
                subset_size=len(calibration),
                ignored_scope=nncf.IgnoredScope(names=not_int8) if not_int8 else None,
            )
        if any(b == 4 for b in bits.values()):
            mode = getattr(nncf.CompressWeightsMode, self.spec.options.get("int4_mode", "int4_sym").upper())
            not_int4 = [op_names[name] for name, b in bits.items() if b != 4]
            ov_model = nncf.compress_weights(
                ov_model,
                mode=mode,
                ratio=1.0,
                group_size=self.spec.options.get("int4_group_size", -1),
                all_layers=True,
                ignored_scope=nncf.IgnoredScope(names=not_int4) if not_int4 else None,
            )
        xml_path = directory / "model.xml"
        ov.save_model(ov_model, str(xml_path), compress_to_fp16=False)
        onnx_path.unlink()
        realised = self._verify(xml_path, self._layer_node_names(ov_model, op_names), bits)
        return Artifact(
            target=self.name,
            directory=directory,
            files=(xml_path, xml_path.with_suffix(".bin")),
            plan=plan,
            realised_precision=realised,
            channels=output_channels(model),
        )

    @staticmethod
    def _weight_ops(ov_model, kinds: dict[str, str]) -> dict[str, str]:
        names = [op.get_friendly_name() for op in ov_model.get_ordered_ops() if op.get_type_name() in WEIGHT_OPS]
        return match_layer_nodes(kinds, names, "OpenVINO")

    @staticmethod
    def _layer_node_names(ov_model, op_names: dict[str, str]) -> dict[str, set[str]]:
        """Each layer's weight op plus the bias Add that follows it: after fusion, the runtime node may
        carry either name (the last layer's carries the graph output's name)."""
        by_name = {op.get_friendly_name(): op for op in ov_model.get_ordered_ops()}
        names = {}
        for layer, op_name in op_names.items():
            names[layer] = {op_name}
            for target in by_name[op_name].output(0).get_target_inputs():
                consumer = target.get_node()
                if consumer.get_type_name() == "Add":
                    names[layer].add(consumer.get_friendly_name())
        return names

    def _compile(self, xml_path: Path, batch: int | None = None):
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(xml_path))
        if batch is not None:
            shape = list(model.input(0).get_partial_shape())
            shape[0] = batch
            model.reshape({model.input(0): ov.PartialShape(shape)})
        return core.compile_model(model, "CPU", self._config())

    def _verify(self, xml_path: Path, layer_names: dict[str, set[str]], bits: dict[str, int]) -> dict[str, str]:
        """Read each layer's execution precision from the compiled runtime graph and check it.

        The CPU plugin fuses and renames nodes; a layer's runtime node is the weight-layer node whose
        original names include one of the layer's IR names or start with the layer's prefix.
        """
        runtime = self._compile(xml_path).get_runtime_model()
        nodes = []
        for op in runtime.get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" in info and info["layerType"].astype(str) in RUNTIME_WEIGHT_LAYERS:
                originals = info["originalLayersNames"].astype(str).split(",")
                nodes.append((originals, info["runtimePrecision"].astype(str).lower()))
        realised = {}
        for layer, names in layer_names.items():
            prefix = onnx_prefix(layer)
            found = [
                precision
                for originals, precision in nodes
                if any(n in names or n.startswith(prefix) for n in originals)
            ]
            if len(found) != 1 or found[0] not in REALISED[bits[layer]]:
                raise TargetError(
                    f"target {self.name!r}: layer {layer!r} was planned at {bits[layer]} bits "
                    f"but the compiled model runs it at {found or 'no precision (layer not found)'}"
                )
            realised[layer] = found[0]
        return realised

    def predict(self, artifact: Artifact, inputs: torch.Tensor, batch_size: int = 500) -> np.ndarray:
        compiled = self._compile(artifact.files[0])
        request = compiled.create_infer_request()
        outputs = []
        for start in range(0, len(inputs), batch_size):
            request.infer({0: inputs[start : start + batch_size].numpy()})
            outputs.append(request.get_output_tensor(0).data.copy())
        return np.concatenate(outputs)

    def runner(self, artifact: Artifact, batch: np.ndarray):
        request = self._compile(artifact.files[0], len(batch)).create_infer_request()
        return lambda: request.infer({0: batch})
