"""The layers of a model, found once from what torch records for sure: module and parameter names.

A layer is a conv, linear or embedding module, named by its qualified module name; it is found in
every exported graph by its weight parameter's qualified name (`features.0.weight`), which the
exporters keep as the weight initializer / constant name. A module used twice is one layer; a weight
tied to another layer's is that layer's (one tensor, one choice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from autotune.errors import PlanError
from autotune.workloads.io import Inputs, ModelIO

LAYER_TYPES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Conv2d, "conv"),
    (nn.Linear, "linear"),
    (nn.Embedding, "embedding"),
)


def layer_kind(module: nn.Module) -> str | None:
    for cls, kind in LAYER_TYPES:
        if isinstance(module, cls):
            return kind
    return None


def out_channels(module: nn.Module) -> int:
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    return module.embedding_dim


@dataclass(frozen=True)
class Layer:
    name: str  # qualified module name, the plan's key
    kind: str  # conv | linear | embedding
    weight: str  # qualified name of the weight parameter, as exporters keep it
    channels: int  # output channels (features, embedding width)
    depthwise: bool = False


@dataclass(frozen=True)
class ModelLayers:
    """Every layer of a model, the layers that produce its outputs, and Conv+BatchNorm pairs to fuse."""

    layers: dict[str, Layer]
    outputs: frozenset[str] = frozenset()
    conv_bn: tuple[tuple[str, str], ...] = ()
    reused: frozenset[str] = frozenset()  # modules called more than once per forward (shared weights)
    tied: dict[str, str] = field(default_factory=dict)  # module whose weight is another layer's -> that layer
    # Layers the selected output does not depend on (a pooler when the output is the hidden states, an
    # auxiliary head, a module never called): not planned, since the exported graph drops them.
    unreachable: frozenset[str] = frozenset()

    @property
    def kinds(self) -> dict[str, str]:
        return {name: layer.kind for name, layer in self.layers.items()}

    def by_weight(self) -> dict[str, str]:
        """Weight parameter name -> layer name."""
        return {layer.weight: name for name, layer in self.layers.items()}

    def validate(self, names) -> None:
        unknown = sorted(set(names) - set(self.layers))
        if unknown:
            raise PlanError(f"plan names unknown layer(s) {unknown}; the model has {sorted(self.layers)}")


def find_layers(model: nn.Module) -> tuple[dict[str, Layer], dict[str, str]]:
    """Conv, linear and embedding layers in model order; a module reused or a tied weight counts once."""
    parameter_names = {id(p): name for name, p in model.named_parameters()}  # first name of each tensor
    layers: dict[str, Layer] = {}
    tied: dict[str, str] = {}
    owners: dict[int, str] = {}
    for name, module in model.named_modules():  # each module once, under its first name
        kind = layer_kind(module)
        if kind is None or not name:
            continue
        weight = module.weight
        if id(weight) in owners:
            tied[name] = owners[id(weight)]
            continue
        owners[id(weight)] = name
        depthwise = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
        # A weight computed by a parametrization is no parameter of its own: it keeps its module's name,
        # and a target that cannot find it says so.
        weight_name = parameter_names.get(id(weight), f"{name}.weight")
        layers[name] = Layer(name, kind, weight_name, out_channels(module), depthwise)
    return layers, tied


def trace_layers(model: nn.Module, io: ModelIO, example: Inputs, visit) -> torch.Tensor:
    """Run the example through the model calling `visit(name, module, inputs, output)` for each layer;
    returns the selected output."""
    layers, _ = find_layers(model)
    modules = dict(model.named_modules())
    hooks = [
        modules[name].register_forward_hook(lambda m, inputs, output, name=name: visit(name, m, inputs, output))
        for name in layers
    ]
    try:
        with torch.no_grad():
            return io.run(model, example)
    finally:
        for hook in hooks:
            hook.remove()


def output_layers(model: nn.Module, io: ModelIO, example: Inputs) -> frozenset[str]:
    """Layers whose output tensor is the model's selected output: their channels are the model's contract."""
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # the tensor is kept alive so its id is not reused

    def record(name, module, inputs, output) -> None:
        produced[id(output)] = (name, output)

    output = trace_layers(model, io, example, record)
    found = produced.get(id(output))
    return frozenset({found[0]} if found is not None and found[1] is output else set())


def index_model(model: nn.Module, io: ModelIO, example: Inputs) -> ModelLayers:
    """Layers and output layers; the Conv+BatchNorm pairs come from the dependency graph (pruning.py)."""
    layers, tied = find_layers(model)
    unreachable = unreachable_layers(model, io, example, layers)
    return ModelLayers(
        {name: layer for name, layer in layers.items() if name not in unreachable},
        output_layers(model, io, example),
        tied=tied,
        reused=reused_modules(model, io, example),
        unreachable=unreachable,
    )


def unreachable_layers(model: nn.Module, io: ModelIO, example: Inputs, layers: dict[str, Layer]) -> frozenset[str]:
    """Layers whose weight the selected output does not depend on.

    Autograd's graph names the candidates (weights that get no gradient); each is confirmed by shifting its
    weight and seeing the output unchanged, since a forward may run part of the model under `torch.no_grad()`
    or `.detach()` (a frozen backbone) and still depend on it.
    """
    modules = dict(model.named_modules())
    candidates = _without_gradient(model, io, example, layers)
    if not candidates:
        return frozenset()
    unreachable = set()
    with torch.no_grad():
        expected = io.run(model, example)
        for name in candidates:
            weight = modules[name].weight
            saved = weight.detach().clone()
            weight.add_(1.0)
            try:
                if torch.equal(io.run(model, example), expected):
                    unreachable.add(name)
            finally:
                weight.copy_(saved)
    return frozenset(unreachable)


def _without_gradient(model: nn.Module, io: ModelIO, example: Inputs, layers: dict[str, Layer]) -> list[str]:
    """Layers whose weight the selected output's autograd graph does not reach."""
    modules = dict(model.named_modules())
    weights = {name: modules[name].weight for name in layers}
    weights = {name: w for name, w in weights.items() if w.is_leaf and w.is_floating_point()}
    trainable = {name: w.requires_grad for name, w in weights.items()}
    try:
        for weight in weights.values():
            weight.requires_grad_(True)
        with torch.enable_grad():
            output = io.run(model, example)
            if not output.requires_grad:  # a forward run entirely without gradients: every layer is a candidate
                return list(weights)
            grads = torch.autograd.grad(output.float().sum(), list(weights.values()), allow_unused=True)
    finally:
        for name, weight in weights.items():
            weight.requires_grad_(trainable[name])
    return [name for name, grad in zip(weights, grads, strict=True) if grad is None]


def reused_modules(model: nn.Module, io: ModelIO, example: Inputs) -> frozenset[str]:
    calls: dict[str, int] = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
        for name, module in model.named_modules()
        if name and not list(module.children())
    ]
    try:
        with torch.no_grad():
            io.run(model, example)
    finally:
        for hook in hooks:
            hook.remove()
    return frozenset(name for name, count in calls.items() if count > 1)
