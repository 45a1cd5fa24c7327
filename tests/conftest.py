"""Shared fixtures: one temporary workspace per session, the tiny trained Fashion-MNIST workload."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the benchmarks package: its tests, and helpers the tests share with it


@pytest.fixture(scope="session", autouse=True)
def workspace(tmp_path_factory) -> Path:
    """Every test writes caches, storages and artifacts under one session folder, never ./.autotune."""
    path = tmp_path_factory.mktemp("autotune-home")
    os.environ["AUTOTUNE_HOME"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_workload(workspace):
    from autotune.workloads import load_workload

    return load_workload("fashion-cnn-tiny")


@pytest.fixture(scope="session")
def tiny_context(tiny_workload):
    from autotune.context import prepare
    from autotune.spec import load_study_spec

    return prepare(load_study_spec("fashion-cnn-tiny"))


@pytest.fixture
def catalogue(tmp_path, monkeypatch) -> Path:
    """A working directory with its own catalogue folders (looked up before the built-in ones)."""
    for folder in ("search_spaces", "proxies", "hardware", "studies"):
        (tmp_path / folder).mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def autotune_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real console script, as a user would."""
    executable = shutil.which("autotune", path=os.path.dirname(sys.executable)) or "autotune"
    return subprocess.run(
        [executable, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def quick_measurement_hardware(folder: Path, seconds: float = 0.1) -> None:
    """Copies of the built-in CPU hardware files in `folder`'s catalogue (looked up first) whose full evaluations
    time each batch for `seconds` instead of at least 1 s: for tests of the workflow, not of the timings."""
    (folder / "hardware").mkdir(exist_ok=True)
    for name in ("cpu-openvino", "cpu-onnxruntime"):
        text = (REPO / "hardware" / f"{name}.toml").read_text()
        assert "min_seconds = 1.0" in text and "min_repeats = 100" in text, name
        quick = text.replace("min_seconds = 1.0", f"min_seconds = {seconds}").replace("min_repeats = 100", "min_repeats = 20")
        (folder / "hardware" / f"{name}.toml").write_text(quick)
