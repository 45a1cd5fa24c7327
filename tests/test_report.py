"""The measured front table, rendered from a real Optuna study."""

import optuna
from optuna.distributions import FloatDistribution
from rich.console import Console

from autotune.plan import LayerChoice, Plan
from autotune.report import front_table


def _trial(role: str, values: list[float], plan: Plan, divergence: float):
    return optuna.trial.create_trial(
        values=values,
        params={"x": 0.0},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs={"role": role, "plan": plan.to_dict(), "lee_pearson": 0.65 - values[0] / 100,
                    "fp32_divergence": divergence, "throughput_per_s": 30.0, "latency_p95_ms": values[1] * 1.1},
    )


def test_long_plans_are_counted_and_drift_from_fp32_is_shown():
    names = [f"encoder.layer.{i}.dense" for i in range(20)]
    study = optuna.create_study(directions=["minimize"] * 3)
    study.set_user_attr("metric_name", "lee_pearson")
    study.set_user_attr("throughput_batch", 8)
    study.add_trial(_trial("fp32", [0.0, 50.0, 90.0], Plan({n: LayerChoice(32) for n in names}), -0.0))
    study.add_trial(_trial("int8", [0.3, 44.0, 23.0], Plan({n: LayerChoice(8) for n in names}), 0.0117))
    pruned = Plan({n: LayerChoice(8, 0.25 if i < 4 else 0.0) for i, n in enumerate(names)})
    study.add_trial(_trial("candidate", [-2.6, 35.0, 21.0], pruned, 0.2661))
    console = Console(record=True, width=220)
    console.print(front_table(study))
    text = console.export_text()
    assert "samples/s @8" in text and "img/s" not in text
    assert "8b x20; 4 pruned 25%" in text and "encoder.layer.19.dense" not in text
    assert "0.2661" in text and "0.0117" in text and "-0.0000" not in text
    assert "lee_pearson" in text


def test_candidates_uniform_int8_dominates_are_named():
    names = ["conv", "fc"]
    study = optuna.create_study(directions=["minimize"] * 3)
    study.set_user_attr("throughput_batch", 64)
    study.add_trial(_trial("fp32", [0.0, 1.0, 4.0], Plan({n: LayerChoice(32) for n in names}), 0.0))
    study.add_trial(_trial("int8", [0.3, 0.5, 1.0], Plan({n: LayerChoice(8) for n in names}), 0.01))
    slower = Plan({"conv": LayerChoice(32), "fc": LayerChoice(8)})
    study.add_trial(_trial("candidate", [0.5, 0.9, 2.5], slower, 0.02))  # same throughput, worse drop, bigger
    smaller = Plan({"conv": LayerChoice(8, 0.5), "fc": LayerChoice(8)})
    study.add_trial(_trial("candidate", [0.8, 0.4, 0.6], smaller, 0.05))  # smaller than INT8: not dominated
    console = Console(record=True, width=220)
    console.print(front_table(study))
    text = console.export_text()
    assert "1 of 2 candidates dominated by uniform INT8" in text and ": #2" in text
