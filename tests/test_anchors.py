"""Anchor plans: uniform INT8 at the spec's ratios, and each with the layers a target's estimate runs faster in float."""

from __future__ import annotations

from autotune.anchors import MIN_ANCHOR_GAIN, MIN_GAIN, float_where_faster, target_anchors, uniform_anchors
from autotune.search_space import GroupSpace, LayerSpace, SearchSpace

SPACE = SearchSpace(
    (
        LayerSpace("stem", "conv", (8, 32)),
        LayerSpace("body", "conv", (8, 16, 32)),
        LayerSpace("fc", "linear", (4, 8, 32)),
        LayerSpace("head", "linear", (8,)),
    ),
    (GroupSpace("stem", ("stem", "body"), (0.0, 0.5), (16, 8)),),
)


def cost_table(seconds: dict[tuple[str, int], float]):
    """A latency that adds one cost per (layer, bits) choice: 1.0 for any choice not listed."""
    return lambda plan: sum(seconds.get((name, choice.bits), 1.0) for name, choice in plan.layers.items())


def test_a_layer_moves_to_the_fastest_float_precision_its_space_allows_and_keeps_its_pruning():
    anchor = SPACE.uniform_plan(8, 0.5)
    estimate = cost_table({("stem", 32): 0.5, ("body", 16): 0.8, ("body", 32): 0.6})
    moved = float_where_faster(SPACE, anchor, estimate)
    assert moved.bits() == {"stem": 32, "body": 32, "fc": 8, "head": 8}
    assert moved.pruning() == anchor.pruning() == {"stem": 0.5, "body": 0.5}


def test_no_layer_moves_for_a_gain_within_the_noise_nor_to_fewer_bits():
    anchor = SPACE.uniform_plan(8, 0.0)
    within_noise = 1.0 - MIN_GAIN * 4 / 2  # the plan costs 4: half the least gain counted
    estimate = cost_table({("stem", 32): within_noise, ("fc", 4): 0.1, ("body", 32): 1.5})
    assert float_where_faster(SPACE, anchor, estimate) == anchor


def test_target_anchors_are_distinct_and_leave_out_anchors_no_target_changes_enough():
    anchors = uniform_anchors(SPACE, (0.0, 0.3, 0.5))
    assert [a.pruning() for a in anchors] == [{}, {"stem": 0.5, "body": 0.5}]  # 0.3 snaps to 0.5: one plan, listed once
    faster_stem = cost_table({("stem", 32): 0.5})
    slightly_faster = cost_table({("stem", 32): 1.0 - 4 * MIN_ANCHOR_GAIN / 2})  # moves (over MIN_GAIN), gains too little
    assert float_where_faster(SPACE, anchors[0], slightly_faster).bits()["stem"] == 32
    estimators = {"a": faster_stem, "b": faster_stem, "c": cost_table({}), "d": slightly_faster}
    found = target_anchors(SPACE, anchors, estimators)
    assert [target for _, target in found] == ["a", "a"]  # "b" finds the same plans, "c" none, "d" none worth a trial
    assert [plan.bits()["stem"] for plan, _ in found] == [32, 32]
    assert [plan.pruning() for plan, _ in found] == [a.pruning() for a in anchors]
