"""Catalogue parsing and every bad-input path the spec loader must refuse with file + field."""

import dataclasses
import re

import pytest

from autotune import search_space
from autotune.errors import SpecError
from autotune.layers import Layer, ModelLayers
from autotune.pruning import PruningGroup
from autotune.spec import load_hardware, load_proxy_recipe, load_search_space, load_study_spec

KINDS = {"stem.conv": "conv", "block.conv1": "conv", "fc1": "linear", "head": "linear"}


def resolve(spec, kinds, outputs, targets=()):
    """Resolve against a model with these layers, each its own 32-channel pruning group."""
    layers = ModelLayers({n: Layer(n, k, f"{n}.weight", 32) for n, k in kinds.items()}, frozenset(outputs))
    groups = [PruningGroup(n, (n,), 32, None, "output" if n in outputs else "") for n in kinds]
    return search_space.resolve(spec, layers, groups, targets)


LAYERS = KINDS


def write(folder, name, text):
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_builtin_catalogues_load():
    spec = load_study_spec("fashion-cnn")
    assert spec.search_space.name == "cnn-mixed"
    assert spec.proxies.objectives == ("output_divergence", "latency_measured")
    assert [t.name for t in spec.targets] == ["cpu-openvino", "cpu-onnxruntime"]
    assert spec.targets[0].cost_per_million(1000.0) == pytest.approx(0.0893 / 3600 / 1000 * 1e6)
    assert spec.targets[0].supports("linear", 4) and not spec.targets[0].supports("conv", 4)
    assert spec.promote == 5 and spec.rescore == 12 and spec.anchors == (0.0, 0.3, 0.5, 0.7)
    assert spec.promote_per_target


def test_prune_range_expands_to_a_grid(catalogue):
    write(
        catalogue / "search_spaces", "s", "[[layers]]\nbits = [8, 32]\nprune = { min = 0.0, max = 0.7, step = 0.1 }\n"
    )
    rule = load_search_space("s").rules[0]
    assert rule.prune == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    assert rule.bits == (8, 32)


def test_resolve_assigns_first_matching_rule_and_keeps_head_fp32(catalogue):
    write(
        catalogue / "search_spaces",
        "s",
        'keep_full_precision = ["head"]\n'
        '[[layers]]\nmatch = "fc*"\nkind = "linear"\nbits = [4, 8]\n'
        '[[layers]]\nkind = "conv"\nbits = [8, 32]\nprune = [0.0, 0.5]\n',
    )
    space = resolve(load_search_space("s"), LAYERS, {"head"})
    by_name = {layer.name: layer for layer in space.layers}
    groups = {group.root: group for group in space.groups}
    assert by_name["fc1"].bits == (4, 8) and groups["fc1"].ratios == (0.0,)
    assert groups["stem.conv"].ratios == (0.0, 0.5) and groups["stem.conv"].widths == (32, 16)
    assert by_name["head"].bits == (32,)
    assert "head.bits_level" not in space.distributions()
    plan = space.plan_from_params({"fc1.bits_level": 0, "stem.conv.prune": 0.5})
    assert plan.choice("fc1").bits == 4 and plan.choice("stem.conv").prune == 0.5
    assert space.params_for(plan)["fc1.bits_level"] == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[layers]\nbits = [8]", "malformed TOML"),
        ("[[layers]]\nbits = [8]\nbitz = [4]\n", "layers\\[0\\].bitz: unknown field"),
        ("[[layers]]\nbits = []\n", "layers\\[0\\].bits: empty list"),
        ("[[layers]]\nbits = [8]\nprune = []\n", "layers\\[0\\].prune: empty list"),
        ("[[layers]]\nbits = [6]\n", "layers\\[0\\].bits: 6"),
        ("[[layers]]\nbits = [8]\nprune = [1.5]\n", "layers\\[0\\].prune: 1.5"),
        ('[[layers]]\nkind = "lstm"\n', "layers\\[0\\].kind: 'lstm'"),
        ("description = 'none'\n", "layers: missing"),
    ],
)
def test_malformed_search_spaces_name_file_and_field(catalogue, text, message):
    write(catalogue / "search_spaces", "bad", text)
    with pytest.raises(SpecError, match=message) as error:
        load_search_space("bad")
    assert "bad.toml" in str(error.value)
    assert "\n" not in str(error.value).strip()


def test_pattern_matching_no_layer_is_refused(catalogue):
    write(catalogue / "search_spaces", "s", '[[layers]]\nmatch = "encoder.*"\nbits = [8, 32]\n')
    with pytest.raises(SpecError, match=r"layers\[0\]\.match: 'encoder\.\*'.*matches no layer"):
        resolve(load_search_space("s"), LAYERS, {"head"})


def test_a_space_with_no_choices_is_refused(catalogue):
    write(catalogue / "search_spaces", "s", "[[layers]]\nbits = [32]\n")
    with pytest.raises(SpecError, match="no choices"):
        resolve(load_search_space("s"), LAYERS, set())


def test_pruning_the_output_layer_is_refused(catalogue):
    write(catalogue / "search_spaces", "s", "[[layers]]\nbits = [8]\nprune = [0.0, 0.5]\n")
    with pytest.raises(SpecError, match="'head' produces the model's outputs"):
        resolve(load_search_space("s"), LAYERS, {"head"})


def test_bits_a_target_cannot_realise_are_refused_at_load(catalogue):
    write(catalogue / "search_spaces", "s", '[[layers]]\nkind = "conv"\nbits = [4, 8]\n')
    target = load_hardware("cpu-openvino")
    with pytest.raises(
        SpecError,
        match=r"layers\[0\]\.bits: \[4\] on conv layer 'stem.conv' cannot be realised by target 'cpu-openvino'",
    ):
        resolve(load_search_space("s"), LAYERS, set(), (target,))


def test_unknown_catalogue_names_list_what_exists(catalogue):
    with pytest.raises(SpecError, match=r"search_spaces/nope.toml: no such search_spaces entry; have \[.*'cnn-mixed'"):
        load_search_space("nope")


def test_proxy_recipe_errors(catalogue):
    write(catalogue / "proxies", "p", 'objectives = ["kl_divergence", "vibes"]\n')
    with pytest.raises(SpecError, match="objectives: 'vibes' is not a known proxy"):
        load_proxy_recipe("p")
    write(catalogue / "proxies", "q", 'objectives = ["latency_macs"]\n[latency_macs]\nbit_cost = { "3" = 1.0 }\n')
    with pytest.raises(SpecError, match="latency_macs.bit_cost.3"):
        load_proxy_recipe("q")
    # The latency table's settings: one value, or a table of target -> value; a wrong value names the field.
    table = '[latency_measured]\npruning_probes = { cpu-openvino = "every_width" }\npruning_precisions = "every"\n'
    write(catalogue / "proxies", "r", 'objectives = ["latency_measured"]\n' + table)
    assert load_proxy_recipe("r").settings["latency_measured"]["pruning_probes"] == {"cpu-openvino": "every_width"}
    wrong = {
        's': ('pruning_probes = { x = "all" }', r"s.toml: latency_measured.pruning_probes: 'all': expected one of"),
        't': ("composition = 3", "t.toml: latency_measured.composition: 3 is not one of"),
        'u': ('boundaries = { onnxruntime = "triples" }', r"u.toml: latency_measured.boundaries: 'triples': expected one of"),
    }
    for name, (line, message) in wrong.items():
        write(catalogue / "proxies", name, f'objectives = ["latency_measured"]\n[latency_measured]\n{line}\n')
        with pytest.raises(SpecError, match=message):
            load_proxy_recipe(name)


def test_hardware_errors(catalogue):
    write(catalogue / "hardware", "h", 'backend = "tpu-magic"\n')
    with pytest.raises(SpecError, match="backend: 'tpu-magic' is not a known backend"):
        load_hardware("h")
    write(catalogue / "hardware", "g", 'backend = "openvino"\nthreads = 0\n')
    with pytest.raises(SpecError, match="threads: 0 is below the minimum 1"):
        load_hardware("g")


def test_study_spec_errors_name_the_nested_file(catalogue):
    write(
        catalogue / "studies",
        "s",
        'workload = "fashion-cnn"\nsearch_space = "missing"\nproxies = "default"\ntargets = ["cpu-openvino"]\n',
    )
    with pytest.raises(SpecError, match=r"s.toml: search_space = 'missing': search_spaces/missing.toml: no such"):
        load_study_spec("s")
    write(
        catalogue / "studies",
        "t",
        'workload = "fashion-cnn"\nsearch_space = "cnn-mixed"\nproxies = "default"\ntargets = ["cpu-openvino"]\n[search]\nsampler = "grid"\n',
    )
    with pytest.raises(SpecError, match="search.sampler: 'grid'"):
        load_study_spec("t")
    write(
        catalogue / "studies",
        "u",
        'workload = "fashion-cnn"\nsearch_space = "cnn-mixed"\nproxies = "default"\ntargets = []\n',
    )
    with pytest.raises(SpecError, match="targets: empty"):
        load_study_spec("u")
    write(
        catalogue / "studies",
        "v",
        'workload = "fashion-cnn"\nsearch_space = "cnn-mixed"\nproxies = "default"\ntargets = ["cpu-openvino"]\n'
        '[recovery]\nsearch_batchnorm = "never"\n',
    )
    with pytest.raises(SpecError, match=r"v.toml: recovery.search_batchnorm: 'never': expected one of"):
        load_study_spec("v")
    write(
        catalogue / "studies",
        "w",
        'workload = "fashion-cnn"\nsearch_space = "cnn-mixed"\nproxies = "default"\ntargets = ["cpu-openvino"]\n'
        '[recovery]\nprecision = "fp8"\n',
    )
    with pytest.raises(SpecError, match=r"w.toml: recovery.precision: 'fp8': expected one of \['auto', 'f32', 'bf16'\]"):
        load_study_spec("w")
    write(
        catalogue / "studies",
        "x",
        'workload = "fashion-cnn"\nsearch_space = "cnn-mixed"\nproxies = "default"\ntargets = ["cpu-openvino"]\n'
        '[recovery]\ncontinue_rescore = "yes"\n',
    )
    with pytest.raises(SpecError, match=r"x.toml: recovery.continue_rescore: 'yes' is not true/false"):
        load_study_spec("x")
    write(
        catalogue / "studies",
        "y",
        'workload = "fashion-cnn"\nsearch_space = "cnn-mixed"\nproxies = "default"\ntargets = ["cpu-openvino"]\n'
        '[promotion]\nper_target = 1\n',
    )
    with pytest.raises(SpecError, match=r"y.toml: promotion.per_target: 1 is not true/false"):
        load_study_spec("y")


def test_recovery_precision_resolves_from_the_machine_and_refuses_bf16_without_native_support(catalogue):
    """"auto" takes bf16 only where the device multiplies it natively; an explicit "bf16" elsewhere is refused with the
    reason, naming the file and field. Whether distillation changes the search's trials (search_steps > 0) decides
    whether the precision is part of the search's digest."""
    from autotune.context import native_bf16, resolve_recovery_precision

    body = 'workload = "fashion-cnn"\nsearch_space = "cnn-mixed"\nproxies = "default"\ntargets = ["cpu-openvino"]\n'
    native, why = native_bf16("cpu")
    for precision in ("auto", "f32", "bf16"):
        write(catalogue / "studies", precision, body + f'[recovery]\nprecision = "{precision}"\n')
        spec = load_study_spec(precision)
        if precision == "bf16" and not native:
            with pytest.raises(SpecError, match=rf"bf16.toml \[recovery\] precision: 'bf16' on cpu, but {re.escape(why)}"):
                resolve_recovery_precision(spec, "cpu")
        else:
            expected = "f32" if precision == "f32" or not native else "bf16"
            assert resolve_recovery_precision(spec, "cpu") == expected
    auto, f32 = load_study_spec("auto"), load_study_spec("f32")
    assert auto.search_digest() == f32.search_digest()  # search_steps = 0: no distillation during the search
    searching = dataclasses.replace(auto, recovery=dataclasses.replace(auto.recovery, search_steps=5))
    assert searching.search_digest() != dataclasses.replace(
        searching, recovery=dataclasses.replace(searching.recovery, precision="f32")
    ).search_digest()
    # "auto" resolves per machine: a study resumed where it resolves otherwise is a different search.
    assert searching.search_digest("m", "bf16") != searching.search_digest("m", "f32")


def test_hardware_float_and_latency_objective_errors(catalogue):
    write(catalogue / "hardware", "h", 'backend = "openvino"\n[float]\nhalf = "fp8"\n')
    with pytest.raises(SpecError, match=r"h.toml: float.half: 'fp8': expected one of \['bf16', 'f16', 'none', 'auto'\]"):
        load_hardware("h")
    write(catalogue / "hardware", "l", 'backend = "openvino"\nlatency_objective = "p99"\n')
    with pytest.raises(SpecError, match="latency_objective: 'p99': expected one of"):
        load_hardware("l")


def test_sixteen_bits_where_the_machine_has_no_native_half_is_refused_with_the_reason(catalogue):
    """half = "auto" asks the runtime; OpenVINO on a CPU without AMX/AVX512-BF16 lists no BF16 capability."""
    import openvino as ov

    if {"BF16", "FP16"} & set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")):
        pytest.skip("this CPU runs 16-bit floats natively")
    target = load_hardware("cpu-openvino")
    assert target.half is None and not target.supports("conv", 16) and target.supports("conv", 8)
    write(catalogue / "search_spaces", "s", '[[layers]]\nkind = "conv"\nbits = [8, 16]\n')
    with pytest.raises(SpecError, match=r"\[16\] on conv layer .*\(no native 16-bit float here: the OpenVINO CPU plugin lists"):
        resolve(load_search_space("s"), LAYERS, set(), (target,))


def test_a_whole_model_float_target_refuses_a_space_mixing_16_and_32(catalogue):
    write(catalogue / "hardware", "h", 'backend = "openvino"\n[weight_bits]\nconv = [8, 16, 32]\n[float]\nhalf = "bf16"\nper_layer = false\n')
    target = load_hardware("h")
    assert target.half == "bf16" and target.supports("conv", 16)
    write(catalogue / "search_spaces", "s", '[[layers]]\nkind = "conv"\nbits = [8, 16, 32]\n')
    with pytest.raises(SpecError, match=r"runs every float layer of a model at one precision .* list 16 or 32"):
        resolve(load_search_space("s"), {"stem.conv": "conv", "block.conv1": "conv"}, set(), (target,))
    write(catalogue / "search_spaces", "t", '[[layers]]\nkind = "conv"\nbits = [8, 16]\n')
    space = resolve(load_search_space("t"), {"stem.conv": "conv", "block.conv1": "conv"}, set(), (target,))
    assert space.layers[0].bits == (8, 16)
    # A kind the precision does not govern (no 16 on the target: OpenVINO's Gather) may stay at 32 beside 16.
    write(catalogue / "hardware", "g", 'backend = "openvino"\n[weight_bits]\nconv = [8, 16, 32]\nembedding = [8, 32]\n[float]\nhalf = "bf16"\nper_layer = false\n')
    write(catalogue / "search_spaces", "e", '[[layers]]\nkind = "conv"\nbits = [8, 16]\n[[layers]]\nkind = "embedding"\nbits = [8, 32]\n')
    space = resolve(load_search_space("e"), {"stem.conv": "conv", "table": "embedding"}, set(), (load_hardware("g"),))
    assert {layer.name: layer.bits for layer in space.layers} == {"stem.conv": (8, 16), "table": (8, 32)}


def test_grids_are_ordered_parameters(catalogue):
    """Bits as an integer level (0 = fewest bits), pruning as a stepped float mapped to the smallest ratio keeping the
    same channels; a plan maps to parameters and back."""
    from optuna.distributions import FloatDistribution, IntDistribution

    write(
        catalogue / "search_spaces",
        "s",
        '[[layers]]\nkind = "conv"\nbits = [8, 32]\nprune = { min = 0.0, max = 0.7, step = 0.1 }\n'
        '[[layers]]\nkind = "linear"\nbits = [4, 8, 32]\n',
    )
    space = resolve(load_search_space("s"), LAYERS, {"head"})
    dists = space.distributions()
    assert dists["fc1.bits_level"] == IntDistribution(0, 2)
    assert dists["stem.conv.prune"] == FloatDistribution(0.0, 0.7, step=0.1)
    plan = space.plan_from_params({"fc1.bits_level": 1, "stem.conv.prune": 0.3, "block.conv1.prune": 0.7})
    assert plan.choice("fc1").bits == 8 and plan.choice("stem.conv").prune == 0.3
    assert space.plan_from_params(space.params_for(plan)) == plan
    assert space.choices()["fc1.bits_level"] == [0, 1, 2]
    # 32 channels, multiple 1: 0.7 keeps 10 channels, and no two ratios of the grid keep the same number.
    assert space.choices()["stem.conv.prune"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def test_a_pruning_ratio_keeping_the_same_channels_maps_to_the_smallest():
    group = search_space.GroupSpace("c", ("c",), (0.0, 0.1, 0.3), (16, 8, 4), (0.0, 0.1, 0.2, 0.3))
    assert group.ratio_of(0.2) == 0.1 and group.ratio_of(0.3) == 0.3 and group.ratio_of(0.0) == 0.0


def test_a_study_recorded_with_another_parameter_encoding_is_refused():
    import optuna

    from autotune.errors import AutotuneError
    from autotune.studies import check_params_encoding

    storage = optuna.storages.InMemoryStorage()
    old = optuna.create_study(storage=storage, study_name="old")
    old.enqueue_trial({"x.bits": 8})
    old.ask()
    with pytest.raises(AutotuneError, match="study 'old' was recorded by an older autotune .*\(encoding 1, now 2\)"):
        check_params_encoding(old, 2)
    new = optuna.create_study(storage=storage, study_name="new")
    check_params_encoding(new, 2)
    check_params_encoding(new, 2)
    assert new.user_attrs["params_encoding"] == 2


def test_a_full_recovery_continues_the_rescore_only_when_that_is_shorter_and_asked_for():
    from autotune.spec import RecoverySettings

    assert RecoverySettings(rescore_steps=100, full_steps=600).continued_steps == 100
    assert RecoverySettings(rescore_steps=100, full_steps=600, continue_rescore=False).continued_steps == 0
    assert RecoverySettings(rescore_steps=600, full_steps=600).continued_steps == 0  # nothing left to continue
    assert RecoverySettings(rescore_steps=0, full_steps=600).continued_steps == 0
