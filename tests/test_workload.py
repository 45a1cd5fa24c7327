"""Workload loading: built-ins, import paths, and every way a user's workload can be wrong."""

import sys

import pytest

from autotune.errors import WorkloadError
from autotune.workloads import Workload, load_workload


def test_tiny_workload_is_trained_and_cached(tiny_workload, workspace):
    model = tiny_workload.fp32_model()
    sample = tiny_workload.validation.take(slice(0, 500))
    outputs = tiny_workload.io.run_batched(model, sample.inputs).numpy()
    assert tiny_workload.metric(outputs, sample.labels_numpy()) > 0.6
    checkpoints = list((workspace / "cache" / "models").glob("*.pt"))
    assert checkpoints and tiny_workload.fingerprint and len(tiny_workload.fingerprint) == 64
    assert load_workload("fashion-cnn-tiny").fingerprint == tiny_workload.fingerprint  # reused, not retrained


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_workloads.py").write_text(
        "from autotune.workloads import load_workload\n"
        "def good():\n    return load_workload('fashion-cnn-tiny')\n"
        "def raises():\n    raise RuntimeError('database offline')\n"
        "def wrong_type():\n    return 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("user_workloads", None)


def test_user_workload_by_import_path(user_module, tiny_workload):
    assert isinstance(load_workload("user_workloads:good"), Workload)


@pytest.mark.parametrize(
    "reference, message",
    [
        ("no_such_package.module:make", "cannot import 'no_such_package.module'"),
        ("user_workloads:missing", "has no function 'missing'"),
        ("user_workloads:raises", "raises\\(\\) raised RuntimeError: database offline"),
        ("user_workloads:wrong_type", "returned int, expected autotune.Workload"),
        ("not-a-path", "expected a built-in name"),
    ],
)
def test_bad_workload_references(user_module, reference, message):
    with pytest.raises(WorkloadError, match=message):
        load_workload(reference)


def test_missing_fashion_mnist_names_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOTUNE_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(
        WorkloadError, match=r"t10k-images-idx3-ubyte.gz not found: install the Debian package dataset-fashion-mnist"
    ):
        load_workload("fashion-cnn-tiny")
