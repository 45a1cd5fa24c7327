"""Search settings under trial in the benchmark, each a method "autotune:<variant>" beside autotune's default.

Kept apart from benchmarks.methods so the page (re-rendered without torch) can label them.
"""

# variant -> (the study spec's fields it overrides, its label on the page)
SEARCH_VARIANTS = {
    "uniform-anchors": ({"target_anchors": False}, "autotune with the uniform anchors alone (no target anchors)"),
}
