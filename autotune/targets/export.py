"""Torch -> ONNX export shared by the CPU targets; ONNX keeps each layer's name in its node names."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from autotune.errors import TargetError


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: Path) -> Path:
    """Export with a dynamic batch axis. Nodes are named after modules, e.g. `/block1/conv1/Conv`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval(),
                (example_input[:1],),
                str(path),
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                opset_version=17,
            )
    except Exception as exc:
        raise TargetError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    return path


def onnx_prefix(layer: str) -> str:
    """The node-name prefix of a torch module in the exported graph: `block1.conv1` -> `/block1/conv1/`."""
    return "/" + layer.replace(".", "/") + "/"


def match_layer_nodes(layers, node_names: list[str], graph: str) -> dict[str, str]:
    """Each layer's one weight node among `node_names` (found by prefix); an error names what is ambiguous."""
    mapping = {}
    for layer in layers:
        matches = [name for name in node_names if name.startswith(onnx_prefix(layer))]
        if len(matches) != 1:
            raise TargetError(f"cannot find layer {layer!r} once in the {graph} graph (candidates {matches})")
        mapping[layer] = matches[0]
    return mapping


def gemm_to_matmul(model, prefixes: list[str]):
    """Rewrite the Gemm nodes of the given layers as MatMul (+ Add for the bias).

    ONNX Runtime's 4-bit weight quantizer (MatMulNBits) handles MatMul only, while torch exports
    `nn.Linear` as Gemm. The MatMul keeps the layer's prefix (`/fc1/MatMul`) so it is still found.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    rewritten = []
    for node in model.graph.node:
        if node.op_type != "Gemm" or not any(node.name.startswith(p) for p in prefixes):
            rewritten.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            raise TargetError(f"cannot rewrite Gemm {node.name!r} with attributes {attrs} as MatMul")
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if attrs.get("transB", 0):
            weight = np.ascontiguousarray(weight.T)
        prefix = node.name.rsplit("/", 1)[0]
        weight_name = f"{prefix}/matmul_weight"
        model.graph.initializer.append(numpy_helper.from_array(weight, weight_name))
        product = f"{prefix}/MatMul_output" if len(node.input) > 2 else node.output[0]
        rewritten.append(helper.make_node("MatMul", [node.input[0], weight_name], [product], name=f"{prefix}/MatMul"))
        if len(node.input) > 2:
            rewritten.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{prefix}/Add"))
    del model.graph.node[:]
    model.graph.node.extend(rewritten)
    used = {name for node in model.graph.node for name in node.input}
    unused = [init for init in model.graph.initializer if init.name not in used]
    for init in unused:  # the Gemm's transposed weight would otherwise ship twice
        model.graph.initializer.remove(init)
    return model
