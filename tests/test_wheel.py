"""A non-editable install (what `pip install .` gives a user) finds its built-in catalogues from any directory.

The wheel is built from a copy of the repository and installed with pip into a fresh venv; the dependencies come from
this test's own environment through a .pth file, so nothing is downloaded and torch is not installed again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CATALOGUES = ("studies", "search_spaces", "proxies", "hardware")


def _python_files(package: Path) -> set[str]:
    return {p.relative_to(package).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy, so the build writes nothing into the repository
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for folder in ("autotune", *CATALOGUES):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    query = "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"
    paths = json.loads(subprocess.run([python, "-c", query], check=True, capture_output=True, text=True).stdout)
    site = Path(paths["purelib"])
    # A plain path line: the dependencies (and pip, setuptools) become importable, while the .pth files there (the
    # repository's editable install among them) are not run.
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    install = [python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation"]
    # --ignore-installed: pip must not touch the repository's editable install, which it sees through the .pth file.
    subprocess.run([*install, "--ignore-installed", str(source)], check=True, cwd=root, env=env, timeout=300)

    outside = root / "elsewhere"  # no catalogue folders here: only the shipped ones can answer
    outside.mkdir()
    env["AUTOTUNE_HOME"] = str(root / "home")
    return {"venv": venv, "python": python, "site": site, "outside": outside, "env": env}


def run_python(installed: dict, code: str) -> dict:
    result = subprocess.run(
        [installed["python"], "-c", code],
        cwd=installed["outside"],
        env=installed["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_installed_copy_is_used_not_the_repository(installed):
    found = run_python(installed, "import json, autotune; print(json.dumps(autotune.__file__))")
    package = Path(found).parent
    assert package == installed["site"] / "autotune"
    # Every module of the repository made it into the wheel (a sub-package missing from pyproject.toml would not).
    assert _python_files(REPO / "autotune") <= _python_files(package)


def test_builtin_catalogues_resolve_to_the_installed_copies(installed):
    code = """
import json
from autotune.spec import list_entries, load_study_spec
s = load_study_spec("fashion-cnn")
print(json.dumps({
    "paths": [str(p) for p in (s.path, s.search_space.path, s.proxies.path, *(t.path for t in s.targets))],
    "entries": {c: list_entries(c) for c in ("studies", "search_spaces", "proxies", "hardware")},
}))
"""
    found = run_python(installed, code)
    shipped = installed["site"] / "autotune" / "catalogue"
    for path in map(Path, found["paths"]):
        assert path.is_relative_to(shipped), path
        assert path.read_bytes() == (REPO / path.parent.name / path.name).read_bytes()
    for catalogue in CATALOGUES:
        assert found["entries"][catalogue] == sorted(p.stem for p in (REPO / catalogue).glob("*.toml"))
    assert {"cpu-openvino", "cpu-onnxruntime", "gpu-torchao"} <= set(found["entries"]["hardware"])


def test_console_script_runs_from_anywhere(installed):
    script = installed["venv"] / "bin" / "autotune"
    assert script.read_text().splitlines()[0] == f"#!{installed['python']}"

    def autotune(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [script, *args], cwd=installed["outside"], env=installed["env"], capture_output=True, text=True, timeout=300
        )

    result = autotune("--help")
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout and "studies" in result.stdout
    # An unknown study is refused with the names of the shipped ones: the lookup went through the installed catalogue.
    result = autotune("run", "no-such-study")
    assert result.returncode == 2, result.stderr
    assert "no such studies entry" in result.stderr and "'fashion-cnn'" in result.stderr
    result = autotune("studies")
    assert result.returncode == 0, result.stderr
