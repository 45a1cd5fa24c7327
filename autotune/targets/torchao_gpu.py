"""GPU through torchao: per-layer configs by fully qualified name (FqnToConfig), CUDA-event timing.

torchao's configs quantize `nn.Linear` layers; convolutions stay in floating point, so the hardware
file declares conv = [32]. On CUDA the model runs in bfloat16 (INT4 uses the tinygemm kernels,
which take bfloat16 activations). torchao 0.18 has no CPU INT4 kernel, so the CPU variant, which
the tests use on machines without a GPU, realises INT8 and FP32 only.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autotune.errors import TargetError
from autotune.layers import out_channels
from autotune.plan import Plan
from autotune.targets.base import Artifact, BuildContext, Target
from autotune.targets.measure import cuda_event_ms, host_ms, time_calls
from autotune.workloads.io import Inputs, iter_batches, map_tensors


def _config_for(bits: int, weight_only_int8: bool, int4_group_size: int):
    from torchao.quantization import Int4WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig
    from torchao.quantization.quantize_.workflows.int4.int4_packing_format import Int4PackingFormat

    if bits == 8:
        return Int8WeightOnlyConfig() if weight_only_int8 else Int8DynamicActivationInt8WeightConfig()
    if bits == 4:
        # tinygemm packing: CUDA kernels shipped with torch itself (the plain format needs the mslk package).
        return Int4WeightOnlyConfig(group_size=int4_group_size, int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D)
    return None


class TorchaoTarget(Target):
    backend = "torchao"

    @classmethod
    def check_options(cls, fields) -> None:
        device = fields.get("device", str, "cuda")
        if device not in ("cuda", "cpu"):
            raise fields.error("device", f"{device!r}: expected 'cuda' or 'cpu'")
        fields.get("int8_weight_only", bool, False)
        fields.number("int4_group_size", 32, 32, integer=True)
        fields.reject_unknown()

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self._built: dict[Path, nn.Module] = {}

    @property
    def device(self) -> str:
        return self.spec.options.get("device", "cuda")

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.device == "cuda" else torch.float32

    def available(self) -> tuple[bool, str]:
        if self.device == "cuda" and not torch.cuda.is_available():
            return False, "no CUDA device on this machine (torch.cuda.is_available() is False)"
        return True, ""

    def cpu_variant(self) -> Target | None:
        import dataclasses

        weight_bits = {kind: tuple(b for b in bits if b != 4) for kind, bits in self.spec.weight_bits.items()}
        options = {**self.spec.options, "device": "cpu"}
        return TorchaoTarget(dataclasses.replace(self.spec, options=options, weight_bits=weight_bits))

    def build(self, model: nn.Module, plan: Plan, context: BuildContext, directory: Path) -> Artifact:
        from torchao.quantization import FqnToConfig, quantize_

        ok, why = self.available()
        if not ok:
            raise TargetError(f"target {self.name!r}: {why}")
        kinds = context.layers.kinds
        self.check_plan(plan, context.layers)
        directory.mkdir(parents=True, exist_ok=True)
        model = copy.deepcopy(model).eval().to(self.device, self.dtype)
        weight_only = bool(self.spec.options.get("int8_weight_only", False))
        group_size = int(self.spec.options.get("int4_group_size", 32))
        configs = {name: _config_for(plan.choice(name).bits, weight_only, group_size) for name in kinds}
        configs = {name: config for name, config in configs.items() if config is not None}
        if configs:
            quantize_(model, FqnToConfig(configs), filter_fn=None)
        realised = self._verify(model, kinds, plan)
        # torchao tensors serialise through the state dict (the whole module does not pickle); rebuilding
        # needs the pruned architecture, which the plan and recipe reproduce.
        path = directory / "state_dict.pt"
        torch.save(model.state_dict(), path)
        self._built[path] = model
        modules = dict(model.named_modules())
        channels = {name: out_channels(modules[name]) for name in kinds}
        return Artifact(self.name, directory, (path,), plan, realised, channels, context.io)

    def _verify(self, model: nn.Module, kinds: dict[str, str], plan: Plan) -> dict[str, str]:
        """A quantized layer's weight is a torchao tensor subclass; a full-precision one a plain tensor."""
        modules = dict(model.named_modules())
        realised = {}
        for name in kinds:
            weight = modules[name].weight
            plain = type(weight.data) is torch.Tensor
            if plain:
                kind = "fp32" if weight.dtype == torch.float32 else str(weight.dtype).removeprefix("torch.")
            else:
                kind = type(weight.data).__name__
            planned = plan.choice(name).bits
            if (planned == 32) != plain:
                raise TargetError(f"target {self.name!r}: layer {name!r} planned at {planned} bits but holds {kind}")
            realised[name] = kind
        return realised

    def _load(self, artifact: Artifact) -> nn.Module:
        try:
            return self._built[artifact.files[0]]
        except KeyError:
            raise TargetError(
                f"target {self.name!r}: {artifact.files[0]} was built by another process; rebuild it from its recipe"
            ) from None

    def _to_device(self, inputs: Inputs) -> Inputs:
        """Inputs on the target's device; floating-point ones in the model's dtype (token ids stay integers)."""

        def move(value: torch.Tensor) -> torch.Tensor:
            return value.to(self.device, self.dtype) if value.is_floating_point() else value.to(self.device)

        return map_tensors(inputs, move)

    def predict(self, artifact: Artifact, inputs: Inputs, batch_size: int = 256) -> np.ndarray:
        model = self._load(artifact)
        with torch.no_grad():
            outputs = [
                artifact.io.run(model, self._to_device(part)).float().cpu() for part in iter_batches(inputs, batch_size)
            ]
        return torch.cat(outputs).numpy()

    def server(self, artifact: Artifact):
        model = self._load(artifact)

        def answer(inputs: Inputs) -> np.ndarray:
            with torch.no_grad():
                return artifact.io.run(model, self._to_device(inputs)).float().cpu().numpy()

        return answer

    def runner(self, artifact: Artifact, batch: Inputs):
        model = self._load(artifact)
        data = self._to_device(batch)

        def call():
            with torch.no_grad():
                return artifact.io.run(model, data)

        return call

    def time_with(self, call, settings):
        return time_calls(call, settings, cuda_event_ms if self.device == "cuda" else host_ms)
