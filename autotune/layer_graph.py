"""Which layer feeds which, read from the exported ONNX graph (the layers found there by their weights' names).

Latency has terms that belong to a pair of layers: on ONNX Runtime a float layer inside an INT8 network pays
precision conversions at both ends, and two adjacent float layers share the one between them. An edge (a, b) means
a's output reaches b's input through no other layer and through at most MERGES_PASSED merges (a node joining two
activations: a residual add, a concat, the product of attention scores). Past more merges another branch's values
are mixed in, and a residual stream would link every block to every later one.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path

import onnx
from torch import nn

from autotune.targets.base import BuildContext
from autotune.targets.export import export_onnx

MERGES_PASSED = 1
# Nodes that compute shapes from a tensor's metadata, not from its values: a path through them is not a data path.
SHAPE_OPS = {"Shape", "Size"}


def _activations(graph: onnx.GraphProto) -> set[str]:
    """Tensors carrying the model's values: the graph inputs and what is computed from them (not weights or shapes)."""
    values = {i.name for i in graph.input} - {init.name for init in graph.initializer}
    for node in graph.node:  # ONNX graphs are topologically sorted
        if node.op_type not in SHAPE_OPS and any(name in values for name in node.input):
            values.update(node.output)
    return values


def layer_edges(graph: onnx.ModelProto, nodes: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Sorted (producer, consumer) layer pairs; `nodes` maps each layer to its ONNX nodes (ExportedGraph.nodes)."""
    layer_of = {node: layer for layer, names in nodes.items() for node in names}
    values = _activations(graph.graph)
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.graph.node:
        for name in node.input:
            readers[name].append(node)

    def reach(producer: str, outputs, limit: int | None, descendants: set[str]) -> set[str]:
        """Layers reached from `outputs` through non-layer nodes; with a limit, through at most that many merges
        (a node with an activation input that does not descend from the producer), else every tensor reached is
        added to `descendants`."""
        reached: set[str] = set()
        best: dict[str, int] = {}  # node -> fewest merges passed to reach it
        todo = [(name, 0) for name in outputs]
        while todo:
            tensor, passed = todo.pop()
            if limit is None:
                descendants.add(tensor)
            for reader in readers[tensor]:
                if reader.op_type in SHAPE_OPS:
                    continue
                consumer = layer_of.get(reader.name)
                if consumer is not None:
                    if consumer != producer:
                        reached.add(consumer)
                    continue
                count = passed
                if limit is not None:
                    count += any(name in values and name not in descendants for name in reader.input)
                    if count > limit:
                        continue
                if best.get(reader.name, 1 << 30) <= count:
                    continue
                best[reader.name] = count
                todo.extend((name, count) for name in reader.output)
        return reached

    edges: set[tuple[str, str]] = set()
    for node in graph.graph.node:
        producer = layer_of.get(node.name)
        if producer is None:
            continue
        descendants: set[str] = set()  # a SiLU's x * sigmoid(x) joins one branch with itself: not a merge
        reach(producer, node.output, None, descendants)
        edges.update((producer, consumer) for consumer in reach(producer, node.output, MERGES_PASSED, descendants))
    return sorted(edges)


def model_edges(model: nn.Module, build: BuildContext) -> list[tuple[str, str]]:
    """The layer edges of a model, from its FP32 ONNX export."""
    with tempfile.TemporaryDirectory(prefix="autotune-graph-") as folder:
        exported = export_onnx(model, build.io, build.calibration, build.layers, Path(folder) / "model.onnx")
        return layer_edges(onnx.load(str(exported.path)), exported.nodes)
