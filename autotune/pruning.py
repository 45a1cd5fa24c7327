"""Structured pruning by coupled groups, from torch-pruning's dependency graph built once per model.

A pruning group is the set of layers whose output channels must be removed together (a residual
add, a depthwise conv and its producer, the branches read by one concatenation, Q/K/V of one
attention block). It is named after its first layer in model order (its root) and gets one ratio;
every member of a plan records that ratio. The graph is traced once on the FP32 model; a plan is
applied to a copy by calling torch-pruning's own pruning functions with channel indices computed
once on the teacher, so no plan re-traces the model (a trace of a 224x224 MobileNet takes ~1.3 s).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning import ops

from autotune.errors import PlanError
from autotune.layers import ModelLayers
from autotune.plan import Plan
from autotune.workloads.io import Inputs, ModelIO

# Attention layouts whose head count must follow the pruned Q/K/V widths: (query, key, value, heads attribute,
# head size attribute, total size attribute or None).
ATTENTION_LAYOUTS = (
    ("query", "key", "value", "num_attention_heads", "attention_head_size", "all_head_size"),
    ("q_proj", "k_proj", "v_proj", "num_heads", "head_dim", None),
)


@dataclass(frozen=True)
class Attention:
    module: str  # qualified name of the module holding Q/K/V and the head count
    query: str
    heads: int
    head_size: int
    layout: tuple


@dataclass(frozen=True)
class GroupMember:
    module: str
    handler: object  # torch-pruning's pruning function for this module and dimension
    dim: int
    indices: torch.Tensor  # this member's channel index for each entry ...
    roots: torch.Tensor  # ... and the root channel it follows


@dataclass(frozen=True)
class PruningGroup:
    root: str  # first layer of the group in model order: the study parameter is `<root>.prune`
    layers: tuple[str, ...]  # layers whose output channels this group removes (the plan's members)
    channels: int  # channels of the group (its root's output channels)
    attention: Attention | None  # pruned by whole heads when set
    protected: str = ""  # why the group cannot be pruned ("" when it can)

    def kept(self, ratio: float, channel_multiple: int = 1) -> int:
        """Channels left after pruning `ratio`: whole heads for attention, else rounded up to the multiple."""
        if ratio <= 0:
            return self.channels
        if self.attention is not None:
            heads = self.attention.heads
            return max(1, heads - math.floor(heads * ratio + 1e-9)) * self.attention.head_size
        keep = self.channels - math.floor(self.channels * ratio + 1e-9)
        if channel_multiple > 1:
            keep = math.ceil(keep / channel_multiple) * channel_multiple
        return int(min(self.channels, max(1, keep)))


def _attentions(model: nn.Module, layers: ModelLayers) -> dict[str, Attention]:
    """Q/K/V layer name -> its attention block, for the layouts autotune knows how to prune by heads."""
    found: dict[str, Attention] = {}
    for name, module in model.named_modules():
        for layout in ATTENTION_LAYOUTS:
            q, k, v, heads_attr, size_attr, _ = layout
            if not all(hasattr(module, a) for a in (q, k, v, heads_attr, size_attr)):
                continue
            prefix = f"{name}." if name else ""
            names = [f"{prefix}{a}" for a in (q, k, v)]
            if all(n in layers.layers for n in names):
                attention = Attention(name, names[0], int(getattr(module, heads_attr)), int(getattr(module, size_attr)), layout)
                found.update({n: attention for n in names})
    return found


class GroupPruner:
    """The model's pruning groups and a fast, deterministic way to apply a plan to a copy of the model."""

    def __init__(self, teacher: nn.Module, io: ModelIO, example: Inputs, layers: ModelLayers) -> None:
        self.teacher = teacher
        self.layers = layers
        order = {name: i for i, name in enumerate(layers.layers)}
        attentions = _attentions(teacher, layers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch-pruning warns about unwrapped parameters it will not touch
            graph = tp.DependencyGraph().build_dependency(
                teacher,
                example_inputs=example,
                forward_fn=lambda model, inputs: io.run(model, inputs),
                output_transform=lambda output: output.float().sum(),
                verbose=False,
            )
        importance = tp.importance.MagnitudeImportance(p=2)
        names = graph._module2name
        self.groups: list[PruningGroup] = []
        self._members: dict[str, tuple[GroupMember, ...]] = {}
        self._importance: dict[str, torch.Tensor] = {}
        for group in graph.get_all_groups(root_module_types=[nn.Conv2d, nn.Linear]):
            members, unsupported = [], ""
            for item in group:
                target = item.dep.target
                if target.type == ops.OPTYPE.PARAMETER:
                    unsupported = "it changes a parameter held outside a module"
                    continue
                if not isinstance(target.module, nn.Module) or target.module not in names:
                    continue  # torch-pruning's own placeholders (concat, add, reshape): no weights
                members.append(
                    GroupMember(
                        names[target.module],
                        item.dep.handler,
                        target.pruning_dim,
                        torch.as_tensor(item.idxs, dtype=torch.long),
                        torch.as_tensor(item.root_idxs, dtype=torch.long),
                    )
                )
            outputs = sorted(
                {m.module for m in members if graph.is_out_channel_pruning_fn(m.handler) and m.module in order},
                key=order.__getitem__,
            )
            if not outputs:
                continue
            grouped = [m.module for m in members if _is_grouped_conv(graph.model, m.module)]
            if grouped:
                unsupported = f"grouped convolution {grouped[0]!r} (neither dense nor depthwise)"
            attention = next((attentions[n] for n in outputs if n in attentions), None)
            root_module = group[0].dep.target.module
            scores = importance(group)
            pruning_group = PruningGroup(
                root=outputs[0],
                layers=tuple(outputs),
                channels=graph.get_out_channels(root_module),
                attention=attention,
                protected=unsupported or ("" if scores is not None else "torch-pruning gives it no importance"),
            )
            self.groups.append(pruning_group)
            self._members[pruning_group.root] = tuple(members)
            if scores is not None:
                self._importance[pruning_group.root] = scores.detach().float().cpu()
        self.groups.sort(key=lambda g: order[g.root])
        pairs = tuple(p for p in _conv_batchnorm_pairs(graph) if not set(p) & layers.reused)
        self.layers = dataclasses.replace(layers, conv_bn=pairs)
        self._check_groups(io, example)
        self.by_layer = {layer: g for g in self.groups for layer in g.layers}

    # ------------------------------------------------------------------ which groups may be pruned

    def _check_groups(self, io: ModelIO, example: Inputs) -> None:
        """A group whose pruning changes the model's output shape (or breaks its forward) is protected."""
        with torch.no_grad():
            expected = io.run(self.teacher, example).shape
        checked = []
        for group in self.groups:
            reason = group.protected
            if not reason:
                try:
                    with torch.no_grad():
                        shape = io.run(self.apply({group.root: _smallest_cut(group)}), example).shape
                    if shape != expected:
                        reason = f"it sets the width of the model's output ({tuple(expected)} -> {tuple(shape)})"
                except Exception as exc:  # a model that cannot run pruned this way keeps the group whole
                    reason = f"the pruned model fails: {type(exc).__name__}: {exc}"
            checked.append(PruningGroup(group.root, group.layers, group.channels, group.attention, reason))
        self.groups = checked

    @property
    def prunable(self) -> list[PruningGroup]:
        return [g for g in self.groups if not g.protected]

    # ------------------------------------------------------------------ applying a plan

    def group_ratios(self, plan: Plan) -> dict[str, float]:
        """Root -> ratio; refuses a plan that prunes members of one group differently or a protected group."""
        ratios: dict[str, float] = {}
        for name, choice in plan.layers.items():
            if choice.prune <= 0:
                continue
            group = self.by_layer.get(name)
            if group is None:
                raise PlanError(f"plan prunes {name!r}, which belongs to no pruning group of this model")
            if group.protected:
                raise PlanError(f"plan prunes {name!r}, but its group {group.root!r} cannot be pruned: {group.protected}")
            differing = [m for m in group.layers if plan.choice(m).prune != choice.prune]
            if differing:
                raise PlanError(
                    f"plan prunes {name!r} at {choice.prune} but {differing} at other ratios; they lose the same "
                    f"channels together (group {group.root!r}): give every member one ratio"
                )
            ratios[group.root] = choice.prune
        return ratios

    def apply(self, ratios: dict[str, float], channel_multiple: int = 1) -> nn.Module:
        """A pruned copy of the teacher: each group root -> ratio, channel indices chosen by magnitude."""
        model = copy.deepcopy(self.teacher)
        if not ratios:
            return model
        removals: dict[tuple[str, object], tuple[int, set[int]]] = {}
        for root, ratio in ratios.items():
            group = next(g for g in self.groups if g.root == root)
            cut = self._root_channels_to_remove(group, ratio, channel_multiple)
            if cut.numel() == 0:
                continue
            mask = torch.zeros(group.channels, dtype=torch.bool)
            mask[cut] = True
            for member in self._members[root]:
                selected = member.indices[mask[member.roots]].tolist()
                if selected:
                    removals.setdefault((member.module, member.handler), (member.dim, set()))[1].update(selected)
        modules = dict(model.named_modules())
        # Indices are all in the teacher's coordinates, so every module is cut once with the union of its
        # indices (a depthwise conv or a BatchNorm has one function for both directions).
        for (name, handler), (dim, indices) in removals.items():
            handler.__self__.pruning_dim = dim
            handler(modules[name], sorted(indices))
        self._fix_attention(model)
        return model

    def prune(self, plan: Plan, channel_multiple: int = 1) -> nn.Module:
        self.layers.validate(plan.layers)
        return self.apply(self.group_ratios(plan), channel_multiple)

    def _root_channels_to_remove(self, group: PruningGroup, ratio: float, channel_multiple: int) -> torch.Tensor:
        scores = self._importance[group.root]
        remove = group.channels - group.kept(ratio, channel_multiple)
        if remove <= 0:
            return torch.empty(0, dtype=torch.long)
        if group.attention is None:
            return torch.argsort(scores, stable=True)[:remove]
        size = group.attention.head_size
        per_head = scores.reshape(group.attention.heads, size).mean(dim=1)
        heads = torch.argsort(per_head, stable=True)[: remove // size]
        return torch.cat([torch.arange(h * size, (h + 1) * size) for h in heads.tolist()])

    def _fix_attention(self, model: nn.Module) -> None:
        modules = dict(model.named_modules())
        for group in self.groups:
            attention = group.attention
            if attention is None:
                continue
            _, _, _, heads_attr, size_attr, total_attr = attention.layout
            block, query = modules[attention.module], modules[attention.query]
            width = query.out_features
            setattr(block, heads_attr, width // getattr(block, size_attr))
            if total_attr:
                setattr(block, total_attr, width)


def _conv_batchnorm_pairs(graph) -> tuple[tuple[str, str], ...]:
    """(conv, batchnorm) pairs where the BatchNorm is the only reader of the conv's output.

    Exporting them fused keeps the conv's weight name in every runtime's graph (a runtime that fuses
    them itself renames the weight). The dependency graph records functional reads too (x + conv(x)).
    """
    names = graph._module2name
    pairs = []
    for module, node in graph.module2node.items():
        if not isinstance(module, nn.Conv2d) or len(node.outputs) != 1:
            continue
        norm = node.outputs[0]
        if isinstance(norm.module, nn.BatchNorm2d) and len(norm.inputs) == 1 and norm.module in names:
            pairs.append((names[module], names[norm.module]))
    return tuple(pairs)


def _smallest_cut(group: PruningGroup) -> float:
    """A ratio that removes something from the group (one head, or one channel)."""
    if group.attention is not None:
        return 1.0 / group.attention.heads + 1e-6
    return min(0.5, 1.0 / group.channels + 1e-6)


def _is_grouped_conv(model: nn.Module, name: str) -> bool:
    module = model.get_submodule(name)
    return isinstance(module, nn.Conv2d) and 1 < module.groups < module.in_channels
