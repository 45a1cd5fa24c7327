"""Pareto helpers on moocore: the semantics promotion and the warm start rely on, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from autotune.pareto import hypervolume, nondominated_ranks, pareto_mask, spread


def test_equal_rows_are_all_kept_and_a_dominated_row_is_not():
    values = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    assert pareto_mask(values).tolist() == [True, True, True, False, False]
    assert nondominated_ranks(values).tolist() == [0, 0, 0, 1, 2]


def test_ranks_peel_fronts_in_three_objectives():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5, (60, 3)).astype(float)
    ranks = nondominated_ranks(values)
    for rank in range(ranks.max() + 1):
        layer = values[ranks == rank]
        assert pareto_mask(layer).all()  # a rank is mutually non-dominated
        if rank:
            better = values[ranks == rank - 1]
            for row in layer:  # and each member is dominated by something one rank better
                assert any(np.all(b <= row) and np.any(b < row) for b in better)


def test_hypervolume_is_exact_and_ignores_points_beyond_the_reference():
    reference = np.array([6.0, 6.0])
    assert hypervolume(np.array([[1.0, 5.0], [2.0, 2.0], [5.0, 1.0]]), reference) == pytest.approx(18.0)
    assert hypervolume(np.array([[2.0, 2.0], [7.0, 0.5]]), reference) == pytest.approx(16.0)
    assert hypervolume(np.zeros((0, 2)), reference) == 0.0


def test_spread_takes_each_objectives_extreme_first():
    values = np.array([[0.0, 9.0], [9.0, 0.0], [4.0, 4.0], [5.0, 5.0], [1.0, 8.0]])
    assert set(spread(values, 2)) == {0, 1}
    assert len(set(spread(values, 4))) == 4


def test_promotion_gives_each_target_its_share_from_the_front_of_its_own_latency():
    from autotune.promotion import pick_by_rank, pick_for_targets

    objectives = ["output_divergence", "latency_measured@cpu-openvino", "latency_measured@cpu-onnxruntime"]
    # 12 plans trading divergence for ONNX Runtime latency, all slow on OpenVINO; 3 fast on OpenVINO alone.
    fast_there = [[0.1 * i, 5.0, 1.0 - 0.05 * i] for i in range(12)]
    fast_here = [[0.3 * i, 1.0 - 0.2 * i, 6.0] for i in range(3)]
    values = np.array(fast_there + fast_here)
    picked = pick_for_targets(values, objectives, 6, per_target=True)
    assert len(picked) == len(set(picked)) == 6
    assert {12, 13, 14} <= set(picked)  # OpenVINO's share: its own front, whatever ONNX Runtime's front holds
    assert sum(i < 12 for i in picked) == 3
    assert pick_for_targets(values, objectives, 6, per_target=False) == pick_by_rank(values, 6)
    # One target (or none): the front of every objective, as before.
    assert pick_for_targets(values[:, :2], objectives[:2], 4, per_target=True) == pick_by_rank(values[:, :2], 4)
