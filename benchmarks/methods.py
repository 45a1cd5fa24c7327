"""The plans each compared method sends to the full evaluation, in the order it spends them.

- autotune: the real proxy search and promotion (`autotune.search`, `autotune.promotion`), K promoted plans;
- random: plans drawn uniformly from the same search space;
- sweep: INT8 everywhere with the same pruning ratio on every layer, 0.1 ... 0.7 (what a person tries by hand);
- NNCF's quantize_with_accuracy_control on the FP32 model, built here (OpenVINO only; not a plan).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from autotune.anchors import MIN_ANCHOR_GAIN, uniform_anchors
from autotune.context import StudyContext
from autotune.identity import proxies_digest
from autotune.latency_check import CHECK_MIN_SPEARMAN
from autotune.plan import Plan
from autotune.promotion import promote
from autotune.proxies.latency_measured import MeasuredLatency
from autotune.scoring import ProxyScorer
from autotune.search import FRESH_PLAN_SAMPLERS, run_search, sampler_name
from autotune.targets.base import Artifact
from autotune.workloads.io import iter_batches, take
from benchmarks.variants import SEARCH_VARIANTS

SWEEP_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
NAMED_ANCHORS = (0.0, 0.3, 0.5)  # the uniform anchors of every proxy study named without its ratios
PHASES_ATTR = "benchmark_phases_s"  # on the proxy study: search and re-score seconds of its first complete pass


def sweep_plans(context: StudyContext, ratios=SWEEP_RATIOS) -> list[Plan]:
    """INT8 at each ratio, snapped to the space's grid (MiniLM prunes 0 / 0.25 / 0.5 of its heads): distinct plans."""
    return uniform_anchors(context.space, ratios)


def autotune_plans(
    context: StudyContext,
    scorer: ProxyScorer,
    storage,
    trials: int,
    evaluations: int,
    seed: int,
    sampler: str,
    method: str = "autotune",
) -> tuple[list[Plan], dict[str, float], list]:
    """Run the proxy search and promotion as a study would; returns the promoted plans, the phase times and the
    promoted candidates (their proxy scores). The proxy study is named after the proxy recipe's content and the
    anchors, so a changed recipe searches afresh instead of resuming trials scored by the old one (a search variant
    is named by its settings alone: the default's study under them is the same study)."""
    recipe = proxies_digest(context.spec.proxies)[:8]
    variant = method.split(":", 1)[1] if ":" in method else ""
    study_method = "autotune" if variant in SEARCH_VARIANTS else method
    anchors = f"-target-anchors-{MIN_ANCHOR_GAIN:g}" if context.spec.target_anchors else ""
    if tuple(context.spec.anchors) != NAMED_ANCHORS:  # studies named before the ratios were part of the name had these
        anchors = "-anchors-" + "-".join(f"{ratio:g}" for ratio in context.spec.anchors) + anchors
    checked = f"-latency-checked-{CHECK_MIN_SPEARMAN:g}" if latency_checked(context.spec) else ""
    # TPE and GP propose untried plans since 2026-12-05 (search.fresh_plans): a proxy study searched before then would
    # otherwise be resumed as this one.
    chosen = sampler_name(sampler, warm=False)
    fresh = "-fresh-plans" if context.spec.fresh_plans and chosen in FRESH_PLAN_SAMPLERS else ""
    # Named by the sampler "auto" stands for (TPE until 2026-12-05, GP then TPE since): a study searched under an old
    # default must not be resumed as the new one's.
    spec = dataclasses.replace(
        context.spec,
        name=f"{context.spec.name}/{study_method}/{chosen}-s{seed}-proxies-{recipe}{anchors}{checked}{fresh}",
        seed=seed,
        sampler=sampler,
        trials=trials,
        promote=evaluations,
        rescore=max(context.spec.rescore, 2 * evaluations),
    )
    run_context = dataclasses.replace(context, spec=spec)
    phases = {}
    started = time.perf_counter()
    study = run_search(run_context, scorer, storage, trials)
    phases["proxy_search_s"] = time.perf_counter() - started
    started = time.perf_counter()
    _, promoted = promote(run_context, scorer, study)
    phases["rescore_s"] = time.perf_counter() - started
    # A resumed benchmark finds the search done and the recoveries cached: report the first complete pass's times.
    first = study.user_attrs.get(PHASES_ATTR)
    if first is None:
        study.set_user_attr(PHASES_ATTR, phases)
    return [c.plan for c in promoted], first or phases, promoted


def latency_checked(spec) -> bool:
    """Whether the study's latency tables are checked against whole plans on any of its targets (autotune.latency_check)."""
    if "latency_measured" not in spec.proxies.objectives:
        return False
    settings = spec.proxies.settings.get("latency_measured", {})
    return any(MeasuredLatency(settings | {"target": target}).setting("check_plans") for target in spec.targets)


def accuracy_control(context: StudyContext, target, max_drop_pts: float, folder: Path, validation_samples: int | None):
    """NNCF's quantize_with_accuracy_control on the FP32 IR: INT8 everywhere, then layers reverted to FP32 by NNCF's
    ranking until the validation metric is within `max_drop_pts` of FP32. Returns the artifact and the seconds."""
    import nncf
    import openvino as ov

    started = time.perf_counter()
    fp32_plan = context.reference_plans()["fp32"]
    fp32 = target.build(context.recovery.teacher, fp32_plan, context.build_context(), folder / "fp32")
    model = ov.Core().read_model(str(fp32.files[0]))
    io, workload = context.workload.io, context.workload
    calibration = context.calibration
    samples = [take(calibration, slice(i, i + 1)) for i in range(len(calibration))]
    validation = workload.validation
    count = len(validation) if validation_samples is None else min(validation_samples, len(validation))
    inputs = take(validation.inputs, slice(0, count))
    labels = validation.labels_numpy()[:count]
    # Each item carries its labels: NNCF validates on subsets of the items while it ranks layers.
    batches = [(io.feed(part), labels[i * 256 : (i + 1) * 256]) for i, part in enumerate(iter_batches(inputs, 256))]

    def validate(compiled, data) -> float:
        items = list(data)
        outputs = np.concatenate([compiled(feed)[compiled.output(0)] for feed, _ in items])
        return float(workload.metric(outputs, np.concatenate([part for _, part in items])))

    quantized = nncf.quantize_with_accuracy_control(
        model,
        calibration_dataset=nncf.Dataset(samples, io.feed),
        validation_dataset=nncf.Dataset(batches),
        validation_fn=validate,
        max_drop=max_drop_pts / 100,
        drop_type=nncf.DropType.ABSOLUTE,
        subset_size=len(samples),
    )
    out = folder / "accuracy-control"
    out.mkdir(parents=True, exist_ok=True)
    xml = out / "model.xml"
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    artifact = Artifact(target.name, out, (xml, xml.with_suffix(".bin")), fp32_plan, {}, {}, io)
    return artifact, time.perf_counter() - started
