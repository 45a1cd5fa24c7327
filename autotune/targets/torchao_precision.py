"""Per-layer precision through torchao: what each planned bit-width becomes, and what a built weight really holds.

Labels, shared by every target: "f32", "bf16", "f16", "int8" (INT8 weights with dynamically quantized INT8
activations), "int8-weights" (weight-only INT8), "int4". A layer computes in its own dtype: hooks cast its
floating inputs to that dtype and its output back to f32, so neighbours at other precisions still fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from autotune.errors import TargetError

HALF_FORMATS = {"bf16": torch.bfloat16, "f16": torch.float16}
FLOAT_LABELS = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}


@dataclass(frozen=True)
class Precisions:
    """How one target realises each bit-width: its device, 16-bit format, INT8 flavour and INT4 group size."""

    device: str = "cuda"
    half: str = "bf16"
    int8_weight_only: bool = False
    int4_group_size: int = 32

    def label(self, bits: int) -> str:
        """The label a layer planned at `bits` must be realised as."""
        if bits == 8:
            return "int8-weights" if self.int8_weight_only else "int8"
        return {32: "f32", 16: self.half, 4: "int4"}[bits]

    def dtype(self, bits: int) -> torch.dtype:
        """The floating dtype a layer at `bits` computes in (its weights' dtype before quantization)."""
        if bits == 32:
            return torch.float32
        if bits == 4:
            return torch.bfloat16  # the tinygemm INT4 kernels take bfloat16 activations only
        if bits == 8 and self.device == "cpu":
            return torch.float32  # torchao's CPU INT8 paths are float32 ones
        return HALF_FORMATS[self.half]

    def config(self, bits: int):
        """The torchao config quantizing a layer at `bits`, or None for a floating-point layer."""
        from torchao.quantization import (
            Int4WeightOnlyConfig,
            Int8DynamicActivationInt8WeightConfig,
            Int8WeightOnlyConfig,
        )
        from torchao.quantization.quantize_.workflows.int4.int4_packing_format import Int4PackingFormat

        if bits == 8:
            return Int8WeightOnlyConfig() if self.int8_weight_only else Int8DynamicActivationInt8WeightConfig()
        if bits == 4:
            # tinygemm packing: CUDA kernels shipped with torch itself (the plain format needs the mslk package).
            return Int4WeightOnlyConfig(
                group_size=self.int4_group_size, int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D
            )
        return None


def realise(model: nn.Module, bits: dict[str, int], precisions: Precisions, tied: dict[str, str]) -> None:
    """Give each layer its dtype and casting hooks, quantize the planned layers (one FqnToConfig call), and on
    CUDA pad the rows of INT8-activation layers.

    `tied` maps a module sharing a layer's weight to that layer: it computes in the same dtype.
    """
    from torchao.quantization import FqnToConfig, quantize_

    modules = dict(model.named_modules())
    if precisions.device == "cuda":
        for name in (name for name, b in bits.items() if precisions.label(b) == "int8"):
            problem = int8_activation_problem(modules[name])
            if problem:
                raise TargetError(f"layer {name!r} cannot run INT8 activations: {problem}")
    users = {name: [name] for name in bits}
    for module_name, layer in tied.items():
        users.setdefault(layer, []).append(module_name)
    for name, layer_bits in bits.items():
        dtype = precisions.dtype(layer_bits)
        if dtype != torch.float32:
            for module_name in users[name]:
                compute_in(modules[module_name], dtype)
    configs = {name: precisions.config(b) for name, b in bits.items()}
    configs = {name: config for name, config in configs.items() if config is not None}
    if configs:
        quantize_(model, FqnToConfig(configs), filter_fn=None)
    if precisions.device == "cuda":
        for name in (name for name, b in bits.items() if precisions.label(b) == "int8"):
            pad_rows(modules[name])


def int8_activation_problem(module: nn.Module) -> str:
    """Why cuBLAS's INT8 GEMM (torch._int_mm) cannot run this linear layer on CUDA, or "" when it can."""
    if module.in_features % 8 or module.out_features % 8:
        return (
            f"{module.in_features} -> {module.out_features} features: torch._int_mm on CUDA needs multiples of 8 "
            "(plan it at 4, 16 or 32 bits, or set int8_weight_only)"
        )
    return ""


def pad_rows(module: nn.Module, rows: int = 16) -> None:
    """Run every call with `rows` zero rows appended: torch._int_mm on CUDA refuses 16 rows or fewer (a batch
    of 1), and the exported program keeps none of torchao's eager fallbacks. Zero rows quantize to zero."""
    leading_shapes = []  # the pre-hook's input shape, for the forward hook: both run while the call is traced

    def pad(_module, args):
        (value,) = args
        leading_shapes.append(value.shape[:-1])
        flat = value.reshape(-1, value.shape[-1])
        return (torch.cat([flat, flat.new_zeros(rows, flat.shape[-1])]),)

    def unpad(_module, _args, output):
        return output[:-rows].reshape(*leading_shapes.pop(), output.shape[-1])

    module.register_forward_pre_hook(pad)
    module.register_forward_hook(unpad)


def compute_in(module: nn.Module, dtype: torch.dtype) -> None:
    """The module's parameters in `dtype`, its floating inputs cast to it, its floating outputs back to f32."""
    module.to(dtype)

    def cast(value):
        return value.to(dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    def cast_inputs(_module, args, kwargs):
        return tuple(cast(a) for a in args), {key: cast(v) for key, v in kwargs.items()}

    def output_to_f32(_module, _args, output):
        return output.float() if isinstance(output, torch.Tensor) and output.is_floating_point() else output

    module.register_forward_pre_hook(cast_inputs, with_kwargs=True)
    module.register_forward_hook(output_to_f32)


def weight_label(weight: torch.Tensor) -> str:
    """What a weight really holds, read from its tensor type and attributes; the type's name when unknown."""
    from torchao.quantization import (
        Int4PlainInt32Tensor,
        Int4PreshuffledTensor,
        Int4Tensor,
        Int4TilePackedTo4dTensor,
        Int8Tensor,
    )

    if isinstance(weight, Int8Tensor) and weight.qdata.dtype == torch.int8:
        return "int8-weights" if weight.act_quant_kwargs is None else "int8"
    if isinstance(weight, (Int4TilePackedTo4dTensor, Int4Tensor, Int4PlainInt32Tensor, Int4PreshuffledTensor)):
        return "int4"
    if type(weight) in (torch.Tensor, nn.Parameter):
        return FLOAT_LABELS.get(weight.dtype, str(weight.dtype).removeprefix("torch."))
    return type(weight).__name__
