"""The in-context latency table on a real runtime: exact where it measured, positive everywhere."""

import math

import pytest

from autotune.latency_table import PROBE_PRUNE, LatencyTable
from autotune.plan import LayerChoice, Plan
from autotune.spec import load_hardware


@pytest.fixture(scope="module")
def table(tiny_context):
    return LatencyTable(load_hardware("cpu-onnxruntime"), tiny_context.recovery.teacher, tiny_context.calibration, 8)


def test_base_plan_estimates_the_measured_base(table):
    assert table.base_ms > 0
    assert table.estimate_ms(table.base) == pytest.approx(table.base_ms)


def test_a_single_layer_change_estimates_what_was_measured(table):
    (name, bits, ratio), log_ratio = next(iter(table.log_ratios.items()))
    changed = Plan(dict(table.base.layers) | {name: LayerChoice(bits, ratio)})
    assert table.estimate_ms(changed) == pytest.approx(table.base_ms * math.exp(log_ratio))


def test_every_layer_and_choice_was_probed_and_heavy_pruning_stays_positive(table, tiny_context):
    for name, kind in tiny_context.layer_kinds.items():
        for bits in table.spec.weight_bits[kind]:
            assert (name, bits, 0.0) in table.log_ratios or table.base.choice(name).bits == bits
    assert any(ratio == PROBE_PRUNE for _, _, ratio in table.log_ratios)
    pruned = tiny_context.space.uniform_plan(8, 0.7)
    assert 0 < table.estimate_ms(pruned) < float("inf")
