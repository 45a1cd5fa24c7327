"""The plans a proxy study tries first, before its sampler proposes any.

Uniform anchors are what a person would try by hand: INT8 everywhere at a few uniform pruning ratios. Target
anchors are each of those with the layers a target's measured latency table runs faster in floating point than
quantized: at least as accurate as the uniform plan, and faster there. ONNX Runtime ran fashion-cnn's stem faster in
f32 than in INT8; a search that never sampled such a stem early settled on INT8 stems and missed the target's fastest
plans (docs/benchmarks.md, 2026-12-03: 1.21x and 1.38x INT8 within a point on two seeds, 1.55x on the one that did).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from autotune.plan import FLOAT_BITS, LayerChoice, Plan
from autotune.search_space import SearchSpace

# A move must gain more than this fraction of the estimate: below it a table's timing noise decides, not the runtime.
MIN_GAIN = 0.01
# A target anchor must gain at least this over its uniform anchor, else it is left out. The full evaluation could not
# tell them apart (the same 50%-pruned IR measured 1.25x-1.54x INT8 in three runs, issue 8), and the plan is INT8 with
# a float layer or two: no smaller, no measurably more accurate. OpenVINO's f32 head, estimated 3% faster, ran 1.01x
# INT8 there and 0.93x on ONNX Runtime, dominated by INT8: 3 of 48 promoted plans in a benchmark run with 1% here
# (2026-12-03 21:32 UTC), 0 of 48 with 5% (docs/benchmarks.md).
MIN_ANCHOR_GAIN = 0.05


def uniform_anchors(space: SearchSpace, ratios: tuple[float, ...]) -> list[Plan]:
    """INT8 everywhere (the closest choice per layer) at each uniform pruning ratio, distinct plans in order."""
    plans: dict[str, Plan] = {}
    for ratio in ratios:
        plan = space.uniform_plan(8, ratio)
        plans.setdefault(plan.digest(), plan)
    return list(plans.values())


def float_where_faster(space: SearchSpace, plan: Plan, estimate_ms: Callable[[Plan], float]) -> Plan:
    """`plan` with each quantized layer moved, in model order, to the float precision its space allows where the
    estimate gains more than MIN_GAIN (the plan's pruning kept); a move never lowers a layer's precision."""
    best, best_ms = plan, estimate_ms(plan)
    for layer in space.layers:
        current = best.choice(layer.name)
        if current.bits in FLOAT_BITS:
            continue
        for bits in (b for b in layer.bits if b in FLOAT_BITS):
            moved = Plan(dict(best.layers) | {layer.name: LayerChoice(bits, current.prune)})
            moved_ms = estimate_ms(moved)
            if moved_ms < best_ms * (1 - MIN_GAIN):
                best, best_ms = moved, moved_ms
    return best


def target_anchors(
    space: SearchSpace, anchors: list[Plan], estimators: Mapping[str, Callable[[Plan], float]]
) -> list[tuple[Plan, str]]:
    """(plan, target) for each anchor and each target whose estimate moves some layer to float and gains at least
    MIN_ANCHOR_GAIN over the anchor; distinct plans that are not anchors already."""
    seen = {plan.digest() for plan in anchors}
    found = []
    for target, estimate_ms in estimators.items():
        for anchor in anchors:
            plan = float_where_faster(space, anchor, estimate_ms)
            if estimate_ms(plan) > estimate_ms(anchor) * (1 - MIN_ANCHOR_GAIN):
                continue
            if plan.digest() not in seen:
                seen.add(plan.digest())
                found.append((plan, target))
    return found
