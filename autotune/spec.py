"""Reads and validates the four TOML catalogue kinds; every error names the file, the field and the value.

search_spaces/  which layers, which weight bits, which pruning ratios
proxies/        which cheap metrics score a trial, and the objectives among them
hardware/       a runtime target: backend, threads, batches, what precisions it realises, cost
studies/        a study: workload + search space + proxy recipe + targets + budgets + storage
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from autotune.cycle_spec import (
    Policy,
    Replay,
    WarmStart,
    Watch,
    load_policy,
    load_replay,
    load_warm_start,
    load_watch,
)
from autotune.errors import SpecError
from autotune.gates import Gates, load_gates
from autotune.paths import PACKAGE_ROOT, default_storage_url
from autotune.plan import SUPPORTED_BITS

CATALOGUES = ("search_spaces", "proxies", "hardware", "studies")
LAYER_KINDS = ("conv", "linear", "embedding", "any")


class Fields:
    """Typed access to one TOML table that reports `file: field: problem` and refuses unknown keys."""

    def __init__(self, path: Path, table: dict, prefix: str = "") -> None:
        self.path, self.table, self.prefix, self.used = path, table, prefix, set()

    def _where(self, key: str) -> str:
        return f"{self.path}: {self.prefix}{key}"

    def error(self, key: str, message: str) -> SpecError:
        return SpecError(f"{self._where(key)}: {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., expected: str = "") -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is ...:
                raise self.error(key, f"missing; expected {expected or _type_name(kind)}")
            return default
        value = self.table[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(key, f"{value!r} is not {expected or _type_name(kind)}")
        if not isinstance(value, kind):
            raise self.error(key, f"{value!r} is not {expected or _type_name(kind)}")
        return value

    def number(self, key: str, default: Any = ..., minimum: float | None = None, integer: bool = False) -> Any:
        value = self.get(key, int if integer else (int, float), default, "an integer" if integer else "a number")
        if value is not None and minimum is not None and value < minimum:
            raise self.error(key, f"{value!r} is below the minimum {minimum}")
        return value

    def sub(self, key: str) -> Fields:
        return Fields(self.path, self.get(key, dict, {}, "a table"), f"{self.prefix}{key}.")

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.error(unknown[0], f"unknown field; expected one of {sorted(self.used)}")


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a table", bool: "true/false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: malformed TOML: {exc}") from exc
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from exc


def catalogue_roots() -> list[Path]:
    """Catalogues are looked up in the current directory first, then in the built-in ones (shipped with the package)."""
    roots = [Path.cwd()]
    if PACKAGE_ROOT not in roots:
        roots.append(PACKAGE_ROOT)
    return roots


def find_entry(catalogue: str, reference: str) -> Path:
    """Resolve a catalogue entry given by name (`fashion-cnn`) or by path (`studies/fashion-cnn.toml`)."""
    as_path = Path(reference)
    if as_path.suffix == ".toml" or "/" in reference:
        if as_path.is_file():
            return as_path
        raise SpecError(f"{reference}: no such file")
    for root in catalogue_roots():
        candidate = root / catalogue / f"{reference}.toml"
        if candidate.is_file():
            return candidate
    raise SpecError(f"{catalogue}/{reference}.toml: no such {catalogue} entry; have {list_entries(catalogue)}")


def list_entries(catalogue: str) -> list[str]:
    names = set()
    for root in catalogue_roots():
        names.update(p.stem for p in (root / catalogue).glob("*.toml"))
    return sorted(names)


# ---------------------------------------------------------------- search spaces


@dataclass(frozen=True)
class LayerRule:
    """Choices for the layers whose qualified name matches `match` (fnmatch) and whose kind is `kind`."""

    match: str
    kind: str
    bits: tuple[int, ...]
    prune: tuple[float, ...]
    index: int  # position in the file, for error messages


@dataclass(frozen=True)
class SearchSpaceSpec:
    name: str
    path: Path
    rules: tuple[LayerRule, ...]
    keep_full_precision: tuple[str, ...]
    description: str = ""
    channel_multiple: int = 1


def _prune_grid(fields: Fields) -> tuple[float, ...]:
    raw = fields.get("prune", (list, dict), [0.0], "a list of ratios or {min, max, step}")
    if isinstance(raw, dict):
        grid = Fields(fields.path, raw, f"{fields.prefix}prune.")
        low, high = grid.number("min", 0.0, 0.0), grid.number("max")
        step = grid.number("step")
        grid.reject_unknown()
        if step <= 0 or high < low:
            raise fields.error("prune", f"{raw!r}: expected min <= max and step > 0")
        count = int(math.floor((high - low) / step + 1e-9)) + 1
        values = [round(low + i * step, 6) for i in range(count)]
    else:
        values = raw
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise fields.error("prune", f"{value!r} is not a pruning ratio in [0, 1)")
    return tuple(sorted({round(float(v), 6) for v in values}))


def load_search_space(reference: str) -> SearchSpaceSpec:
    path = find_entry("search_spaces", reference)
    root = Fields(path, read_toml(path))
    description = root.get("description", str, "")
    keep = tuple(root.get("keep_full_precision", list, [], "a list of layer patterns"))
    channel_multiple = root.number("channel_multiple", 1, 1, integer=True)
    raw_rules = root.get("layers", list, expected="a list of [[layers]] tables")
    root.reject_unknown()
    rules = []
    for index, raw in enumerate(raw_rules):
        if not isinstance(raw, dict):
            raise root.error(f"layers[{index}]", "expected a [[layers]] table")
        fields = Fields(path, raw, f"layers[{index}].")
        match = fields.get("match", str, "*")
        kind = fields.get("kind", str, "any")
        if kind not in LAYER_KINDS:
            raise fields.error("kind", f"{kind!r}: expected one of {list(LAYER_KINDS)}")
        bits = fields.get("bits", list, [32], "a list of weight bit-widths")
        for value in bits:
            if value not in SUPPORTED_BITS or isinstance(value, bool):
                raise fields.error("bits", f"{value!r}: expected bit-widths from {list(SUPPORTED_BITS)}")
        if not bits:
            raise fields.error("bits", "empty list: a layer needs at least one bit-width")
        prune = _prune_grid(fields)
        if not prune:
            raise fields.error("prune", "empty list: a layer needs at least one pruning ratio (0.0 keeps all channels)")
        fields.reject_unknown()
        rules.append(LayerRule(match, kind, tuple(sorted(set(bits))), prune, index))
    if not rules:
        raise root.error("layers", "no [[layers]] rules: the search space has no choices")
    return SearchSpaceSpec(path.stem, path, tuple(rules), keep, description, channel_multiple)


# ---------------------------------------------------------------- proxy recipes


@dataclass(frozen=True)
class ProxyRecipe:
    name: str
    path: Path
    objectives: tuple[str, ...]
    report: tuple[str, ...]
    calibration_samples: int
    settings: dict[str, dict] = field(default_factory=dict)  # per-proxy tables, e.g. [latency_macs]
    description: str = ""
    activations: str = "none"  # "int8": simulate static INT8 activations at 8-bit conv/linear inputs (ACTIVATIONS)

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.objectives + tuple(m for m in self.report if m not in self.objectives)


def load_proxy_recipe(reference: str) -> ProxyRecipe:
    from autotune.proxies import registered_proxies

    path = find_entry("proxies", reference)
    data = read_toml(path)
    known = registered_proxies()
    root = Fields(path, data)
    description = root.get("description", str, "")
    objectives = tuple(root.get("objectives", list, expected="a list of proxy names"))
    report = tuple(root.get("report", list, [], "a list of proxy names"))
    samples = root.number("calibration_samples", 256, 1, integer=True)
    activations = root.get("activations", str, "none")
    if activations not in ACTIVATIONS:
        raise root.error("activations", f"{activations!r}: expected one of {list(ACTIVATIONS)}")
    settings = {}
    for name in known:
        if name in data:
            settings[name] = root.get(name, dict, {}, "a table")
    root.reject_unknown()
    if not objectives:
        raise root.error("objectives", "empty: a search needs at least one objective")
    for key, names in (("objectives", objectives), ("report", report)):
        for name in names:
            if name not in known:
                raise root.error(key, f"{name!r} is not a known proxy; have {sorted(known)}")
    for name, table in settings.items():
        known[name].check_settings(Fields(path, table, f"{name}."))
    return ProxyRecipe(path.stem, path, objectives, report, samples, settings, description, activations)


# How the proxies' compressed model treats activations: as the weights' only ("none", weight-only targets), or
# quantized to 8 bits per tensor at the inputs of 8-bit conv/linear layers, as static W8A8 targets run them.
ACTIVATIONS = ("none", "int8")


# ---------------------------------------------------------------- hardware targets


@dataclass(frozen=True)
class MeasureSettings:
    """Shared latency protocol: warm-up excluded, then repeat until both minimums are met."""

    warmup: int = 10
    min_repeats: int = 50
    min_seconds: float = 1.0
    max_repeats: int = 2000


@dataclass(frozen=True)
class HardwareSpec:
    name: str
    path: Path
    backend: str
    threads: int
    latency_batch: int
    throughput_batch: int
    weight_bits: dict[str, tuple[int, ...]]  # per layer kind, the bit-widths this target realises
    measure: MeasureSettings
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific table [options]
    description: str = ""
    instance: str = ""
    price_per_hour: float | None = None
    latency_slo_p95_ms: float | None = None
    half: str | None = None  # the 16-bit float format layers at 16 bits run in here ("bf16", "f16"), None: none
    float_per_layer: bool = True  # False: one float precision for the whole model (OpenVINO's precision hint)
    half_note: str = ""  # why 16 bits is unavailable, when the file asked for it
    latency_objective: str = "throughput_batch"  # which latency the measured study minimises (LATENCY_OBJECTIVES)

    @property
    def latency_metric(self) -> str:
        """The measured study's latency objective: p50 of one call at the latency or the throughput batch."""
        return LATENCY_OBJECTIVES[self.latency_objective]

    def cost_per_million(self, throughput_per_s: float) -> float | None:
        """Cost of a million requests when the instance serves at `throughput_per_s`."""
        if self.price_per_hour is None or throughput_per_s <= 0:
            return None
        return self.price_per_hour / 3600.0 / throughput_per_s * 1e6

    def supports(self, kind: str, bits: int) -> bool:
        return bits in self.weight_bits.get(kind, ())

    def realises(self, kind: str) -> str:
        """The bit-widths a layer kind runs at, and why 16 is missing where the file asked for it."""
        text = f"{list(self.weight_bits.get(kind, (32,)))} bits"
        return f"{text} ({self.half_note})" if self.half_note else text


def load_hardware(reference: str) -> HardwareSpec:
    from autotune.targets import registered_backends

    path = find_entry("hardware", reference)
    root = Fields(path, read_toml(path))
    description = root.get("description", str, "")
    backend = root.get("backend", str)
    backends = registered_backends()
    if backend not in backends:
        raise root.error("backend", f"{backend!r} is not a known backend; have {sorted(backends)}")
    threads = root.number("threads", 2, 1, integer=True)
    latency_batch = root.number("latency_batch", 1, 1, integer=True)
    throughput_batch = root.number("throughput_batch", 64, 1, integer=True)
    bits_table = root.sub("weight_bits")
    weight_bits = {}
    for kind in ("conv", "linear", "embedding"):
        values = bits_table.get(kind, list, [32], "a list of bit-widths")
        for value in values:
            if value not in SUPPORTED_BITS:
                raise bits_table.error(kind, f"{value!r}: expected bit-widths from {list(SUPPORTED_BITS)}")
        weight_bits[kind] = tuple(sorted(set(values)))
    bits_table.reject_unknown()
    half, per_layer, half_note = _float_formats(root.sub("float"), backends[backend], root.get("options", dict, {}))
    if half is None:
        weight_bits = {kind: tuple(b for b in bits if b != 16) for kind, bits in weight_bits.items()}
    m = root.sub("measure")
    measure = MeasureSettings(
        warmup=m.number("warmup", 10, 0, integer=True),
        min_repeats=m.number("min_repeats", 50, 1, integer=True),
        min_seconds=m.number("min_seconds", 1.0, 0.0),
        max_repeats=m.number("max_repeats", 2000, 1, integer=True),
    )
    m.reject_unknown()
    slo = root.number("latency_slo_p95_ms", None, 0.0)
    latency_objective = root.get("latency_objective", str, "throughput_batch")
    if latency_objective not in LATENCY_OBJECTIVES:
        raise root.error("latency_objective", f"{latency_objective!r}: expected one of {list(LATENCY_OBJECTIVES)}")
    cost = root.sub("cost")
    instance = cost.get("instance", str, "")
    price = cost.number("price_per_hour", None, 0.0)
    cost.reject_unknown()
    options = root.get("options", dict, {}, "a table")
    root.reject_unknown()
    spec = HardwareSpec(
        path.stem,
        path,
        backend,
        threads,
        latency_batch,
        throughput_batch,
        weight_bits,
        measure,
        options,
        description,
        instance,
        float(price) if price is not None else None,
        float(slo) if slo is not None else None,
        half,
        per_layer,
        half_note,
        latency_objective,
    )
    backends[backend].check_options(Fields(path, options, "options."))
    return spec


HALF_FORMATS = ("bf16", "f16")
# The measured study's latency objective, by the batch it is timed at (both are stored on every trial).
LATENCY_OBJECTIVES = {"latency_batch": "latency_p50_ms", "throughput_batch": "batch_latency_p50_ms"}


def _float_formats(fields: Fields, backend, options: dict) -> tuple[str | None, bool, str]:
    """The [float] table: which 16-bit format layers at 16 bits run in (detected where `half = "auto"`), and whether
    float layers may differ in precision within one model. Returns (format or None, per_layer, why not 16)."""
    half = fields.get("half", str, "none")
    if half not in (*HALF_FORMATS, "none", "auto"):
        raise fields.error("half", f"{half!r}: expected one of {[*HALF_FORMATS, 'none', 'auto']}")
    per_layer = fields.get("per_layer", bool, True)
    fields.reject_unknown()
    if half == "none":
        return None, per_layer, ""
    if half == "auto":
        detected, why = backend.native_half(options)
        return detected, per_layer, "" if detected else f"no native 16-bit float here: {why}"
    return half, per_layer, ""


# ---------------------------------------------------------------- study specs


@dataclass(frozen=True)
class RecoverySettings:
    """Multi-fidelity recovery budgets (distillation steps) and the shared recovery recipe."""

    search_steps: int = 0
    rescore_steps: int = 150
    full_steps: int = 600
    # The full evaluation's recovery continues the re-score's (its first rescore_steps steps) instead of starting over.
    continue_rescore: bool = True
    batch_size: int = 128
    learning_rate: float = 1e-3
    temperature: float = 2.0
    task_loss_weight: float = 0.5
    recalibration_samples: int = 2560
    # Where search-stage BatchNorm statistics come from: "recalibrate" re-estimates them on
    # `recalibration_samples` recovery inputs (cached per pruning); "scoring_batch" takes them from the
    # calibration batch in the scoring pass itself (one forward pass per trial, for big models).
    search_batchnorm: str = "recalibrate"
    seed: int = 0
    device: str = "auto"  # where proxies and recovery run: "auto" (CUDA if available), "cpu" or "cuda"
    # Distillation's arithmetic: "auto" (bf16 autocast where the device runs bf16 natively), "f32" or "bf16".
    precision: str = "auto"

    @property
    def continued_steps(self) -> int:
        """The re-score's steps a full evaluation's recovery continues from (0: it recovers from the pruned model)."""
        steps = self.rescore_steps if self.continue_rescore else 0
        return steps if 0 < steps < self.full_steps else 0


@dataclass(frozen=True)
class StudySpec:
    name: str
    path: Path
    workload: str
    search_space: SearchSpaceSpec
    proxies: ProxyRecipe
    targets: tuple[HardwareSpec, ...]
    storage: str
    sampler: str
    trials: int
    seed: int
    anchors: tuple[float, ...]
    promote: int
    rescore: int
    recovery: RecoverySettings
    gates: Gates = Gates()  # acceptance bounds checked on the full evaluation (not part of the search's identity)
    # Each anchor also with the layers a target's latency table runs faster in float than in INT8 (autotune.anchors).
    target_anchors: bool = True
    # K split across the targets, each share from the front of its own latency (autotune.promotion).
    promote_per_target: bool = True
    # TPE and GP propose an untried plan where they would repeat one (autotune.fresh_plans).
    fresh_plans: bool = True
    warm_start: WarmStart = WarmStart()
    policy: Policy = Policy()
    watch: Watch = Watch()
    replay: Replay = Replay()
    cycle: int | None = None  # set when the study is one cycle of a lineage (`autotune cycle`)

    @property
    def lineage(self) -> str:
        """The spec's own name: every cycle of it belongs to this lineage."""
        return self.name.rsplit("/", 1)[0] if self.cycle is not None else self.name

    @property
    def proxy_study(self) -> str:
        """The proxy search's study: `<name>` for a plain run, `<lineage>/c<N>/proxy` for a cycle."""
        return f"{self.name}/proxy" if self.cycle is not None else self.name

    def for_cycle(self, cycle: int) -> StudySpec:
        return replace(self, name=f"{self.name}/c{cycle}", cycle=cycle)

    def search_digest(self, model_fingerprint: str = "", recovery_precision: str | None = None) -> str:
        """Identity of what defines the proxy study's trials; a resumed study must match it."""
        parts = {
            "workload": self.workload,
            "model": model_fingerprint,
            "search_space": read_toml(self.search_space.path),
            "proxies": read_toml(self.proxies.path),
            # A per-target objective measured on changed target settings is a different objective.
            "targets": {t.name: read_toml(t.path) for t in self.targets},
            "search_steps": self.recovery.search_steps,
            # Where recovery runs and in which float format change the search's scores only through distillation,
            # which the search runs only when search_steps > 0.
            "recovery": {
                k: v
                for k, v in asdict(self.recovery).items()
                if not k.endswith("_steps") and k not in ("device", "precision", "continue_rescore")
            },
        }
        if self.recovery.search_steps:  # the precision distillation resolved to here: "auto" differs by machine
            parts["recovery_precision"] = recovery_precision or self.recovery.precision
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


SAMPLERS = ("auto", "nsga2", "tpe", "gp", "gp-tpe", "random")
DEVICES = ("auto", "cpu", "cuda")
SEARCH_BATCHNORM = ("recalibrate", "scoring_batch")
RECOVERY_PRECISIONS = ("auto", "f32", "bf16")


def load_study_spec(reference: str) -> StudySpec:
    path = find_entry("studies", reference)
    root = Fields(path, read_toml(path))
    name = root.get("name", str, path.stem)
    workload = root.get("workload", str, expected="a built-in workload name or 'package.module:function'")
    space_ref = root.get("search_space", str)
    proxies_ref = root.get("proxies", str)
    target_refs = root.get("targets", list, expected="a list of hardware target names")
    storage = root.get("storage", str, "") or default_storage_url()
    search = root.sub("search")
    sampler = search.get("sampler", str, "auto")
    if sampler not in SAMPLERS:
        raise search.error("sampler", f"{sampler!r}: expected one of {list(SAMPLERS)}")
    trials = search.number("trials", 60, 1, integer=True)
    seed = search.number("seed", 0, 0, integer=True)
    anchors = search.get("anchors", list, [0.0, 0.3, 0.5], "a list of uniform pruning ratios")
    for ratio in anchors:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0:
            raise search.error("anchors", f"{ratio!r} is not a pruning ratio in [0, 1)")
    target_anchors = search.get("target_anchors", bool, True)
    fresh_plans = search.get("fresh_plans", bool, True)
    search.reject_unknown()
    promotion = root.sub("promotion")
    promote = promotion.number("candidates", 4, 1, integer=True)
    rescore = promotion.number("rescore", 3 * promote, 1, integer=True)
    if rescore < promote:
        raise promotion.error("rescore", f"{rescore} is fewer than candidates={promote}")
    per_target = promotion.get("per_target", bool, True)
    promotion.reject_unknown()
    r = root.sub("recovery")
    defaults = RecoverySettings()
    recovery = RecoverySettings(
        search_steps=r.number("search_steps", defaults.search_steps, 0, integer=True),
        rescore_steps=r.number("rescore_steps", defaults.rescore_steps, 0, integer=True),
        full_steps=r.number("full_steps", defaults.full_steps, 0, integer=True),
        continue_rescore=r.get("continue_rescore", bool, defaults.continue_rescore),
        batch_size=r.number("batch_size", defaults.batch_size, 1, integer=True),
        learning_rate=r.number("learning_rate", defaults.learning_rate, 0.0),
        temperature=r.number("temperature", defaults.temperature, 0.0),
        task_loss_weight=r.number("task_loss_weight", defaults.task_loss_weight, 0.0),
        recalibration_samples=r.number("recalibration_samples", defaults.recalibration_samples, 1, integer=True),
        search_batchnorm=r.get("search_batchnorm", str, defaults.search_batchnorm),
        seed=r.number("seed", defaults.seed, 0, integer=True),
        device=r.get("device", str, defaults.device),
        precision=r.get("precision", str, defaults.precision),
    )
    if recovery.device not in DEVICES:
        raise r.error("device", f"{recovery.device!r}: expected one of {list(DEVICES)}")
    if recovery.precision not in RECOVERY_PRECISIONS:
        raise r.error("precision", f"{recovery.precision!r}: expected one of {list(RECOVERY_PRECISIONS)}")
    if recovery.search_batchnorm not in SEARCH_BATCHNORM:
        raise r.error("search_batchnorm", f"{recovery.search_batchnorm!r}: expected one of {list(SEARCH_BATCHNORM)}")
    r.reject_unknown()
    gates = load_gates(root.sub("gates"))
    warm_start = load_warm_start(root.sub("warm_start"))
    policy = load_policy(root.sub("policy"))
    watch = load_watch(root.sub("watch"), path.parent)
    replay = load_replay(root.sub("replay"), path.parent)
    root.reject_unknown()
    if "/" in name:
        raise root.error("name", f"{name!r}: '/' separates a lineage from its cycles and stages; use '-'")
    if not target_refs:
        raise root.error("targets", "empty: a study needs at least one hardware target")

    def nested(key: str, loader, ref: str):
        try:
            return loader(ref)
        except SpecError as exc:
            raise SpecError(f"{path}: {key} = {ref!r}: {exc}") from exc

    targets = tuple(nested("targets", load_hardware, ref) for ref in target_refs)
    if policy.objective == "cost_per_million":
        unpriced = [t.name for t in targets if t.price_per_hour is None]
        if unpriced:
            raise SpecError(
                f"{path}: policy.objective: 'cost_per_million' needs a price; target(s) {unpriced} have no "
                "[cost] price_per_hour"
            )
    return StudySpec(
        name=name,
        path=path,
        workload=workload,
        search_space=nested("search_space", load_search_space, space_ref),
        proxies=nested("proxies", load_proxy_recipe, proxies_ref),
        targets=targets,
        storage=storage,
        sampler=sampler,
        trials=trials,
        seed=seed,
        anchors=tuple(float(r) for r in anchors),
        target_anchors=target_anchors,
        fresh_plans=fresh_plans,
        promote=promote,
        rescore=rescore,
        promote_per_target=per_target,
        recovery=recovery,
        gates=gates,
        warm_start=warm_start,
        policy=policy,
        watch=watch,
        replay=replay,
    )
