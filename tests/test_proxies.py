"""Proxies on the tiny real model: monotone in bits and pruning, and failures are reported clearly."""

import math

import pytest

from autotune.errors import ProxyError
from autotune.plan import LayerChoice, Plan
from autotune.proxies import registered_proxies
from autotune.proxies.base import Proxy
from autotune.scoring import ProxyScorer


@pytest.fixture(scope="module")
def scorer(tiny_context):
    return ProxyScorer(tiny_context)


def uniform(context, bits, prune=0.0):
    return Plan(
        {
            name: LayerChoice(bits if name != "head" else 32, prune if name != "head" else 0.0)
            for name in context.layer_kinds
        }
    )


def test_every_registered_proxy_is_found():
    assert {
        "output_divergence",
        "kl_divergence",
        "top1_disagreement",
        "weight_error",
        "model_size",
        "latency_macs",
    } <= set(registered_proxies())


def test_fp32_plan_scores_as_the_reference(tiny_context, scorer):
    scores = scorer.score(uniform(tiny_context, 32), 0)
    assert scores["output_divergence"] == pytest.approx(0.0, abs=1e-6)
    assert scores["weight_error"] == 0.0
    assert scores["latency_macs"] == pytest.approx(1.0)


def test_four_bits_is_worse_than_eight_on_the_same_layers(tiny_context, scorer):
    layers = {"fc1": None, "block2.conv1": None}
    eight = Plan({name: LayerChoice(8) for name in layers})
    four = Plan({"fc1": LayerChoice(4), "block2.conv1": LayerChoice(8)})
    s8, s4 = scorer.score(eight, 0), scorer.score(four, 0)
    assert s4["output_divergence"] > s8["output_divergence"] > 0
    assert s4["weight_error"] > s8["weight_error"] > 0
    assert s4["model_size"] < s8["model_size"]


def test_size_and_latency_shrink_with_bits_and_pruning(tiny_context, scorer):
    fp32, int8, pruned = (
        scorer.score(p, 0) for p in (uniform(tiny_context, 32), uniform(tiny_context, 8), uniform(tiny_context, 8, 0.5))
    )
    assert fp32["model_size"] > int8["model_size"] > pruned["model_size"]
    assert fp32["latency_macs"] > int8["latency_macs"] > pruned["latency_macs"]
    assert pruned["output_divergence"] > int8["output_divergence"]


class NaNProxy(Proxy):
    name = "nan_for_test"

    def compute(self, context):
        return math.nan


class RaisingProxy(Proxy):
    name = "raising_for_test"

    def compute(self, context):
        raise ValueError("calibration batch is empty")


def test_non_finite_and_raising_proxies_become_proxy_errors(tiny_context, scorer):
    plan = uniform(tiny_context, 8)
    scorer_nan = ProxyScorer(tiny_context)
    scorer_nan.proxies = {"nan_for_test": NaNProxy()}
    with pytest.raises(ProxyError, match="'nan_for_test' returned nan"):
        scorer_nan.score(plan, 0)
    scorer_nan.proxies = {"raising_for_test": RaisingProxy()}
    with pytest.raises(ProxyError, match="raised ValueError: calibration batch is empty"):
        scorer_nan.score(plan, 0)


def test_scoring_batch_statistics_score_fp32_as_the_reference_and_rank_like_recalibration(tiny_context):
    """`search_batchnorm = "scoring_batch"`: BatchNorm statistics come from the scoring pass itself."""
    import dataclasses

    spec = tiny_context.spec
    one_pass = dataclasses.replace(
        tiny_context, spec=dataclasses.replace(spec, recovery=dataclasses.replace(spec.recovery, search_batchnorm="scoring_batch"))
    )
    fast, slow = ProxyScorer(one_pass), ProxyScorer(tiny_context)
    assert fast.score(uniform(tiny_context, 32), 0)["output_divergence"] == pytest.approx(0.0, abs=1e-6)
    plans = [uniform(tiny_context, 8, ratio) for ratio in (0.0, 0.25, 0.5)]
    fast_scores = [fast.score(p, 0)["output_divergence"] for p in plans]
    slow_scores = [slow.score(p, 0)["output_divergence"] for p in plans]
    assert fast_scores == sorted(fast_scores) and slow_scores == sorted(slow_scores)
    assert fast_scores[0] > 0
    # Re-scoring (distillation steps) always uses the recovered model's own statistics.
    assert fast.score(plans[1], 2)["output_divergence"] == pytest.approx(slow.score(plans[1], 2)["output_divergence"])


def test_promotion_leaves_out_plans_uniform_int8_dominates_on_the_proxies(scorer, tiny_context):
    """A plan no better than INT8 on any objective nor on size would waste a full evaluation: INT8 is measured anyway."""
    from autotune.promotion import Candidate, without_int8_dominated

    objectives = list(scorer.objectives)
    int8 = scorer.score(tiny_context.reference_plans()["int8"], 0)
    worse = {n: v * 1.5 + 1e-3 for n, v in int8.items()}
    faster = dict(worse) | {objectives[-1]: int8[objectives[-1]] * 0.5}
    dominated = Candidate("candidate", uniform(tiny_context, 32), stage2=worse)
    useful = Candidate("candidate", uniform(tiny_context, 8, 0.3), stage2=faster)
    assert without_int8_dominated(tiny_context, scorer, [dominated, useful], objectives) == [useful]
    assert without_int8_dominated(tiny_context, scorer, [dominated], objectives) == [dominated]  # never none
