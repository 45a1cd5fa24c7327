import pytest

from autotune.errors import PlanError
from autotune.plan import LayerChoice, Plan


def test_plan_round_trips_through_json():
    plan = Plan({"stem.conv": LayerChoice(8, 0.3), "fc1": LayerChoice(4, 0.0), "head": LayerChoice(32)})
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert again.digest() == plan.digest()
    assert again.choice("fc1").bits == 4


def test_float_grid_ratios_compare_equal_after_rounding():
    assert LayerChoice(8, 0.1 * 3).prune == LayerChoice(8, 0.3).prune
    assert Plan({"a": LayerChoice(8, 0.1 * 3)}).digest() == Plan({"a": LayerChoice(8, 0.3)}).digest()


def test_digest_ignores_layer_order_but_display_keeps_model_order():
    forward = Plan({"b": LayerChoice(8), "a": LayerChoice(4)})
    backward = Plan({"a": LayerChoice(4), "b": LayerChoice(8)})
    assert forward.digest() == backward.digest()
    assert list(forward.layers) == ["b", "a"]


def test_pruning_subplan_is_shared_by_plans_differing_only_in_bits():
    a = Plan({"x": LayerChoice(8, 0.5), "y": LayerChoice(32)})
    b = Plan({"x": LayerChoice(4, 0.5), "y": LayerChoice(8)})
    assert a.pruning() == b.pruning()
    assert a.digest() != b.digest()
    assert a.pruning() == {"x": 0.5}


def test_uniform_plans_cover_every_layer():
    plan = Plan.uniform(["a", "b"], 8)
    assert plan.bits() == {"a": 8, "b": 8}
    assert plan.pruning() == {}


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda: LayerChoice(3), "bits=3"),
        (lambda: LayerChoice(8, 1.0), "prune=1.0"),
        (lambda: Plan.from_json("{"), "JSON"),
    ],
)
def test_invalid_choices_are_refused(bad, message):
    with pytest.raises(PlanError, match=message):
        bad()


def test_unknown_layer_is_named():
    with pytest.raises(PlanError, match=r"unknown layer\(s\) \['nope'\]"):
        Plan({"nope": LayerChoice(8)}).validate_layers(["stem.conv"])


def test_long_plans_are_summarised_by_counts():
    plan = Plan({f"l{i}": LayerChoice(8 if i % 4 else 4, 0.25 if i < 6 else (0.5 if i == 6 else 0.0)) for i in range(20)})
    assert plan.counts() == "8b x15, 4b x5; 7 pruned 25%-50%"
    assert Plan({"a": LayerChoice(32)}).counts() == "32b x1"
