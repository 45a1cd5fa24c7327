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


def _shared_promotion(spec):
    return dataclasses.replace(spec, promote_per_target=False)


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
    "shared-promotion": (
        _shared_promotion,
        "autotune promoting from one front over every target's latency (no per-target shares)",
    ),
}
