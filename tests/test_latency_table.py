"""The in-context latency table on a real runtime: exact where it measured, positive everywhere."""

import dataclasses
import math

import numpy as np
import pytest

from autotune.latency_table import PROBE_PRUNE, LatencyTable
from autotune.plan import LayerChoice, Plan
from autotune.spec import MeasureSettings, load_hardware


@pytest.fixture(scope="module")
def table(tiny_context):
    return LatencyTable(load_hardware("cpu-onnxruntime"), tiny_context.recovery.pruner, tiny_context.build_context(), 8)


def test_base_plan_estimates_the_measured_base(table):
    assert table.base_ms > 0
    assert table.estimate_ms(table.base) == pytest.approx(table.base_ms)


def test_a_single_layer_change_estimates_what_was_measured(table, tiny_context):
    (name, bits), log_ratio = next(iter(table.log_ratios.items()))
    changed = Plan(dict(table.base.layers) | {name: LayerChoice(bits)})
    assert table.estimate_ms(changed) == pytest.approx(table.base_ms * math.exp(log_ratio))
    # One pruning group at the probed ratio, every member together, is what was measured too.
    root, log_ratio = next(iter(table.log_prune_ratios.items()))
    group = next(g for g in tiny_context.recovery.pruner.groups if g.root == root)
    pruned = Plan(
        dict(table.base.layers) | {m: LayerChoice(table.base.choice(m).bits, PROBE_PRUNE) for m in group.layers}
    )
    assert table.estimate_ms(pruned) == pytest.approx(table.base_ms * math.exp(log_ratio))


def test_every_layer_and_choice_was_probed_and_heavy_pruning_stays_positive(table, tiny_context):
    for name, kind in tiny_context.layer_kinds.items():
        for bits in table.spec.weight_bits[kind]:
            assert (name, bits) in table.log_ratios or table.base.choice(name).bits == bits
    prunable = {group.root for group in tiny_context.recovery.pruner.prunable}
    assert prunable and set(table.log_prune_ratios) == prunable
    pruned = tiny_context.space.uniform_plan(8, 0.7)
    assert 0 < table.estimate_ms(pruned) < float("inf")
    heavy = Plan(
        dict(table.base.layers)
        | {
            m: LayerChoice(table.base.choice(m).bits, 0.7)
            for g in tiny_context.recovery.pruner.prunable
            for m in g.layers
        }
    )
    assert 0 < table.estimate_ms(heavy) < float("inf")


def test_a_base_per_precision_makes_every_uniform_plan_exact(tiny_context):
    """FP32 far from the INT8 base was estimated at 10x its measured latency; with a base per precision the uniform
    plans are measured, and a mixed plan lies between the estimates of its precisions' bases."""
    table = LatencyTable(
        load_hardware("cpu-onnxruntime"), tiny_context.recovery.pruner, tiny_context.build_context(), 8, "per_precision"
    )
    assert len(table.bases) >= 2
    for index, base in enumerate(table.bases):
        assert table.estimate_ms(base) == pytest.approx(table.base_ms_of[index])
    assert any(set(base.bits().values()) == {32} for base in table.bases)
    names = list(table.base.layers)
    mixed = Plan({n: LayerChoice(32 if i % 2 else 8) for i, n in enumerate(names)})
    # A weighted geometric mean of the bases' estimates lies within them.
    estimates = [math.exp(table._log_estimate(i, mixed)) for i in range(len(table.bases))]
    assert min(estimates) * 0.999 <= table.estimate_ms(mixed) <= max(estimates) * 1.001


def test_bases_per_precision_on_a_target_with_one_float_precision_per_model(tiny_context):
    """OpenVINO's precision hint is per model: where it runs 16-bit floats, probes it cannot build (16 beside 32) or
    realise are left out rather than stopping the table, and every base is still measured exactly."""
    hardware = load_hardware("cpu-openvino")
    if hardware.half is None:
        pytest.skip(f"this CPU runs no 16-bit float in OpenVINO ({hardware.half_note})")
    # Convolutions at INT8 only and no pruned width (a channel multiple above every width): 7 builds, not 75.
    hardware = dataclasses.replace(hardware, weight_bits=hardware.weight_bits | {"conv": (8,), "linear": (8, 16, 32)})
    table = LatencyTable(hardware, tiny_context.recovery.pruner, tiny_context.build_context(), 4096, "per_precision")
    assert table.precisions == [8, 32, 16]
    # Each float base's probe at the other float precision was refused and left out; its INT8 probes were measured.
    assert [{bits for _, bits in ratios} for ratios in table.log_ratios_of] == [{16, 32}, {8}, {8}]
    assert 16 in table.precisions and 32 in table.precisions
    for index, base in enumerate(table.bases):
        assert table.estimate_ms(base) == pytest.approx(table.base_ms_of[index])
        for name, bits in table.log_ratios_of[index]:
            assert not {16, 32} <= set((dict(base.bits()) | {name: bits}).values()), (name, bits)


@pytest.fixture(scope="module")
def fine_table(tiny_context):
    ratios = tiny_context.space.prune_ratios()
    return LatencyTable(
        load_hardware("cpu-onnxruntime"), tiny_context.recovery.pruner, tiny_context.build_context(), 8,
        pruning_probes="every_width", prune_ratios=ratios, pruning_precisions="every",
    )


def test_every_width_at_every_precision_estimates_each_probe_as_measured(fine_table, tiny_context):
    """Kernels are fast on some widths and not others, and a float layer pruned gains where an INT8 one loses: each
    width the space keeps is probed at each precision of the group's first layer, and such a plan is what was timed."""
    table, checked = fine_table, 0
    for group in tiny_context.space.groups:
        kinds = tiny_context.layer_kinds
        for bits in table.spec.weight_bits[kinds[group.root]]:
            for ratio in group.ratios[1:]:
                layers = {m: LayerChoice(table.base.choice(m).bits, ratio) for m in group.layers}
                plan = Plan(dict(table.base.layers) | layers | {group.root: LayerChoice(bits, ratio)})
                assert table.estimate_ms(plan) == pytest.approx(table.measured_ms(plan), rel=1e-9), (group.root, bits, ratio)
                checked += 1
    assert checked >= 4


def test_summed_deltas_add_each_change_s_measured_time(tiny_context, fine_table):
    """`sum` adds each layer's measured time delta instead of multiplying ratios: many float layers do not compound."""
    ratios = tiny_context.space.prune_ratios()
    table = LatencyTable(
        load_hardware("cpu-onnxruntime"), tiny_context.recovery.pruner, tiny_context.build_context(), 8,
        prune_ratios=ratios, composition="sum",
    )
    (first, bits_a), (second, bits_b) = [key for key in table.log_ratios if key[1] == 32][:2]
    one = Plan(dict(table.base.layers) | {first: LayerChoice(bits_a)})
    other = Plan(dict(table.base.layers) | {second: LayerChoice(bits_b)})
    both = Plan(dict(table.base.layers) | {first: LayerChoice(bits_a), second: LayerChoice(bits_b)})
    expected = table.measured_ms(one) + table.measured_ms(other) - table.base_ms
    assert table.estimate_ms(both) == pytest.approx(expected)
    fp32 = Plan({n: LayerChoice(32) for n in table.base.layers})
    assert 0 < table.estimate_ms(fp32) < float("inf")


def test_pair_terms_estimate_each_measured_pair_as_measured_and_apply_only_to_adjacent_float_layers(table, tiny_context):
    """Two adjacent float layers share the precision conversion between them: each adjacent pair is measured, and its
    term applies only where both of its layers run float activations."""
    paired = LatencyTable(
        load_hardware("cpu-onnxruntime"), tiny_context.recovery.pruner, tiny_context.build_context(), 8, boundaries="pairs"
    )
    assert paired.edges and set(paired.pair_log_ratios) == set(paired.edges)
    base = dict(paired.base.layers)
    for a, b in paired.edges:
        pair = Plan(base | {a: LayerChoice(32), b: LayerChoice(32)})
        assert paired.estimate_ms(pair) == pytest.approx(paired.measured_ms(pair))
        one = Plan(base | {a: LayerChoice(32)})
        assert paired.estimate_ms(one) == pytest.approx(table.estimate_ms(one))  # one float layer: no pair term
    adjacent = {frozenset(edge) for edge in paired.edges}
    apart = next((a, b) for a in base for b in base if a < b and frozenset((a, b)) not in adjacent)
    both_apart = Plan(base | {name: LayerChoice(32) for name in apart})
    assert paired.estimate_ms(both_apart) == pytest.approx(table.estimate_ms(both_apart))


def test_latency_settings_resolve_per_target_by_name_then_backend():
    from autotune.proxies.latency_measured import MeasuredLatency

    openvino, onnxruntime = load_hardware("cpu-openvino"), load_hardware("cpu-onnxruntime")
    settings = {"pruning_probes": {"openvino": "every_width"}, "composition": {"cpu-onnxruntime": "sum"}}
    assert MeasuredLatency(settings | {"target": openvino}).setting("pruning_probes") == "every_width"
    assert MeasuredLatency(settings | {"target": onnxruntime}).setting("pruning_probes") == "half_width"
    assert MeasuredLatency(settings | {"target": onnxruntime}).setting("composition") == "sum"
    assert MeasuredLatency(settings | {"target": openvino}).setting("composition") == "product"


def test_every_width_over_the_probe_budget_falls_back_to_half_width(tiny_context, monkeypatch):
    """A model with many pruning groups would spend its first trial measuring every width: past the budget the table
    probes half widths, as the former table did, and says so."""
    import autotune.latency_table as latency_table

    monkeypatch.setattr(latency_table, "PRUNING_PROBE_BUDGET", 0)
    ratios = tiny_context.space.prune_ratios()
    table = LatencyTable(
        load_hardware("cpu-onnxruntime"), tiny_context.recovery.pruner, tiny_context.build_context(), 8,
        pruning_probes="every_width", prune_ratios=ratios,
    )
    assert table.pruning_probes == "half_width"
    prunable = {group.root for group in tiny_context.recovery.pruner.prunable}
    assert set(table.log_prune_ratios) == prunable
    assert all(len(curves[table.base.choice(root).bits]) <= 2 for root, curves in table.prune_curves_of[0].items())


def test_probes_timed_in_interleaved_rounds_are_the_median_of_each_plan_s_timings(table, tiny_context):
    """One timing on a shared machine drifts by about 10%: with probe_rounds the probes are built together, timed in
    turn round after round, and each keeps its median; every probe the one-round table asks for is measured, and the
    base stays exact."""
    rounds = LatencyTable(load_hardware("cpu-onnxruntime"), tiny_context.recovery.pruner, tiny_context.build_context(), 8, probe_rounds=2)
    assert rounds.probe_rounds == 2 and rounds.estimate_ms(rounds.base) == pytest.approx(rounds.base_ms)
    assert set(rounds.log_ratios) == set(table.log_ratios) and set(rounds.log_prune_ratios) == set(table.log_prune_ratios)
    # The same probes, timed apart, agree on how the probes compare within the machine's noise. Compared after the
    # common offset is taken out: the one-round table's base is one timing, and on a loaded CI machine one such timing
    # ran 1.8x its usual (every difference 0.55-0.77 in log), as one probe's ran 3x in another run.
    differences = np.array([rounds.log_ratios[key] - log_ratio for key, log_ratio in table.log_ratios.items()])
    spread = np.abs(differences - np.median(differences))
    assert np.median(spread) < 0.5, differences
    # Each ratio is its probe's median over the rounds against the base's.
    for (name, bits), log_ratio in rounds.log_ratios.items():
        probe = Plan(dict(rounds.base.layers) | {name: LayerChoice(bits)})
        assert log_ratio == pytest.approx(np.log(rounds.measured_ms(probe) / rounds.base_ms))
    # Another table of the model (a check's fallback) times only the probes this one did not, with the INT8 base
    # again: the reused probes keep their ratios to the base, at the base's new level.
    reused = [plan for plan in rounds.timings if plan != rounds.base.to_json()][:2]
    fresh = Plan(dict(rounds.base.layers) | {next(iter(tiny_context.layer_kinds)): LayerChoice(32, 0.5)}).to_json()
    assert fresh not in rounds.timings
    found = rounds._timed_in_rounds((rounds.base.to_json(), *reused, fresh), rounds.timings, tiny_context.recovery.pruner, tiny_context.build_context())
    assert set(found) == {rounds.base.to_json(), *reused, fresh} and all(value > 0 for value in found.values())
    for plan in reused:
        assert found[plan] / found[rounds.base.to_json()] == pytest.approx(rounds.timings[plan] / rounds.base_ms)


def test_round_drift_is_removed_and_ratios_within_a_round_are_kept():
    """A whole round slowed by the load (every plan in it by the same factor) leaves no trace in the plans' medians;
    what the plans measured against each other within a round stays."""
    from autotune.latency_table import even_chunks, without_round_drift

    true_ms = {"a": 1.0, "b": 1.2, "c": 2.0}
    drift = [1.0, 1.3, 0.9, 1.5]
    noise = {"a": [1.0, 1.02, 0.97, 1.0], "b": [0.99, 1.0, 1.03, 0.98], "c": [1.0, 0.97, 1.0, 1.04]}
    timed = {key: [ms * d * n for d, n in zip(drift, noise[key], strict=True)] for key, ms in true_ms.items()}
    steady = without_round_drift(timed)
    level = np.exp(np.mean(np.log(drift)))
    for key, ms in true_ms.items():
        assert np.median(steady[key]) == pytest.approx(ms * level, rel=0.04)
        for r in range(len(drift)):
            assert steady[key][r] / steady["a"][r] == pytest.approx(timed[key][r] / timed["a"][r])
    # Without noise the drift goes exactly: each plan's timings become one value.
    exact = without_round_drift({key: [ms * d for d in drift] for key, ms in true_ms.items()})
    assert all(np.ptp(values) == pytest.approx(0.0, abs=1e-12) for values in exact.values())
    # One plan, or one round, has no drift to tell apart from the plans: returned as timed.
    assert without_round_drift({"a": timed["a"]}) == {"a": timed["a"]}
    one_round = {key: values[:1] for key, values in timed.items()}
    assert without_round_drift(one_round) == one_round
    # Chunks are cut evenly, so none is left with a single plan whose drift cannot be told apart.
    assert [len(chunk) for chunk in even_chunks([str(i) for i in range(17)], 16)] == [9, 8]
    assert [len(chunk) for chunk in even_chunks([str(i) for i in range(32)], 16)] == [16, 16] and even_chunks([], 16) == []


def test_chunks_are_brought_to_the_level_of_the_anchor_timed_in_each():
    """Chunks timed minutes apart see different loads: each is scaled so the anchor's median in it is the geometric
    mean of the anchor's medians, which keeps every ratio to the anchor within its chunk."""
    from autotune.latency_table import onto_anchor

    slow, fast = 1.6, 0.9  # the load while each chunk was timed
    chunks = [
        {"base": [1.0 * slow, 1.02 * slow], "a": [2.0 * slow, 2.04 * slow]},
        {"base": [1.0 * fast, 0.98 * fast], "b": [3.0 * fast, 2.94 * fast]},
    ]
    found = onto_anchor(chunks, "base")
    level = np.sqrt(np.median(chunks[0]["base"]) * np.median(chunks[1]["base"]))
    assert np.median(found["a"]) / level == pytest.approx(2.0, rel=1e-6)
    assert np.median(found["b"]) / level == pytest.approx(3.0, rel=1e-6)
    assert len(found["base"]) == 4 and np.median(found["base"]) == pytest.approx(level, rel=0.02)
    # A chunk where the anchor was not timed is kept as it is.
    assert onto_anchor([{"x": [1.0, 2.0]}], "base") == {"x": [1.0, 2.0]}


def test_an_anchor_is_timed_in_every_chunk_of_real_probes(tiny_context):
    """Probes over several chunks: the anchor is built and timed in each, the others once; every plan gets its rounds."""
    from autotune.latency_table import time_in_rounds, timing_context

    space = tiny_context.space
    plans = {plan.to_json(): plan for plan in space.random_plans(5, seed=3)}
    base = next(iter(plans))
    build = timing_context(tiny_context.build_context())
    hardware = load_hardware("cpu-onnxruntime")
    fast = MeasureSettings(warmup=1, min_repeats=3, min_seconds=0.01, max_repeats=50)
    found = time_in_rounds(hardware, plans, tiny_context.recovery.pruner, build, 8, 2, fast, chunk=3, anchor=base)
    assert set(found) == set(plans) and all(isinstance(v, list) and min(v) > 0 for v in found.values())
    # 4 other plans in chunks of 2 beside the anchor: the anchor timed twice per chunk, the others twice in all.
    assert len(found[base]) == 4 and all(len(v) == 2 for k, v in found.items() if k != base)


def test_probe_rounds_out_of_range_is_refused_naming_the_field(tmp_path):
    from autotune.errors import SpecError
    from autotune.spec import load_proxy_recipe

    path = tmp_path / "r.toml"
    path.write_text('objectives = ["output_divergence", "latency_measured"]\n[latency_measured]\nprobe_rounds = 0\n')
    with pytest.raises(SpecError, match=r"r.toml: latency_measured.probe_rounds: 0: expected an integer from 1 to 9"):
        load_proxy_recipe(str(path))
    path.write_text('objectives = ["output_divergence", "latency_measured"]\n[latency_measured]\nprobe_rounds = { openvino = 3 }\n')
    assert load_proxy_recipe(str(path)).settings["latency_measured"]["probe_rounds"] == {"openvino": 3}


def test_a_table_that_misranks_whole_plans_gives_way_to_a_fallback_that_ranks_them_clearly_better(table, tiny_context):
    """The check's rule on a real table: times it ranks exactly never measure the fallback; times it ranks backwards
    measure it, and it is used only where it ranks them better by the margin."""
    from autotune.latency_check import checked_table

    plans = tiny_context.space.random_plans(8, seed=3)
    own = {p.to_json(): table.estimate_ms(p) for p in plans}
    assert len(set(own.values())) == len(plans)  # distinct estimates, so rankings are strict

    def never() -> LatencyTable:
        raise AssertionError("the fallback was measured for a table that ranks the plans exactly")

    kept, check = checked_table("cpu-onnxruntime", table, never, own, plans)
    assert kept is table and check.spearman == pytest.approx(1.0) and check.median_error == pytest.approx(1.0)
    assert check.fallback_spearman is None and not check.uses_fallback

    class Inverse:  # a table whose estimates rank plans opposite to the real one
        def estimate_ms(self, plan: Plan) -> float:
            return 1.0 / table.estimate_ms(plan)

    backwards = {p.to_json(): 1.0 / ms for p, ms in zip(plans, own.values(), strict=True)}
    inverse = Inverse()
    kept, check = checked_table("cpu-onnxruntime", table, lambda: inverse, backwards, plans)
    assert kept is inverse and check.uses_fallback
    assert check.spearman == pytest.approx(-1.0) and check.fallback_spearman == pytest.approx(1.0)
    assert check.describe() == (
        "latency table on cpu-onnxruntime ranks 8 whole plans timed on it at Spearman -1.00; a base per precision "
        "with summed time deltas ranks them at +1.00: uses it instead"
    )
    kept, check = checked_table("cpu-onnxruntime", table, lambda: table, backwards, plans)  # no better: kept
    assert kept is table and not check.uses_fallback and check.fallback_spearman == pytest.approx(-1.0)


def test_the_check_drops_pair_terms_where_the_plans_rank_clearly_better_without_them(table, tiny_context):
    """The same table with and without its pair terms, ranked on the same timings: times the pairless table ranks
    exactly drop the terms (and the fallback is not measured); times the paired one ranks exactly keep them."""
    import copy

    from scipy.stats import spearmanr

    from autotune.latency_check import checked_table

    plans = tiny_context.space.random_plans(40, seed=5)
    pairless_times = {p.to_json(): table.estimate_ms(p) for p in plans}

    def with_pair(a: str, b: str) -> LatencyTable:  # the pair, both float, 20x slower than its two layers say
        paired = copy.copy(table)
        paired.pair_log_ratios = {(a, b): 3.0}
        return paired

    def misranks(pair: tuple[str, str]) -> float:
        return spearmanr([with_pair(*pair).estimate_ms(p) for p in plans], list(pairless_times.values())).statistic

    layers = list(tiny_context.layer_kinds)
    first, second = min(((a, b) for i, a in enumerate(layers) for b in layers[i + 1 :]), key=misranks)
    paired = with_pair(first, second)
    both_float = [p for p in plans if p.choice(first).bits == 32 and p.choice(second).bits == 32]
    assert 0 < len(both_float) < len(plans) - 2

    def never() -> LatencyTable:
        raise AssertionError("the fallback was measured for a table that ranks the plans exactly")

    kept, check = checked_table("cpu-onnxruntime", paired, never, pairless_times, plans)
    assert check.spearman < 0.9 and check.pairless_spearman == pytest.approx(1.0)
    assert check.uses_pairless and not kept.pair_log_ratios and not check.uses_fallback
    assert kept.estimate_ms(both_float[0]) == pytest.approx(table.estimate_ms(both_float[0]))
    assert "without its pair terms at +1.00: drops them" in check.describe()
    paired_times = {p.to_json(): paired.estimate_ms(p) for p in plans}
    kept, check = checked_table("cpu-onnxruntime", paired, never, paired_times, plans)
    assert kept is paired and not check.uses_pairless and check.spearman == pytest.approx(1.0)
    assert "keeps them" in check.describe()


def test_plans_the_target_refuses_are_left_out_of_the_check_and_too_few_plans_check_nothing(table, tiny_context):
    from autotune.latency_check import MIN_CHECK_PLANS, checked_table

    plans = tiny_context.space.random_plans(MIN_CHECK_PLANS + 1, seed=4)
    timed = {p.to_json(): table.estimate_ms(p) for p in plans}
    timed[plans[0].to_json()] = "target refused it"
    kept, check = checked_table("cpu-onnxruntime", table, None, timed, plans)
    assert check.plans == MIN_CHECK_PLANS and kept is table
    timed[plans[1].to_json()] = "target refused it"
    assert checked_table("cpu-onnxruntime", table, None, timed, plans) == (table, None)


def test_check_plans_below_the_least_are_refused_naming_the_field(tmp_path):
    from autotune.errors import SpecError
    from autotune.spec import load_proxy_recipe

    path = tmp_path / "r.toml"
    path.write_text('objectives = ["output_divergence", "latency_measured"]\n[latency_measured]\ncheck_plans = 3\n')
    with pytest.raises(SpecError, match=r"r.toml: latency_measured.check_plans: 3: expected 0 \(never\) or at least 5 plans"):
        load_proxy_recipe(str(path))


def test_cached_timings_are_keyed_by_this_machine_and_the_packages_that_build_the_artifact():
    """A workspace shared by workers on other CPUs, or kept across an upgrade, never reads back another's timings."""
    import json
    from importlib import metadata

    from autotune.latency_table import target_identity
    from autotune.machine import cpu_model

    key = json.loads(target_identity(load_hardware("cpu-onnxruntime")))
    machine = key["machine"]
    assert machine["cpu"] == cpu_model() and machine["logical_cpus"] >= 1 and len(machine["cpu_flags"]) == 12
    assert machine["onnxruntime"] == metadata.version("onnxruntime") and machine["torch"] == metadata.version("torch")
    assert key["backend"] == "onnxruntime"


def test_only_precisions_the_search_space_holds_are_probed(tiny_context):
    """A bf16 CPU runs 16-bit layers on OpenVINO, but no plan of cnn-mixed holds one: no 16-bit probe and no 16-bit
    base. A layer the space fixes at 32 bits sits at 32 on every base, so it is never probed."""
    from autotune.latency_table import base_plans, precision_filter, precision_probes

    hardware = dataclasses.replace(
        load_hardware("cpu-openvino"), weight_bits={"conv": (8, 16, 32), "linear": (4, 8, 16, 32), "embedding": (4, 8, 32)}
    )
    kinds = tiny_context.layer_kinds
    space_bits = tiny_context.space.layer_bits()
    assert all(16 not in bits for bits in space_bits.values())
    every = [bits for bits, _ in base_plans(hardware, kinds, "per_precision")]
    assert every == [8, 32, 16, 4]  # the hardware's precisions alone
    searched = base_plans(hardware, kinds, "per_precision", space_bits)
    assert [bits for bits, _ in searched] == [8, 32, 4]
    allows = precision_filter(hardware, kinds, space_bits)
    for bits, base in searched:
        assert all(base.choice(name).bits in space_bits[name] for name in kinds), bits
        probes = precision_probes(hardware, kinds, base, allows)
        assert probes and all(b in space_bits[name] and b != 16 for name, b in probes)
    fixed = next(iter(kinds))
    pinned = space_bits | {fixed: (32,)}
    bases = base_plans(hardware, kinds, "per_precision", pinned)
    assert all(base.choice(fixed).bits == 32 for _, base in bases)
    allows = precision_filter(hardware, kinds, pinned)
    assert all(name != fixed for _, base in bases for name, _ in precision_probes(hardware, kinds, base, allows))
