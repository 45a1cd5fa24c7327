"""GPU through torchao: per-layer precision by fully qualified name, a torch.export artifact, compiled execution.

Each layer computes at its planned precision (torchao_precision.py): f32, the hardware file's 16-bit format,
INT8 (dynamic activations, or weight-only) or INT4 (tinygemm, CUDA only); everything between layers stays
f32. torchao's configs quantize `nn.Linear` layers; convolutions and embeddings stay floating point (16 or
32 bits). The artifact is a torch.export program (torchao_load.py) that torch and torchao alone can run; the
realised precision is read back from the saved file. It runs through `torch.compile` (the hardware file's
`compile_mode`): one dynamic-shape compile for predictions, one static compile per timed batch size, whose
first call is reported as compile time; on CUDA timed with CUDA events. The CPU variant, which the tests use
on machines without a GPU, goes through inductor's CPU backend and realises no INT4 (torchao 0.18 has no
CPU INT4 kernel). Only the last artifact used stays in memory.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autotune.errors import TargetError
from autotune.layers import ModelLayers, out_channels
from autotune.plan import Plan
from autotune.targets.base import Artifact, BuildContext, Measurement, Target
from autotune.targets.measure import cuda_event_ms, host_ms, time_calls
from autotune.targets.torchao_load import Program, load_program, save_program
from autotune.targets.torchao_precision import Precisions, realise, weight_label
from autotune.workloads.io import (
    EXPORT_PREFIX,
    ExportWrapper,
    Inputs,
    ModelIO,
    flatten,
    input_names,
    iter_batches,
    repeat_first,
)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "none")
PROGRAM_FILE = "model.pt2"


# Upper bound of every dynamic axis: CUDA kernels guard sizes below 2**16, and an unbounded axis fails export.
EXPORT_MAX_SIZE = 65535


class TorchaoTarget(Target):
    backend = "torchao"

    @classmethod
    def check_options(cls, fields) -> None:
        device = fields.get("device", str, "cuda")
        if device not in ("cuda", "cpu"):
            raise fields.error("device", f"{device!r}: expected 'cuda' or 'cpu'")
        fields.get("int8_weight_only", bool, False)
        fields.number("int4_group_size", 32, 32, integer=True)
        mode = fields.get("compile_mode", str, "max-autotune-no-cudagraphs")
        if mode not in COMPILE_MODES:
            raise fields.error("compile_mode", f"{mode!r}: expected one of {list(COMPILE_MODES)}")
        fields.reject_unknown()

    def __init__(self, spec) -> None:
        super().__init__(spec)
        self._loaded: tuple[Path, Program, nn.Module] | None = None  # the one artifact kept in memory
        self._compile_seconds: list[float] = []

    @property
    def device(self) -> str:
        return self.spec.options.get("device", "cuda")

    @property
    def compile_mode(self) -> str:
        return self.spec.options.get("compile_mode", "max-autotune-no-cudagraphs")

    @classmethod
    def native_half(cls, options: dict) -> tuple[str | None, str]:
        if options.get("device", "cuda") == "cpu":
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return "bf16", ""
            return None, "this CPU has no native bf16 (oneDNN reports none)"
        if not torch.cuda.is_available():
            return None, "no CUDA device on this machine"
        return ("bf16" if torch.cuda.is_bf16_supported() else "f16"), ""

    @property
    def precisions(self) -> Precisions:
        options = self.spec.options
        return Precisions(
            device=self.device,
            half=getattr(self.spec, "half", None) or "bf16",  # the hardware file's [float] half
            int8_weight_only=bool(options.get("int8_weight_only", False)),
            int4_group_size=int(options.get("int4_group_size", 32)),
        )

    def available(self) -> tuple[bool, str]:
        if self.device == "cuda" and not torch.cuda.is_available():
            return False, "no CUDA device on this machine (torch.cuda.is_available() is False)"
        return True, ""

    def cpu_variant(self) -> Target | None:
        weight_bits = {kind: tuple(b for b in bits if b != 4) for kind, bits in self.spec.weight_bits.items()}
        options = {**self.spec.options, "device": "cpu"}
        return TorchaoTarget(dataclasses.replace(self.spec, options=options, weight_bits=weight_bits))

    # ------------------------------------------------------------------ build

    def build(self, model: nn.Module, plan: Plan, context: BuildContext, directory: Path) -> Artifact:
        ok, why = self.available()
        if not ok:
            raise TargetError(f"target {self.name!r}: {why}")
        self.check_plan(plan, context.layers)
        self.release()  # one model in memory at a time
        directory.mkdir(parents=True, exist_ok=True)
        bits = {name: int(plan.choice(name).bits) for name in context.layers.layers}
        model = copy.deepcopy(model).eval().to(self.device)
        modules = dict(model.named_modules())
        channels = {name: out_channels(modules[name]) for name in bits}
        try:
            realise(model, bits, self.precisions, context.layers.tied)
        except TargetError as exc:
            raise TargetError(f"target {self.name!r}: {exc}") from None
        path = directory / PROGRAM_FILE
        self._export(model, context.io, context.calibration, path)
        del model, modules
        realised = self._verify(self._program(path)[0], context.layers, bits)
        return Artifact(self.name, directory, (path,), plan, realised, channels, context.io)

    def _export(self, model: nn.Module, io: ModelIO, calibration: Inputs, path: Path) -> None:
        """The model as a torch.export program taking the inputs positionally, dynamic on io's axes."""
        example = repeat_first(calibration, 2)  # a batch of 2: export would specialise a batch of 1
        dims: dict[str, torch.export.Dim] = {}
        shapes = tuple(
            {axis: dims.setdefault(dim, torch.export.Dim(dim, max=EXPORT_MAX_SIZE)) for axis, dim in axes.items()}
            for axes in io.axes(example).values()
        )
        wrapper = ExportWrapper(model, io, example)
        tensors = tuple(value.to(self.device) for value in flatten(example))
        try:
            program = torch.export.export(wrapper, tensors, dynamic_shapes=(shapes,))
        except Exception as exc:
            raise TargetError(f"target {self.name!r}: torch.export cannot export the built model: {exc}") from exc
        save_program(program, path, input_names(example), self.device)

    def _verify(self, program: Program, layers: ModelLayers, bits: dict[str, int]) -> dict[str, str]:
        """Each layer's weight in the saved program, read from its tensor type, must be what the plan asked."""
        weights = dict(program.module.named_parameters(remove_duplicate=False))
        precisions, realised = self.precisions, {}
        for name, layer in layers.layers.items():
            weight = weights.get(EXPORT_PREFIX + layer.weight)
            found = "missing" if weight is None else weight_label(weight)
            expected = precisions.label(bits[name])
            if found != expected:
                raise TargetError(
                    f"target {self.name!r}: layer {name!r} was planned at {bits[name]} bits ({expected}) "
                    f"but the built program holds {found}"
                )
            realised[name] = found
        return realised

    # ------------------------------------------------------------------ run

    def release(self) -> None:
        """Forget the model kept in memory (the artifact's file stays)."""
        self._loaded = None

    def _program(self, path: Path) -> tuple[Program, nn.Module]:
        """The artifact's program and its compiled module for any batch size, loaded once from its file."""
        if self._loaded is None or self._loaded[0] != path:
            self.release()
            if not path.is_file():
                raise TargetError(f"target {self.name!r}: no built program at {path}")
            program = load_program(path)
            if program.device != self.device:
                raise TargetError(
                    f"target {self.name!r}: {path} was built for {program.device!r}, this target runs on {self.device!r}"
                )
            self._loaded = (path, program, self._compiled(program.module, dynamic=True))
        return self._loaded[1], self._loaded[2]

    def _compiled(self, module: nn.Module, dynamic: bool) -> nn.Module:
        if self.compile_mode == "none":
            return module
        return torch.compile(
            module, mode=None if self.compile_mode == "default" else self.compile_mode, dynamic=dynamic
        )

    def predict(self, artifact: Artifact, inputs: Inputs, batch_size: int = 256) -> np.ndarray:
        program, compiled = self._program(artifact.files[0])
        with torch.no_grad():
            # .cpu() copies: CUDA graphs (reduce-overhead) overwrite their outputs on the next call.
            outputs = [compiled(*program.tensors(part)).float().cpu() for part in iter_batches(inputs, batch_size)]
        return torch.cat(outputs).numpy()

    def server(self, artifact: Artifact):
        program, compiled = self._program(artifact.files[0])

        def answer(inputs: Inputs) -> np.ndarray:
            with torch.no_grad():
                return compiled(*program.tensors(inputs)).float().cpu().numpy()

        return answer

    def runner(self, artifact: Artifact, batch: Inputs):
        """Compiled for this batch's shapes alone (static shapes run fastest); the first call, which compiles,
        is timed apart."""
        program, _ = self._program(artifact.files[0])
        compiled = self._compiled(program.module, dynamic=False)
        tensors = program.tensors(batch)

        def call():
            with torch.no_grad():
                return compiled(*tensors)

        started = time.perf_counter()
        call()
        if self.device == "cuda":
            torch.cuda.synchronize()
        self._compile_seconds.append(time.perf_counter() - started)
        return call

    def time_with(self, call, settings):
        return time_calls(call, settings, cuda_event_ms if self.device == "cuda" else host_ms)

    def measure(self, artifact: Artifact, example_input: Inputs) -> Measurement:
        """The shared protocol on the compiled program; compilation (the first call per batch) reported apart."""
        self._compile_seconds = []
        measurement = super().measure(artifact, example_input)
        compile_seconds = sum(self._compile_seconds)
        extra = {**measurement.extra, "compile_mode": self.compile_mode, "compile_seconds": compile_seconds}
        return dataclasses.replace(measurement, extra=extra)
