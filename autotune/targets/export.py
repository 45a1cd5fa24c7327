"""Torch -> ONNX export shared by the CPU targets, and each layer's nodes found by its weight's name.

The exporter keeps every weight initializer named after its parameter (`features.0.weight`) when
constant folding is off and Conv+BatchNorm pairs are fused in torch first (a runtime that fuses them
itself renames the weight). Each weighted node is mapped to its layer by walking its weight input
back to that initializer; later stages (OpenVINO ops, quantized ONNX graphs) keep the ONNX node names,
so they use this map rather than any name rebuilt from a module path.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from autotune.errors import TargetError
from autotune.layers import ModelLayers
from autotune.workloads.io import EXPORT_PREFIX, Inputs, ModelIO, flatten, input_names, take

# Weighted ONNX ops and the input holding the weight.
WEIGHT_INPUT = {"Conv": 1, "Gemm": 1, "MatMul": 1, "Gather": 0, "MatMulNBits": 1, "GatherBlockQuantized": 0}
# Ops the exporter or a quantizer puts between a weight initializer and its consumer.
PASS_THROUGH = {"Transpose", "Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze", "DequantizeLinear", "Flatten"}
# Suffixes a weight initializer gains when rewritten or quantized (`fc1.weight_transposed_Q4`), outermost last.
REWRITE_SUFFIXES = ("_Q4", "_quantized", "_transposed")


@dataclass(frozen=True)
class ExportedGraph:
    path: Path
    nodes: dict[str, list[str]]  # layer -> ONNX node names that apply its weight (two for a module used twice)

    @property
    def layer_of_node(self) -> dict[str, str]:
        return {node: layer for layer, names in self.nodes.items() for node in names}


def fuse_batchnorms(model: nn.Module, layers: ModelLayers) -> nn.Module:
    """A copy with each (conv, BatchNorm) pair of the dependency graph fused into the conv."""
    fused = copy.deepcopy(model).eval()
    for conv_name, norm_name in layers.conv_bn:
        conv, norm = fused.get_submodule(conv_name), fused.get_submodule(norm_name)
        fused.set_submodule(conv_name, torch.nn.utils.fusion.fuse_conv_bn_eval(conv, norm))
        fused.set_submodule(norm_name, nn.Identity())
    return fused


def export_onnx(model: nn.Module, io: ModelIO, example: Inputs, layers: ModelLayers, path: Path) -> ExportedGraph:
    """Export with dynamic batch (and the workload's other dynamic axes); locate every layer's nodes."""
    example = take(example, slice(0, 1))
    wrapper = io.exportable(fuse_batchnorms(model, layers), example)
    names = input_names(example)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                tuple(flatten(example)),
                str(path),
                dynamo=False,
                do_constant_folding=False,  # folding renames weights (a conv fused with BatchNorm: `onnx::Conv_36`)
                input_names=names,
                output_names=["output"],
                dynamic_axes={**io.axes(example), "output": {0: "batch"}},
                opset_version=17,
            )
    except Exception as exc:
        raise TargetError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    graph = onnx.load(str(path))
    fold_weight_transposes(graph)
    onnx.save(graph, str(path))
    return ExportedGraph(path, locate_layers(graph, layers, "ONNX"))


def weight_names(graph: onnx.ModelProto, node: onnx.NodeProto) -> list[str]:
    """Names along the node's weight input back to an initializer, nearest first ([] for activations)."""
    initializers = {init.name for init in graph.graph.initializer}
    producers = {out: n for n in graph.graph.node for out in n.output}
    name, names = node.input[WEIGHT_INPUT.get(node.op_type, 1)], []
    for _ in range(16):
        names.append(name)
        if name in initializers:
            return names
        producer = producers.get(name)
        if producer is None or producer.op_type not in PASS_THROUGH:
            return []
        name = producer.input[0]
    return []


def locate_layers(graph: onnx.ModelProto, layers: ModelLayers, where: str) -> dict[str, list[str]]:
    """Layer -> the nodes whose weight is its parameter; a layer found nowhere is an error naming what was."""
    by_weight = {EXPORT_PREFIX + weight: layer for weight, layer in layers.by_weight().items()}
    found: dict[str, list[str]] = {name: [] for name in layers.layers}
    seen: list[str] = []
    computed: list[str] = []  # weighted nodes whose weight is computed in the graph, not stored
    for node in graph.graph.node:
        if node.op_type not in WEIGHT_INPUT:
            continue
        chain = weight_names(graph, node)
        layer = next((by_weight[p] for p in map(_original_name, chain) if p in by_weight), None)
        if layer is not None:
            found[layer].append(node.name)
        if chain:
            seen.append(chain[-1].removeprefix(EXPORT_PREFIX))
        elif node.op_type != "MatMul":  # a MatMul of two activations (attention scores) has no weight
            computed.append(node.name)
    missing = [name for name, nodes in found.items() if not nodes]
    if missing:
        hint = f"; nodes reading a weight computed at run time (a parametrization?): {computed[:5]}" if computed else ""
        raise TargetError(
            f"cannot find layer(s) {missing} in the {where} graph by their weights "
            f"{[layers.layers[m].weight for m in missing]}; weights found there: {sorted(set(seen))[:20]}{hint}"
        )
    return found


def _original_name(name: str) -> str:
    """The parameter's initializer name under the suffixes rewrites and quantizers add."""
    changed = True
    while changed:
        changed = False
        for suffix in REWRITE_SUFFIXES:
            if name.endswith(suffix):
                name, changed = name.removesuffix(suffix), True
    return name


def fold_weight_transposes(graph: onnx.ModelProto) -> None:
    """Replace Transpose(weight) -> MatMul with a pre-transposed initializer keeping the parameter's name.

    The exporter writes `nn.Linear` on 3-D inputs this way; quantizers then see an activation, not a weight.
    """
    g = graph.graph
    initializers = {init.name: init for init in g.initializer}
    producers = {out: n for n in g.node for out in n.output}
    users: dict[str, list] = {}
    for node in g.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    dropped = []
    for node in list(g.node):
        if node.op_type != "Transpose":
            continue
        source, identity = node.input[0], None
        if source not in initializers and source in producers and producers[source].op_type == "Identity":
            identity = producers[source]  # the exporter de-duplicates equal initializers through an Identity
            source = identity.input[0]
        if source not in initializers:
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        value = np.ascontiguousarray(np.transpose(numpy_helper.to_array(initializers[source]), perm))
        alone = len(users.get(node.input[0], [])) == 1
        name = node.input[0] if alone else node.input[0] + "_transposed"
        if alone and node.input[0] in initializers:
            g.initializer.remove(initializers[node.input[0]])
        if alone and identity is not None:
            dropped.append(identity)
        g.initializer.append(numpy_helper.from_array(value, name))
        for user in users.get(node.output[0], []):
            for index, value_name in enumerate(user.input):
                if value_name == node.output[0]:
                    user.input[index] = name
        dropped.append(node)
    for node in dropped:
        g.node.remove(node)
    _drop_unused_initializers(graph)


def _drop_unused_initializers(graph: onnx.ModelProto) -> None:
    used = {name for node in graph.graph.node for name in node.input}
    for init in [i for i in graph.graph.initializer if i.name not in used]:
        graph.graph.initializer.remove(init)


def gemm_to_matmul(graph: onnx.ModelProto, node_names: list[str]) -> dict[str, str]:
    """Rewrite the named Gemm nodes as MatMul (+ Add for the bias); returns old name -> MatMul name.

    ONNX Runtime's 4-bit weight quantizer (MatMulNBits) handles MatMul only, while torch exports a
    2-D `nn.Linear` as Gemm. The MatMul's weight keeps the parameter's name (transposed copy).
    """
    initializers = {init.name: init for init in graph.graph.initializer}
    wanted, renamed, rewritten = set(node_names), {}, []
    for node in graph.graph.node:
        if node.op_type != "Gemm" or node.name not in wanted:
            rewritten.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            raise TargetError(f"cannot rewrite Gemm {node.name!r} with attributes {attrs} as MatMul")
        weight_name = node.input[1]
        weight = numpy_helper.to_array(initializers[weight_name])
        if attrs.get("transB", 0):
            weight = np.ascontiguousarray(weight.T)
        new_weight = weight_name + "_transposed"
        graph.graph.initializer.append(numpy_helper.from_array(weight, new_weight))
        matmul = node.name.removesuffix("Gemm") + "MatMul" if node.name.endswith("Gemm") else node.name + "_MatMul"
        product = f"{matmul}_output" if len(node.input) > 2 else node.output[0]
        rewritten.append(helper.make_node("MatMul", [node.input[0], new_weight], [product], name=matmul))
        if len(node.input) > 2:
            rewritten.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{matmul}_Add"))
        renamed[node.name] = matmul
    del graph.graph.node[:]
    graph.graph.node.extend(rewritten)
    _drop_unused_initializers(graph)  # the Gemm's transposed weight would otherwise ship twice
    return renamed
