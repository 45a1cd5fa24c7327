"""Per-layer latency tables measured in context on a target's real runtime, cached on disk.

The whole network is built and timed at the target's throughput batch once as a base plan (INT8
where the target runs it, else FP32); then the same network with only one thing changed: one layer
at each other precision the target realises, or one pruning group at half its width. A plan's
latency is estimated as base x the product of its layers' measured ratios to the base (pruning
interpolated in log space): each saving applies to what is left, so estimates stay positive where a
sum of deltas would cross zero.
Measuring in context, rather than each layer alone, keeps the costs that only exist inside a
network: precision conversions at the boundaries of an FP32 layer, fused activations, the
consumers of a pruned layer reading fewer channels.

With `boundaries = "pairs"` the table also measures, on the INT8 base, each pair of adjacent layers (autotune.layer_graph)
at 32 bits together: two adjacent float layers share the conversion between them, which the product of their
single-layer ratios counts twice. On ONNX Runtime a float layer among INT8 ones measured 1.6-2.6x the whole INT8
network on a depthwise model (docs/latency-zoo.md), and those ratios compounded past 100x for plans with many float
layers.

With `probe_rounds` > 1 the probes are built together and timed in interleaved rounds, each keeping its median: one
timing on a shared machine drifts by about 10% with the load, and a plan's estimate adds up many probes' errors. The
load shifts whole rounds too (up to 1.8x between rounds, for every plan in them): each round is first brought to the
level of all of them (`without_round_drift`); docs/timing-protocol.md measures both. Probes are timed in chunks (at most
ROUND_CHUNK built at once); the INT8 base is timed in every chunk and each chunk scaled to its level (`onto_anchor`), as
chunks timed minutes apart see different loads (docs/table-stability.md).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import tempfile
from pathlib import Path

import joblib
import numpy as np
from torch import nn

from autotune.errors import TargetError
from autotune.machine import machine_identity
from autotune.paths import cache_dir, workspace
from autotune.plan import LayerChoice, Plan
from autotune.progress import console, progress_bar
from autotune.pruning import GroupPruner
from autotune.spec import HardwareSpec, MeasureSettings
from autotune.targets.base import BuildContext
from autotune.targets.measure import summarise
from autotune.workloads.io import repeat_first, take

PROBE_PRUNE = 0.5
PAIR_PROBE_BUDGET = 64  # pair probes (`boundaries = "pairs"`); past it, none, said in the output
PAIR_BITS = 32  # the precision both layers of a pair probe run at
PRUNING_PROBE_BUDGET = 400  # builds for `every_width`; past it (a model with many groups), half width instead
MIN_SUM_FRACTION = 0.05  # added savings never estimate a plan below this fraction of its base
# Short timings, many rounds: 40 fashion-cnn plans, timed again and again for the same time per plan, ranked alike
# run after run at +0.935 (OpenVINO) and +0.932 (ONNX Runtime) in 6 rounds of 0.15 s with the round drift removed, at
# +0.746 and +0.672 in 3 rounds of 0.3 s as measured (docs/timing-protocol.md): a slow spell of the machine spoils
# fewer of a plan's timings, and a slow round is taken out.
PROBE_MEASURE = MeasureSettings(warmup=5, min_repeats=15, min_seconds=0.15, max_repeats=1000)
ONE_TIMING = MeasureSettings(warmup=5, min_repeats=30, min_seconds=0.3, max_repeats=1000)  # probe_rounds = 1: as before
# Part of every cached timing's key: timings taken another way are not mixed with these.
TIMING_PROTOCOL = f"rounds {PROBE_MEASURE}, one {ONE_TIMING}, round drift removed"
ROUND_CHUNK = 16  # probes held built at once while timed in rounds (a transformer's artifacts are large)
# A table's INT8 base is timed in every chunk of its probes, each chunk brought to the base's level (`onto_anchor`):
# fashion-cnn's OpenVINO fallback ranked 40 plans at +0.971 against +0.874 without, ONNX Runtime's default at +0.768
# against +0.659 (3 cold builds each, docs/table-stability.md). benchmarks/table_stability.py turns it off to compare.
ANCHOR_IN_EVERY_CHUNK = True
# Calibration samples of a build that is only timed. Not fewer: with 8, one tiny-BERT FullyConnected saw no negative
# input and compiled to u8 instead of i8 (another kernel); ranges can change kernels.
TIMING_SAMPLES = 32


def architecture_key(model: nn.Module) -> str:
    """Identity of a model's shapes: latency depends on them, not on the weights."""
    shapes = [(name, tuple(p.shape)) for name, p in model.state_dict().items()]
    return hashlib.sha256(repr(shapes).encode()).hexdigest()[:16]


def timing_context(build: BuildContext) -> BuildContext:
    """How a target builds a plan that is only timed: a calibration subset, value-only steps skipped (OpenVINO: bias
    correction). Random plans compiled to the same OpenVINO runtime graph as full builds on fashion-cnn, a depthwise
    CNN and a nested CNN with a shared module (tested on the tiny CNN); on tiny BERT 2 of 4 did not, from the
    calibration subset alone (one FullyConnected u8 against i8), as before this context existed."""
    return dataclasses.replace(build, calibration=take(build.calibration, slice(0, TIMING_SAMPLES)), timing_only=True)


def target_identity(spec: HardwareSpec) -> str:
    """What a cached timing is keyed by besides the model: the target's settings, this machine and its build packages."""
    fields = {"backend": spec.backend, "threads": spec.threads, "batch": spec.throughput_batch, "options": spec.options}
    return json.dumps(fields | {"machine": machine_identity()}, sort_keys=True)


def timing_identity(spec: HardwareSpec) -> str:
    """A cached probe timing's key besides the model: the target's identity and how the timing was taken."""
    return f"{target_identity(spec)}|{TIMING_PROTOCOL}"


def _plan_latency_ms(
    target_json: str,
    architecture: str,
    plan_json: str,
    channel_multiple: int,
    spec: HardwareSpec,
    pruner: GroupPruner,
    build: BuildContext,
) -> float:
    """Build the whole model for `plan` on the target and time one throughput batch (cached on disk)."""
    from autotune.targets import make_target

    plan = Plan.from_json(plan_json)
    pruned = pruner.prune(plan, channel_multiple)
    target = make_target(spec)
    builds = workspace() / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=builds) as folder:
        artifact = target.build(pruned, plan, build, Path(folder))
        runner = target.runner(artifact, repeat_first(build.calibration, spec.throughput_batch))
        return summarise(target.time_with(runner, ONE_TIMING))["p50"]


def _plans_latency_ms(
    target_json: str,
    architecture: str,
    plan_jsons: tuple[str, ...],
    channel_multiple: int,
    rounds: int,
    anchor: str | None,
    spec: HardwareSpec,
    pruner: GroupPruner,
    build: BuildContext,
) -> dict[str, float | str]:
    """Each plan's median latency of a throughput batch over `rounds` interleaved rounds (cached on disk as a set), or
    the reason the target refused to build it."""
    plans = {plan_json: Plan.from_json(plan_json) for plan_json in plan_jsons}
    timings = time_in_rounds(spec, plans, pruner, build, channel_multiple, rounds, anchor=anchor)
    return {key: value if isinstance(value, str) else float(np.median(value)) for key, value in timings.items()}


def timed_plans_ms(
    spec: HardwareSpec,
    plan_jsons: tuple[str, ...],
    pruner: GroupPruner,
    build: BuildContext,
    channel_multiple: int,
    rounds: int,
    anchor: str | None = None,
) -> dict[str, float | str]:
    """Whole plans (as JSON) built as a table builds its probes, each timed at the throughput batch (the median of
    `rounds` interleaved rounds; cached on disk as a set): ms by the plan's JSON, or why the target refused it.
    `anchor` (one of the plans) is timed in every chunk of them (`time_in_rounds`)."""
    memory = joblib.Memory(cache_dir("latency"), verbose=0)
    in_rounds = memory.cache(_plans_latency_ms, ignore=["spec", "pruner", "build"])
    return in_rounds(
        timing_identity(spec),
        architecture_key(pruner.teacher),
        plan_jsons,
        channel_multiple,
        max(rounds, 1),
        anchor,
        spec,
        pruner,
        timing_context(build),
    )


def time_in_rounds(
    spec: HardwareSpec,
    plans: dict[str, Plan],
    pruner: GroupPruner,
    build: BuildContext,
    channel_multiple: int,
    rounds: int,
    measure: MeasureSettings | None = None,
    chunk: int | None = None,
    anchor: str | None = None,
) -> dict[str, list[float] | str]:
    """Each plan pruned, built for `spec` and timed at its throughput batch in `rounds` interleaved rounds (every plan
    of a chunk once per round, each round in a new order): its p50 per round in ms, with the chunk's round drift
    removed (`without_round_drift`), or the reason the target refused to build it. On a shared machine one timing
    drifts by about 10% (in log) with the load over seconds; plans timed in turn, round after round, each see that
    drift at different moments. By default each timing is PROBE_MEASURE's, or ONE_TIMING's in a single round; the
    plans are cut into even chunks of at most `chunk` (ROUND_CHUNK by default; a chunk of one plan could not have its
    drift removed).
    With an `anchor` (one of the keys) and more than one chunk, the anchor is timed in every chunk and each chunk is
    scaled so the anchor's median is the same in all (`onto_anchor`): chunks timed minutes apart see different loads."""
    from autotune.targets import make_target

    target = make_target(spec)
    measure = measure or (PROBE_MEASURE if rounds > 1 else ONE_TIMING)
    keys = list(plans)
    chunk = chunk or ROUND_CHUNK
    if anchor in plans and len(keys) > chunk:
        chunks = [[anchor, *part] for part in even_chunks([k for k in keys if k != anchor], chunk - 1)]
    else:
        chunks, anchor = even_chunks(keys, chunk), None
    found: dict[str, list[float] | str] = {}
    in_chunks: list[dict[str, list[float]]] = []
    builds = workspace() / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    total = sum(len(part) for part in chunks) * (1 + rounds)
    with progress_bar() as progress:
        task = progress.add_task(f"timing on {spec.name}: build, then {rounds} rounds", total=total)
        for chunk_keys in chunks:
            with tempfile.TemporaryDirectory(dir=builds) as folder:
                runners = {}
                for index, key in enumerate(chunk_keys):
                    plan = plans[key]
                    try:
                        artifact = target.build(pruner.prune(plan, channel_multiple), plan, build, Path(folder) / str(index))
                        runners[key] = target.runner(artifact, repeat_first(build.calibration, spec.throughput_batch))
                    except TargetError as exc:
                        found[key] = str(exc)
                        progress.update(task, advance=rounds)
                    progress.update(task, advance=1)
                timed = timed_rounds(target, runners, rounds, measure, lambda: progress.update(task, advance=1))
                in_chunks.append(without_round_drift(timed))
    return found | onto_anchor(in_chunks, anchor)


def onto_anchor(chunks: list[dict[str, list[float]]], anchor: str | None) -> dict[str, list[float]]:
    """Chunks of timings merged, each scaled so the anchor's median in it is the geometric mean of those medians; the
    anchor keeps all its scaled timings. A chunk without the anchor (none given, or the target refused it) is kept as
    it is."""
    def own(chunk: dict[str, list[float]]) -> list[float]:
        values = chunk.get(anchor, []) if anchor is not None else []
        return values if values and min(values) > 0 else []

    levels = [float(np.median(own(chunk))) for chunk in chunks if own(chunk)]
    level = float(np.exp(np.mean(np.log(levels)))) if levels else 1.0
    found: dict[str, list[float]] = {}
    anchored: list[float] = []
    for chunk in chunks:
        scale = level / float(np.median(own(chunk))) if own(chunk) else 1.0
        for key, values in chunk.items():
            scaled = [value * scale for value in values]
            if key == anchor:
                anchored += scaled
            else:
                found[key] = scaled
    return found | ({anchor: anchored} if anchored else {})


def even_chunks(keys: list[str], most: int) -> list[list[str]]:
    """`keys` cut into as few chunks of at most `most` as can be, their sizes differing by one at most."""
    count = -(-len(keys) // most)
    return [list(part) for part in np.array_split(np.array(keys, dtype=object), count)] if keys else []


def timed_rounds(target, runners: dict, rounds: int, measure: MeasureSettings, each=lambda: None, seed: int = 0) -> dict[str, list[float]]:
    """Each runner timed once per round (p50 in ms), the runners in a new order every round."""
    found: dict[str, list[float]] = {key: [] for key in runners}
    for round_index in range(rounds):
        order = list(runners)
        np.random.default_rng(seed + round_index).shuffle(order)
        for key in order:
            found[key].append(summarise(target.time_with(runners[key], measure))["p50"])
            each()
    return found


def without_round_drift(timings: dict[str, list[float]]) -> dict[str, list[float]]:
    """Plans timed in the same rounds with each round's shift taken out: every timing of a round divided by the round's
    geometric mean over the plans and multiplied by that of all rounds. The load slows whole rounds (40 fashion-cnn
    plans' geometric mean varied up to 1.43x on OpenVINO and 1.77x on ONNX Runtime between rounds of one run), which
    a plan's median over few rounds carries; plans' ratios within a round stay as measured. Needs two plans, two
    rounds and positive times, else returned as is."""
    if len(timings) < 2 or min(len(values) for values in timings.values()) < 2 or min(map(min, timings.values())) <= 0:
        return timings
    logs = np.log(np.array(list(timings.values()), dtype=float))  # plans x rounds
    shifted = logs - logs.mean(axis=0) + logs.mean()
    return {key: np.exp(row).tolist() for key, row in zip(timings, shifted, strict=True)}


BASES = ("int8", "per_precision")
PRUNING_PROBES = ("half_width", "every_width")
COMPOSITIONS = ("product", "sum")
PRUNING_PRECISIONS = ("base", "every")
BOUNDARIES = ("none", "pairs")


def int8_activations(kind: str, bits: int) -> bool:
    """Whether a layer at `bits` reads INT8 activations on the CPU targets (static W8A8 convs and linears; INT4 and
    8-bit embeddings are weight-only)."""
    return bits == 8 and kind in ("conv", "linear")


def base_plans(
    spec: HardwareSpec, kinds: dict[str, str], bases: str, layer_bits: dict[str, tuple[int, ...]] | None = None
) -> list[tuple[int, Plan]]:
    """The uniform plans the table is measured around: INT8 where the target runs it (else FP32) and, with
    "per_precision", one more per other precision the target runs (each layer at it where its kind allows, else 8).
    With `layer_bits` (the search space's choices per layer), only precisions some layer may take, each layer at one
    it may take."""
    allows = precision_filter(spec, kinds, layer_bits)

    def uniform(bits: int) -> Plan:
        def nearest(name: str) -> int:
            preferred = (bits, 8, 32, *((layer_bits or {}).get(name, ())))
            return next((b for b in preferred if allows(name, b)), 32)

        return Plan({n: LayerChoice(nearest(n)) for n in kinds})

    plans = {uniform(8).to_json(): (8, uniform(8))}
    if bases == "per_precision":
        precisions = {b for n, k in kinds.items() for b in spec.weight_bits.get(k, (32,)) if allows(n, b)}
        for bits in sorted(precisions - {8}, reverse=True):
            plan = uniform(bits)
            plans.setdefault(plan.to_json(), (bits, plan))
    return list(plans.values())  # (the precision it was built for, the plan)


def precision_filter(spec: HardwareSpec, kinds: dict[str, str], layer_bits: dict[str, tuple[int, ...]] | None):
    """(layer, bits) -> whether the target runs the layer's kind at `bits` and the search space lets the layer take it:
    a precision no plan of the space holds is not worth a probe (16-bit floats on a bf16 CPU, for spaces without 16)."""

    def allows(name: str, bits: int) -> bool:
        in_space = layer_bits is None or name not in layer_bits or bits in layer_bits[name]
        return spec.supports(kinds[name], bits) and in_space

    return allows


def precision_probes(spec: HardwareSpec, kinds: dict[str, str], base: Plan, allows) -> list[tuple[str, int]]:
    """Each (layer, bits) probed on `base`: every precision `allows` other than the layer's own on the base."""
    return [
        (name, bits)
        for name, kind in kinds.items()
        for bits in spec.weight_bits.get(kind, (32,))
        if bits != base.choice(name).bits and allows(name, bits)
    ]


class LatencyTable:
    """Base latencies of a throughput batch and in-context ratios to them per (layer, bits) and per pruned group.

    One base (INT8) compounds its ratios far from itself: a mostly-FP32 plan multiplies many FP32/INT8 ratios that
    were each measured with every other layer at INT8 (on fashion-cnn, FP32 itself was once estimated at 10x its
    measured latency). With a base per precision, a plan's estimate is the geometric mean of every base's estimate,
    weighted by the plan's layers at that base's precision, so the bases themselves are exact and mixed plans
    interpolate.
    """

    def __init__(
        self,
        spec: HardwareSpec,
        pruner: GroupPruner,
        build: BuildContext,
        channel_multiple: int = 1,
        bases: str = "int8",
        pruning_probes: str = "half_width",
        prune_ratios: dict[str, tuple[float, ...]] | None = None,
        composition: str = "product",
        pruning_precisions: str = "base",
        probe_rounds: int = 1,
        boundaries: str = "none",
        layer_bits: dict[str, tuple[int, ...]] | None = None,
        timed_before: dict[str, float | str] | None = None,
    ) -> None:
        self.spec = spec
        self.channel_multiple = channel_multiple
        self.composition = composition
        kinds = build.layers.kinds
        built = base_plans(spec, kinds, bases, layer_bits)
        self.allows = precision_filter(spec, kinds, layer_bits)
        self.precisions = [bits for bits, _ in built]
        self.bases = [plan for _, plan in built]
        self.base = self.bases[0]
        groups = pruner.prunable
        self.groups = groups
        probes = [precision_probes(spec, kinds, base, self.allows) for base in self.bases]

        def pruned_probe_count(ratios: dict[str, tuple[float, ...]]) -> int:
            """Pruning probes over every base: each group's ratios, at each precision its root is probed at."""
            every = pruning_precisions == "every"
            return sum(
                len(ratios[g.root]) * (1 + (sum(name == g.root for name, _ in bit_probes) if every else 0))
                for bit_probes in probes
                for g in groups
            )

        probe_ratios = {g.root: self._probe_ratios(g, pruning_probes, (prune_ratios or {}).get(g.root)) for g in groups}
        if pruning_probes == "every_width" and pruned_probe_count(probe_ratios) > PRUNING_PROBE_BUDGET:
            # A model with many groups would spend its first trial measuring for an hour: one width per group instead.
            half = {g.root: (PROBE_PRUNE,) for g in groups}
            console.print(
                f"[yellow]latency table on {spec.name}: probing every pruned width takes {pruned_probe_count(probe_ratios)} "
                f"builds, over the budget of {PRUNING_PROBE_BUDGET}; probing half widths ({pruned_probe_count(half)})"
            )
            probe_ratios, pruning_probes = half, "half_width"
        self.pruning_probes = pruning_probes
        self.kinds = kinds
        self.edges = self._pair_edges(pruner, build) if boundaries == "pairs" else []
        self._probe_total = pruned_probe_count(probe_ratios) + len(self.edges)
        memory = joblib.Memory(cache_dir("latency"), verbose=0)
        measure = memory.cache(_plan_latency_ms, ignore=["spec", "pruner", "build"])
        identity, architecture = timing_identity(spec), architecture_key(pruner.teacher)
        samples = timing_context(build)
        self.probe_rounds = probe_rounds
        measured_in_rounds: dict[str, float | str] = {}
        listed: list[str] | None = None  # while listing the probes (rounds > 1), the plans asked for

        def timed(plan: Plan) -> float:
            plan_json = plan.to_json()
            if listed is not None:
                listed.append(plan_json)
                return 1.0
            if plan_json in measured_in_rounds:
                value = measured_in_rounds[plan_json]
                if isinstance(value, str):
                    raise TargetError(value)
                return value
            return measure(identity, architecture, plan_json, channel_multiple, spec, pruner, samples)

        self.measured_ms = timed  # a plan's measured latency (read from the cache for the probes)
        if probe_rounds > 1:
            # The probes are listed by a dry run of the loop below (it asks for every plan it may need), then timed
            # together in interleaved rounds.
            listed = []
            self._measure_probes(timed, probes, groups, probe_ratios, pruning_precisions, channel_multiple, [], quiet=True)
            plans = tuple(dict.fromkeys(listed))
            listed = None
            measured_in_rounds |= self._timed_in_rounds(plans, timed_before or {}, pruner, build)

        refused: list[str] = []
        self._measure_probes(timed, probes, groups, probe_ratios, pruning_precisions, channel_multiple, refused)
        if refused:
            console.print(f"[yellow]latency table on {spec.name}: {len(refused)} probes the target refused, e.g. {refused[0]}")
        self.group_of = {m: g.root for g in groups for m in g.layers}
        self.timings = measured_in_rounds  # the probes' timings in rounds (plan JSON -> ms or why refused)

    def _timed_in_rounds(
        self, plans: tuple[str, ...], timed_before: dict[str, float | str], pruner: GroupPruner, build: BuildContext
    ) -> dict[str, float | str]:
        """The probes timed together in interleaved rounds, except those another table of the same model timed in its
        rounds (`timed_before`: a check's fallback and the table it replaces share the INT8 base and its probes, a
        third of the fallback's builds). The INT8 base is timed again with the new probes and the reused timings are
        scaled by its new time over its old: their ratios to it stay as measured, and every base's level comes from
        one set of rounds."""
        anchor = self.base.to_json()
        old = timed_before.get(anchor)
        reused = {p: timed_before[p] for p in plans if p != anchor and p in timed_before} if isinstance(old, float) else {}
        asked = tuple(p for p in plans if p not in reused)
        fresh = timed_plans_ms(self.spec, asked, pruner, build, self.channel_multiple, self.probe_rounds, anchor if ANCHOR_IN_EVERY_CHUNK else None)
        new = fresh.get(anchor)
        scale = new / old if reused and isinstance(new, float) else 1.0
        return fresh | {p: value if isinstance(value, str) else value * scale for p, value in reused.items()}

    def _pair_edges(self, pruner: GroupPruner, build: BuildContext) -> list[tuple[str, str]]:
        """Edges whose two layers run INT8 activations on the base and can both run at PAIR_BITS."""
        from autotune.layer_graph import model_edges  # exports the model: only where pairs are measured

        def probed(name: str) -> bool:
            kind = self.kinds[name]
            return int8_activations(kind, self.base.choice(name).bits) and self.allows(name, PAIR_BITS)

        edges = [(a, b) for a, b in model_edges(pruner.teacher, build) if probed(a) and probed(b)]
        if len(edges) > PAIR_PROBE_BUDGET:
            console.print(
                f"[yellow]latency table on {self.spec.name}: {len(edges)} pairs of adjacent layers, over the budget of "
                f"{PAIR_PROBE_BUDGET} pair probes; no pair terms"
            )
            return []
        return edges

    def _measure_probes(
        self, timed, probes, groups, probe_ratios, pruning_precisions, channel_multiple, refused, quiet: bool = False
    ) -> None:
        """Every base, each layer at each other precision on it, each group pruned at each probed width: the ratios."""
        self.base_ms_of: list[float] = []
        self.log_ratios_of: list[dict[tuple[str, int], float]] = []
        # Per group, per precision of its root: kept channels -> log ratio to the unpruned plan at that precision.
        self.prune_curves_of: list[dict[str, dict[int, dict[int, float]]]] = []
        self.pair_log_ratios: dict[tuple[str, str], float] = {}  # on the first base
        with progress_bar(disable=quiet) as progress:
            total = sum(len(p) + 1 for p in probes) + self._probe_total
            task = progress.add_task(f"latency table on {self.spec.name}", total=total)
            for index, (base, bit_probes) in enumerate(zip(self.bases, probes, strict=True)):
                base_ms = timed(base)
                progress.update(task, advance=1)
                log_ratios = {}
                for name, bits in bit_probes:
                    changed = Plan(dict(base.layers) | {name: LayerChoice(bits)})
                    try:
                        log_ratios[(name, bits)] = float(np.log(timed(changed) / base_ms))
                    except TargetError as exc:
                        # A combination the target cannot build or realise (16 beside 32 under one precision hint,
                        # INT4 under bf16 on some layers) has no ratio: plans holding it cannot be built either.
                        refused.append(f"{name}@{bits} on the {base.choice(name).bits}-bit base: {exc}")
                    progress.update(task, advance=1)
                for a, b in self.edges if index == 0 else ():
                    pair = Plan(dict(base.layers) | {a: LayerChoice(PAIR_BITS), b: LayerChoice(PAIR_BITS)})
                    try:
                        self.pair_log_ratios[(a, b)] = float(np.log(timed(pair) / base_ms))
                    except TargetError as exc:
                        refused.append(f"{a}+{b}@{PAIR_BITS} on the {base.choice(a).bits}-bit base: {exc}")
                    progress.update(task, advance=1)
                curves = {}
                for group in groups:
                    root_bits = base.choice(group.root).bits
                    precisions = {root_bits: 0.0}
                    if pruning_precisions == "every":  # a float root pruned may gain where an INT8 one loses
                        precisions |= {b: log for (n, b), log in log_ratios.items() if n == group.root}
                    curves[group.root] = {}
                    for bits, unpruned in precisions.items():
                        curve = {group.channels: 0.0}
                        for ratio in probe_ratios[group.root]:
                            if group.kept(ratio, channel_multiple) == group.channels:  # rounds back to the full width
                                progress.update(task, advance=1)
                                continue
                            layers = {m: LayerChoice(base.choice(m).bits, ratio) for m in group.layers}
                            layers[group.root] = LayerChoice(bits, ratio)
                            try:
                                probed = timed(Plan(dict(base.layers) | layers))
                            except TargetError as exc:  # as above; this precision keeps the base's pruning ratios
                                refused.append(f"{group.root}@{bits} pruned {ratio:g} on the {root_bits}-bit base: {exc}")
                                curve = None
                                break
                            finally:
                                progress.update(task, advance=1)
                            curve[group.kept(ratio, channel_multiple)] = float(np.log(probed / base_ms)) - unpruned
                        if curve is not None:
                            curves[group.root][bits] = curve
                self.base_ms_of.append(base_ms)
                self.log_ratios_of.append(log_ratios)
                self.prune_curves_of.append(curves)

    @property
    def base_ms(self) -> float:
        return self.base_ms_of[0]

    @property
    def log_ratios(self) -> dict[tuple[str, int], float]:
        return self.log_ratios_of[0]

    @property
    def log_prune_ratios(self) -> dict[str, float]:
        """Per group, the log ratio measured at half width (the `half_width` probe)."""
        kept = {g.root: g.kept(PROBE_PRUNE, self.channel_multiple) for g in self.groups}
        return {g.root: self.prune_curves_of[0][g.root][self.base.choice(g.root).bits][kept[g.root]] for g in self.groups}

    def _probe_ratios(self, group, pruning_probes: str, ratios: tuple[float, ...] | None) -> tuple[float, ...]:
        """Half width, or every ratio of the search space that keeps a distinct width (kernels are fastest on some
        widths: 48 channels ran slower than 32 and 64 on OpenVINO, so one probe cannot be interpolated)."""
        if pruning_probes == "half_width" or not ratios:
            return (PROBE_PRUNE,)
        widths = {}
        for ratio in sorted(r for r in ratios if r > 0):
            widths.setdefault(group.kept(ratio, self.channel_multiple), ratio)
        return tuple(widths.values())

    def _log_prune(self, index: int, group, ratio: float, bits: int) -> float:
        """The group's measured log ratio at the plan's kept width, measured with its root at `bits` where it was
        (else at the base's precision); between probed widths, linear in channels."""
        if ratio <= 0:
            return 0.0
        curves = self.prune_curves_of[index][group.root]
        curve = curves.get(bits, curves[self.bases[index].choice(group.root).bits])
        kept = group.kept(ratio, self.channel_multiple)
        if kept in curve:
            return curve[kept]
        if self.pruning_probes == "half_width":  # one probe: log-linear in the ratio, extrapolated past half width
            return curve.get(group.kept(PROBE_PRUNE, self.channel_multiple), 0.0) * ratio / PROBE_PRUNE
        widths = sorted(curve)
        return float(np.interp(kept, widths, [curve[w] for w in widths]))

    def _log_estimate(self, index: int, plan: Plan) -> float:
        """log ms from one base: its latency and each layer's ratio for its bits and each pruned group's ratio at its
        width, multiplied (`product`) or added as time deltas (`sum`: a layer's cost adds to the others' instead of
        scaling them, so many float layers do not compound)."""
        base = self.bases[index]
        logs = [self.log_ratios_of[index].get((name, plan.choice(name).bits), 0.0) for name in base.layers]
        logs += [self._log_prune(index, g, plan.choice(g.root).prune, plan.choice(g.root).bits) for g in self.groups]
        pairs = self._pair_terms(plan) if index == 0 else []
        if self.composition == "sum":
            total = 1.0 + sum(np.expm1(value) for value in logs) + sum(delta for _, delta in pairs)
            return float(np.log(self.base_ms_of[index]) + np.log(max(total, MIN_SUM_FRACTION)))
        return float(np.log(self.base_ms_of[index]) + sum(logs) + sum(log for log, _ in pairs))

    def without_pairs(self) -> LatencyTable:
        """The same table with its pair terms left out (a check ranks it both ways from the same timings)."""
        pairless = copy.copy(self)
        pairless.pair_log_ratios = {}
        return pairless

    def _pair_terms(self, plan: Plan) -> list[tuple[float, float]]:
        """Per measured pair whose layers both run float activations in the plan: what the pair measured beyond its
        two layers' ratios, as a log ratio (product) and as a fraction of the base (sum)."""
        terms = []
        float_layers = {n for n, kind in self.kinds.items() if not int8_activations(kind, plan.choice(n).bits)}
        for (a, b), pair in self.pair_log_ratios.items():
            if a in float_layers and b in float_layers:
                single_a = self.log_ratios_of[0].get((a, PAIR_BITS), 0.0)
                single_b = self.log_ratios_of[0].get((b, PAIR_BITS), 0.0)
                terms.append((pair - single_a - single_b, np.expm1(pair) - np.expm1(single_a) - np.expm1(single_b)))
        return terms

    def estimate_ms(self, plan: Plan) -> float:
        """Estimated latency of one throughput batch (see the class doc)."""
        if len(self.bases) == 1:
            return float(np.exp(self._log_estimate(0, plan)))
        bits = plan.bits()
        for index, base in enumerate(self.bases):  # a plan the table was measured around: its base alone, exactly
            if all(bits.get(n, 32) == b for n, b in base.bits().items()):
                return float(np.exp(self._log_estimate(index, plan)))
        # Each base counts for the layers at the precision it was built for (INT8's for the layers at 8, ...).
        layers = list(self.base.layers)
        weights = np.array([sum(plan.choice(n).bits == precision for n in layers) for precision in self.precisions], dtype=float)
        weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(self.bases), 1 / len(self.bases))
        logs = np.array([self._log_estimate(i, plan) for i in range(len(self.bases))])
        return float(np.exp(np.dot(weights, logs)))
