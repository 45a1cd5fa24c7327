"""Layer edges read from the exported graph, on models autotune was not shaped around (tests/zoo.py)."""

import pytest
import zoo

from autotune.layer_graph import model_edges
from autotune.layers import index_model
from autotune.targets.base import BuildContext
from autotune.workloads.io import take


def edges_of(workload) -> list[tuple[str, str]]:
    model = workload.fp32_model()
    layers = index_model(model, workload.io, take(workload.calibration, slice(0, 2)))
    return model_edges(model, BuildContext(layers, workload.io, workload.calibration))


def test_a_numbered_sequential_is_a_chain(workspace):
    assert edges_of(zoo.sequential_cnn()) == [
        ("classifier.1", "classifier.3"),
        ("features.0", "features.3"),
        ("features.3", "classifier.1"),
    ]


def test_residual_blocks_link_across_one_add_not_two(workspace):
    edges = set(edges_of(zoo.depthwise_cnn()))
    for block in range(3):  # inside an inverted-residual block: expand -> depthwise -> project
        assert (f"blocks.{block}.expand.0", f"blocks.{block}.depthwise.0") in edges
        assert (f"blocks.{block}.depthwise.0", f"blocks.{block}.project.0") in edges
    # The shortcut carries the stem past block 0's add into block 1, and block 0's output into block 1.
    assert {("stem.0", "blocks.0.expand.0"), ("stem.0", "blocks.1.expand.0"), ("blocks.0.project.0", "blocks.1.expand.0")} <= edges
    # Past a second add the values are another block's: no edge (a residual stream would link every block).
    assert ("stem.0", "blocks.2.expand.0") not in edges and ("blocks.0.project.0", "blocks.2.expand.0") not in edges
    assert ("blocks.2.project.0", "head") in edges


def test_a_shared_module_and_concatenated_branches(workspace):
    edges = edges_of(zoo.nested_shared())
    assert all(a != b for a, b in edges)  # the module applied twice has no edge to itself
    assert ("body.inner.shared", "body.inner.merge") in edges and ("body.inner.side", "body.inner.merge") in edges
    assert ("stem", "body.inner.shared") in edges and ("stem", "body.inner.side") in edges


@pytest.mark.parametrize("block", [0, 1])
def test_a_transformer_links_attention_and_feed_forward_not_shape_computations(workspace, block):
    edges = set(edges_of(zoo.tiny_bert()))
    prefix = f"bert.encoder.layer.{block}"
    assert (f"{prefix}.attention.self.value", f"{prefix}.attention.output.dense") in edges
    assert (f"{prefix}.intermediate.dense", f"{prefix}.output.dense") in edges  # through GELU
    # Query and key meet in the scores (a merge), then the values (a second): they do not reach the output dense.
    assert (f"{prefix}.attention.self.query", f"{prefix}.attention.output.dense") not in edges
    # Nothing reaches the pooler from the embeddings, as it would through the shapes computed from the input ids.
    assert not any(a.startswith("bert.embeddings") and b == "bert.pooler.dense" for a, b in edges)
    assert len(edges) < 40
