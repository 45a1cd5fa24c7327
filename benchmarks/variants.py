"""Search settings under trial in the benchmark, each a method "autotune:<variant>" beside autotune's default.

Kept apart from benchmarks.methods so the page (re-rendered without torch) can label them.
"""

import dataclasses


def _without_target_anchors(spec):
    return dataclasses.replace(spec, target_anchors=False)


def _without_latency_check(spec):
    settings = dict(spec.proxies.settings)
    settings["latency_measured"] = dict(settings.get("latency_measured", {})) | {"check_plans": 0}
    return dataclasses.replace(spec, proxies=dataclasses.replace(spec.proxies, settings=settings))


def _without_boundary_pairs(spec):
    settings = dict(spec.proxies.settings)
    settings["latency_measured"] = {k: v for k, v in settings.get("latency_measured", {}).items() if k != "boundaries"}
    return dataclasses.replace(spec, proxies=dataclasses.replace(spec.proxies, settings=settings))


def _repeated_plans(spec):
    return dataclasses.replace(spec, fresh_plans=False)


def _anchors(*ratios: float):
    return lambda spec: dataclasses.replace(spec, anchors=ratios)


def _shared_promotion(spec):
    return dataclasses.replace(spec, promote_per_target=False)


def _sampler(name: str):
    return lambda spec: dataclasses.replace(spec, sampler=name)


# variant -> (the study spec it searches with, given the study's; its label on the page)
SEARCH_VARIANTS = {
    "uniform-anchors": (_without_target_anchors, "autotune with the uniform anchors alone (no target anchors)"),
    "unchecked-latency": (
        _without_latency_check,
        "autotune with the latency tables unchecked (no whole plans timed, no fallback table)",
    ),
    "no-boundary-pairs": (
        _without_boundary_pairs,
        "autotune without the latency tables' pair terms",
    ),
    "repeated-plans": (_repeated_plans, "autotune with TPE alone (its proposals may repeat a plan already tried)"),
    # fashion-cnn's anchors went from [0, 0.3, 0.5] to [0, 0.3, 0.5, 0.7] on 2026-12-05: each variant names its own
    "anchors-to-0.5": (_anchors(0.0, 0.3, 0.5), "autotune with the uniform anchors 0, 0.3 and 0.5 (no 0.7)"),
    "anchors-to-0.7": (
        _anchors(0.0, 0.3, 0.5, 0.7),
        "autotune with a uniform anchor at the sweep's most pruned ratio (0.7) too",
    ),
    "tpe": (_sampler("tpe"), "autotune searching with TPE alone (the cold default until 2026-12-05)"),
    "gp-tpe": (_sampler("gp-tpe"), "autotune searching with GPSampler for its first 48 trials, then TPE"),
    "gp": (_sampler("gp"), "autotune searching with GPSampler"),
    "shared-promotion": (
        _shared_promotion,
        "autotune promoting from one front over every target's latency (no per-target shares)",
    ),
}
