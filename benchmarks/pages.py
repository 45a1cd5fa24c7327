"""What the benchmark scripts share: quiet libraries, the objective transform for hypervolume, and writing a page
of results that keeps its hand-written reading."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import optuna

from autotune.paths import workspace

READING = "## Reading"  # a hand-written section at the end of a page, kept when the figures are rewritten


def quiet_libraries() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("nncf").setLevel(logging.ERROR)


def log_divergence(values: np.ndarray) -> np.ndarray:
    """Proxy objectives for hypervolume: the output divergence (first column) spans orders of magnitude, so log10."""
    out = np.array(values, dtype=float, copy=True)
    out[:, 0] = np.log10(np.maximum(out[:, 0], 1e-6))
    return out


def write_page(path: str | Path, text: str) -> None:
    """Write the generated figures; a `## Reading` section already on the page is kept after them."""
    output = Path(path)
    previous = output.read_text() if output.exists() else ""
    reading = previous[previous.find(READING):] if READING in previous else ""
    output.write_text(text + ("\n" + reading if reading else ""))


def write_results(out: str | Path, results: dict, render: Callable[[dict], str], started: float) -> None:
    """Stamp a run's results with its date and seconds since `started` (time.time()), then write them beside the page
    (.json) and the page rendered from them."""
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results["seconds"] = round(time.time() - started)
    out = Path(out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    write_page(out, render(results))
    print(f"wrote {out}")


def add_plan_arguments(parser, page: str, repeats_help: str) -> None:
    """The arguments of a benchmark that times sampled plans of a study on CPU targets, `--repeats` times."""
    parser.add_argument("--study", default="fashion-cnn")
    parser.add_argument("--targets", default="cpu-openvino,cpu-onnxruntime", help="comma-separated hardware files")
    parser.add_argument("--plans", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3, help=repeats_help)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / page))


def median_and_each(values: list[float]) -> str:
    """A table cell: the median Spearman, then each value."""
    return f"{np.median(values):+.3f} ({', '.join(f'{v:+.2f}' for v in values)})" if values else "-"


def run_record(module: str, argv: list[str] | None, args, fields: tuple[str, ...]) -> dict:
    """What a benchmark page states about its run: the command as typed, the named arguments, and the machine."""
    from benchmarks.run import machine  # run imports this module

    about = machine()
    return {
        "command": " ".join([f"python -m {module}", *(argv if argv is not None else sys.argv[1:])]),
        **{name: getattr(args, name) for name in fields},
        "machine": f"{about['cpu']}, {about['cores']} cores, {about['platform']}",
    }


def write_study_section(out: Path, header: list[str], study: str, lines: list[str]) -> None:
    """Replace one study's `## <study>` section of a page, keeping the other studies' sections."""
    sections: dict[str, list[str]] = {}
    if out.exists():
        current = None
        for line in out.read_text().splitlines():
            if line.startswith("## "):
                current = line[3:]
                sections[current] = []
            if current is not None:
                sections[current].append(line)
    sections[study] = lines
    bodies = ["\n".join(body).strip() for body in sections.values()]
    out.write_text("\n".join(header) + "\n" + "\n\n".join(bodies) + "\n")


@contextlib.contextmanager
def fresh_workspace(prefix: str) -> Iterator[Path]:
    """A temporary AUTOTUNE_HOME holding only the trained base models (no cached recovery, table or study), restored
    on the way out: what a cold cycle starts from."""
    trained = workspace() / "cache" / "models"
    with tempfile.TemporaryDirectory(prefix=prefix) as fresh:
        if trained.exists():
            shutil.copytree(trained, Path(fresh) / "cache" / "models")
        previous = os.environ.get("AUTOTUNE_HOME")
        os.environ["AUTOTUNE_HOME"] = fresh
        try:
            yield Path(fresh)
        finally:
            if previous is None:
                os.environ.pop("AUTOTUNE_HOME", None)
            else:
                os.environ["AUTOTUNE_HOME"] = previous
