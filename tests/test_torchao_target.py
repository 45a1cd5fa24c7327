"""gpu-torchao through its CPU variant: exact per-layer precision read from the built program, compiled
measurement with compile time apart, artifacts that torch and torchao alone load, memory flat across builds."""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autotune.errors import TargetError
from autotune.layers import index_model
from autotune.plan import SUPPORTED_BITS, LayerChoice, Plan
from autotune.spec import MeasureSettings, load_hardware
from autotune.targets import make_target, torchao_load
from autotune.targets.base import BuildContext
from autotune.targets.torchao_precision import pad_rows, weight_label
from autotune.workloads.io import ModelIO


class ImageAndTokens(nn.Module):
    """A conv, an embedding and two linear layers on a (image, token ids) input: every layer kind, two inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.embed = nn.Embedding(32, 16)
        self.fc = nn.Linear(4 * 8 * 8 + 16, 64)
        self.head = nn.Linear(64, 4)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        pixels = torch.flatten(F.relu(self.conv(image)), 1)
        words = self.embed(tokens).mean(1)
        return self.head(F.relu(self.fc(torch.cat([pixels, words], 1))))


def inputs_of(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 1, 8, 8, generator=generator), torch.randint(0, 32, (count, 5), generator=generator)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = ImageAndTokens().eval()
    io = ModelIO()
    context = BuildContext(index_model(model, io, inputs_of(2)), io, inputs_of(8))
    return model, context


def cpu_target(half: str = "bf16", **options):
    """gpu-torchao's CPU variant with a short timing protocol and a small throughput batch."""
    target = make_target(load_hardware("gpu-torchao")).cpu_variant()
    spec = dataclasses.replace(
        target.spec,
        options={**target.spec.options, **options},
        half=half,
        throughput_batch=8,
        measure=MeasureSettings(warmup=2, min_repeats=5, min_seconds=0.0),
    )
    return make_target(spec)


def mixed_plan(fc_bits: int = 8) -> Plan:
    return Plan(
        {"conv": LayerChoice(16), "embed": LayerChoice(16), "fc": LayerChoice(fc_bits), "head": LayerChoice(32)}
    )


def test_weight_labels_read_the_tensor_type_and_its_attributes():
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    dynamic, weight_only = nn.Linear(32, 16), nn.Linear(32, 16)
    quantize_(dynamic, Int8DynamicActivationInt8WeightConfig())
    quantize_(weight_only, Int8WeightOnlyConfig())
    assert weight_label(dynamic.weight) == "int8"
    assert weight_label(weight_only.weight) == "int8-weights"
    assert weight_label(nn.Linear(4, 4).weight) == "f32"
    assert weight_label(nn.Linear(4, 4).to(torch.bfloat16).weight) == "bf16"
    assert weight_label(nn.Linear(4, 4).to(torch.float16).weight) == "f16"
    assert weight_label(torch.zeros(4, dtype=torch.float64)) == "float64"  # no label of ours: never equals a plan


def test_row_padding_for_cuda_int8_leaves_the_outputs_unchanged():
    torch.manual_seed(0)
    linear, padded = nn.Linear(8, 4), nn.Linear(8, 4)
    padded.load_state_dict(linear.state_dict())
    pad_rows(padded)
    for shape in ((1, 8), (3, 5, 8)):
        value = torch.randn(shape)
        torch.testing.assert_close(padded(value), linear(value))


@pytest.fixture(scope="module")
def mixed(small, tmp_path_factory):
    """The small model built at mixed precisions, and what the target predicts for some inputs."""
    if 16 not in SUPPORTED_BITS:
        pytest.skip("plans do not take 16 bits yet")
    model, context = small
    target = cpu_target(compile_mode="default")
    artifact = target.build(model, mixed_plan(), context, tmp_path_factory.mktemp("mixed"))
    inputs = inputs_of(64, seed=1)
    return artifact, inputs, target.predict(artifact, inputs)


def test_each_layer_runs_at_its_planned_precision(small, mixed, tmp_path):
    model, context = small
    artifact, inputs, predicted = mixed
    assert artifact.realised_precision == {"conv": "bf16", "embed": "bf16", "fc": "int8", "head": "f32"}
    with torch.no_grad():
        expected = model(*inputs).numpy()
    np.testing.assert_allclose(predicted, expected, rtol=0.05, atol=0.05)

    weight_only = cpu_target(half="f16", int8_weight_only=True)
    artifact = weight_only.build(model, mixed_plan(), context, tmp_path)
    assert artifact.realised_precision == {"conv": "f16", "embed": "f16", "fc": "int8-weights", "head": "f32"}


def test_a_layer_realised_at_other_bits_than_planned_is_refused(small, tmp_path):
    model, context = small
    target = cpu_target()
    plan = Plan({"fc": LayerChoice(8)})
    artifact = target.build(model, plan, context, tmp_path)
    program = torchao_load.load_program(artifact.files[0])
    bits = {name: plan.choice(name).bits for name in context.layers.layers}
    with pytest.raises(
        TargetError, match=r"layer 'fc' was planned at 4 bits \(int4\) but the built program holds int8"
    ):
        target._verify(program, context.layers, bits | {"fc": 4})
    with pytest.raises(TargetError, match=r"planned at 8 bits \(int8-weights\) but the built program holds int8"):
        cpu_target(int8_weight_only=True)._verify(program, context.layers, bits)


def test_the_artifact_alone_runs_in_a_fresh_process_with_torch_and_torchao_only(mixed, tmp_path):
    artifact, inputs, predicted = mixed
    shipped = tmp_path / "shipped"  # what `autotune export` downloads: the artifact's files, nothing else
    shipped.mkdir()
    for path in artifact.files:
        (shipped / path.name).write_bytes(path.read_bytes())
    torch.save(inputs, tmp_path / "inputs.pt")
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['torchao_load.py', {str(shipped / 'model.pt2')!r}, {str(tmp_path / 'inputs.pt')!r}, "
        f"{str(tmp_path / 'outputs.pt')!r}]\n"
        f"runpy.run_path({torchao_load.__file__!r}, run_name='__main__')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'autotune'], 'autotune was imported'\n"
    )
    # The loader runs as a plain script (-P: not even the working folder on the path); the last line checks that
    # nothing imported autotune (installed in this environment) on the way.
    done = subprocess.run(
        [sys.executable, "-P", "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(torch.load(tmp_path / "outputs.pt").numpy(), predicted, rtol=1e-4, atol=1e-4)


def test_measurement_runs_compiled_and_reports_the_compile_time_apart(small, tmp_path):
    from torch._dynamo.utils import counters

    model, context = small
    target = cpu_target(compile_mode="default")
    artifact = target.build(model, Plan({"fc": LayerChoice(8)}), context, tmp_path)
    graphs_before = counters["stats"]["unique_graphs"]
    measurement = target.measure(artifact, inputs_of(1))
    assert counters["stats"]["unique_graphs"] >= graphs_before + 2  # one static graph per timed batch size
    assert measurement.extra["compile_mode"] == "default" and measurement.extra["compile_seconds"] > 0
    values = (
        measurement.latency_p50_ms,
        measurement.batch_latency_ms,
        measurement.throughput_per_s,
        measurement.size_mb,
    )
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert measurement.latency_repeats >= 5


class Wide(nn.Module):
    """8M weights (32 MB in f32, 8 MB in INT8): a model kept per build would show in the process's memory."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(1024, 4096)
        self.down = nn.Linear(4096, 1024)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)))


def live_tensor_mb() -> float:
    """Bytes held by the tensors Python can still reach, in MB (a kept model or artifact shows here)."""
    storages = {}
    for value in gc.get_objects():
        # Plain tensors only: torchao's quantized tensors hold theirs as plain tensors, and fake ones have no data.
        if type(value) in (torch.Tensor, nn.Parameter) and value.device.type == "cpu":
            storage = value.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values()) / 2**20


def memory_across_builds(folder: Path) -> tuple[list[float], list[float], int]:
    """After each of twenty INT8 builds of Wide: the process's resident MB (freed heap handed back to the system
    first) and the MB of live tensors; and the last artifact's file size."""
    import ctypes

    trim = ctypes.CDLL("libc.so.6").malloc_trim
    torch.manual_seed(0)
    model, io, inputs = Wide().eval(), ModelIO(), torch.randn(4, 1024)
    context = BuildContext(index_model(model, io, inputs[:2]), io, inputs)
    target = cpu_target(compile_mode="none")  # the models are what is checked here, not the compiler's caches
    plan = Plan({"up": LayerChoice(8), "down": LayerChoice(8)})
    process, rss_mb, tensors_mb = psutil.Process(), [], []
    for build in range(20):
        artifact = target.build(model, plan, context, folder / str(build))
        target.predict(artifact, inputs)
        gc.collect()
        trim(0)  # glibc keeps freed chunks in its arenas: without this, RSS readings of one run jumped by 40-80 MB
        rss_mb.append(process.memory_info().rss / 2**20)
        tensors_mb.append(live_tensor_mb())
    return rss_mb, tensors_mb, Path(artifact.files[0]).stat().st_size


def test_memory_stays_flat_across_twenty_builds(tmp_path):
    # In a fresh interpreter, away from what two hundred earlier tests left (once torch's trace logger, turned on by
    # one of them). That alone did not steady the readings (one CI run: +116 MB with nothing kept); the heap trim and
    # the live tensors in memory_across_builds did.
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from pathlib import Path\n"
        "from test_torchao_target import memory_across_builds\n"
        f"print(json.dumps(memory_across_builds(Path({str(tmp_path)!r}))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rss_mb, tensors_mb, artifact_bytes = json.loads(done.stdout.strip().splitlines()[-1])
    # Keeping each build would add at least its 8 MB of INT8 weights per build: 100 MB over the 13 between.
    assert max(tensors_mb[-5:]) - min(tensors_mb[2:7]) < 16, f"live tensors (MB) after each build: {[round(v) for v in tensors_mb]}"
    # The floor of five builds, for what no tensor holds (the runtime's own buffers).
    growth = min(rss_mb[-5:]) - min(rss_mb[2:7])
    assert growth < 60, f"resident MB after each build: {[round(v) for v in rss_mb]}"
    assert artifact_bytes < 12 * 2**20  # INT8 weights, not f32 ones, on disk
