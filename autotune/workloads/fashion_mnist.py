"""Built-in workload: a residual CNN on Fashion-MNIST (Debian package dataset-fashion-mnist).

The model is trained once on the CPU and its checkpoint cached (path and sha256 recorded next
to it); later calls load the checkpoint.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from autotune.errors import WorkloadError
from autotune.paths import cache_dir
from autotune.progress import progress_bar
from autotune.workloads.base import LabelledData, Workload, top1_accuracy

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
PIXEL_MEAN, PIXEL_STD = 0.286, 0.353


def data_dir() -> Path:
    return Path(os.environ.get("AUTOTUNE_FASHION_MNIST_DIR", DEFAULT_DATA_DIR))


def _read_idx(path: Path, header_bytes: int) -> np.ndarray:
    if not path.is_file():
        raise WorkloadError(
            f"Fashion-MNIST file {path} not found: install the Debian package dataset-fashion-mnist "
            "(`make setup` does) or set AUTOTUNE_FASHION_MNIST_DIR"
        )
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=header_bytes)


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images normalised to float [N, 1, 28, 28] and int64 labels for split 'train' or 't10k'."""
    root = data_dir()
    images = _read_idx(root / f"{split}-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    labels = _read_idx(root / f"{split}-labels-idx1-ubyte.gz", 8)
    inputs = (torch.from_numpy(images.astype(np.float32)) / 255.0 - PIXEL_MEAN) / PIXEL_STD
    return inputs, torch.from_numpy(labels.astype(np.int64))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class FashionResNet(nn.Module):
    """28x28 -> stem -> down (14x14) -> residual -> down (7x7) -> residual -> fc1 -> head."""

    def __init__(self, width: int = 32, hidden: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.stem = ConvBN(1, width // 2, 1)
        self.down1 = ConvBN(width // 2, width, 2)
        self.block1 = ResidualBlock(width)
        self.down2 = ConvBN(width, 2 * width, 2)
        self.block2 = ResidualBlock(2 * width)
        self.fc1 = nn.Linear(2 * width * 7 * 7, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.down2(self.block1(self.down1(self.stem(x)))))
        return self.head(F.relu(self.fc1(torch.flatten(x, 1))))


@dataclass(frozen=True)
class TrainingRecipe:
    width: int
    hidden: int
    epochs: int
    train_images: int
    batch_size: int = 128
    learning_rate: float = 3e-3
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(recipe: TrainingRecipe, inputs: torch.Tensor, labels: torch.Tensor) -> FashionResNet:
    torch.manual_seed(recipe.seed)
    model = FashionResNet(recipe.width, recipe.hidden)
    inputs, labels = inputs[: recipe.train_images], labels[: recipe.train_images]
    steps_per_epoch = (len(inputs) + recipe.batch_size - 1) // recipe.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.learning_rate, total_steps=recipe.epochs * steps_per_epoch
    )
    generator = torch.Generator().manual_seed(recipe.seed)
    model.train()
    with progress_bar() as progress:
        task = progress.add_task(f"training fashion-cnn (width {recipe.width})", total=recipe.epochs * steps_per_epoch)
        for _ in range(recipe.epochs):
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(inputs), recipe.batch_size):
                batch = order[start : start + recipe.batch_size]
                loss = F.cross_entropy(model(inputs[batch]), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                progress.update(task, advance=1, description=f"training fashion-cnn loss {loss.item():.3f}")
    return model.eval()


def trained_checkpoint(recipe: TrainingRecipe, validation: LabelledData) -> tuple[Path, dict]:
    """Train once and cache; the sidecar records path, sha256 and accuracy. A corrupt file is retrained."""
    folder = cache_dir("models")
    checkpoint = folder / f"fashion-cnn-{recipe.key()}.pt"
    sidecar = checkpoint.with_suffix(".json")
    if checkpoint.is_file() and sidecar.is_file():
        record = json.loads(sidecar.read_text())
        if record.get("sha256") == _sha256(checkpoint):
            return checkpoint, record
    inputs, labels = load_split("train")
    started = time.perf_counter()
    model = train(recipe, inputs, labels)
    seconds = time.perf_counter() - started
    with torch.no_grad():
        outputs = torch.cat([model(x) for x, _ in validation.batches(1000)])
    accuracy = top1_accuracy(outputs.numpy(), validation.labels.numpy())
    partial = checkpoint.with_suffix(".pt.partial")
    torch.save(model.state_dict(), partial)
    partial.replace(checkpoint)  # atomic: a killed run never leaves a half-written checkpoint
    record = {
        "path": str(checkpoint),
        "sha256": _sha256(checkpoint),
        "recipe": asdict(recipe),
        "validation_accuracy": accuracy,
        "training_seconds": round(seconds, 1),
    }
    sidecar.write_text(json.dumps(record, indent=2))
    return checkpoint, record


def _build(recipe: TrainingRecipe, name: str, validation_images: int, calibration_images: int) -> Workload:
    val_inputs, val_labels = load_split("t10k")
    validation = LabelledData(val_inputs[:validation_images], val_labels[:validation_images])
    checkpoint, record = trained_checkpoint(recipe, validation)
    state = torch.load(checkpoint, weights_only=True)

    def model_factory() -> nn.Module:
        model = FashionResNet(recipe.width, recipe.hidden)
        model.load_state_dict(state)
        return model.eval()

    train_inputs, train_labels = load_split("train")
    # Calibration images come from the end of the training set, away from the first training batches.
    calibration = train_inputs[-calibration_images:]
    return Workload(
        name=name,
        model_factory=model_factory,
        calibration=calibration,
        recovery=LabelledData(train_inputs, train_labels),
        validation=validation,
        metric=top1_accuracy,
        metric_name="accuracy",
        fingerprint=record["sha256"],
        task_loss=F.cross_entropy,
    )


def fashion_cnn() -> Workload:
    """The demo workload: width-32 residual CNN, 2 epochs on all 60k images, validated on the 10k test set."""
    return _build(TrainingRecipe(width=32, hidden=128, epochs=2, train_images=60000), "fashion-cnn", 10000, 256)


def fashion_cnn_tiny() -> Workload:
    """A seconds-to-train variant for tests: width 16, 8k training images, 2k validation images."""
    return _build(TrainingRecipe(width=16, hidden=32, epochs=1, train_images=8000), "fashion-cnn-tiny", 2000, 128)


REVISIONS = ("epoch", "shifted")


def revise(workload: Workload, kind: str, out: Path, seed: int = 1, images: int | None = None) -> Path:
    """A real model revision of a Fashion-MNIST workload, saved as a state dict (for `autotune cycle --model`).

    `epoch`: one more training epoch on the training images (new shuffling seed, a lower learning rate).
    `shifted`: fine-tuning on a shifted slice: the last 15k training images with their brightness and contrast
    changed (a camera change), so the model drifts toward data unlike the validation set.
    """
    if kind not in REVISIONS:
        raise WorkloadError(f"revision {kind!r}: expected one of {list(REVISIONS)}")
    inputs, labels = load_split("train")
    if kind == "shifted":
        inputs, labels = inputs[-15000:] * 1.3 + 0.4, labels[-15000:]
    if images is not None:
        inputs, labels = inputs[:images], labels[:images]
    torch.manual_seed(seed)
    model = workload.fp32_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(inputs), generator=generator)
    with progress_bar() as progress:
        task = progress.add_task(f"revising {workload.name} ({kind})", total=(len(inputs) + 127) // 128)
        for start in range(0, len(inputs), 128):
            batch = order[start : start + 128]
            loss = F.cross_entropy(model(inputs[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            progress.update(task, advance=1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(out.suffix + ".partial")
    torch.save(model.eval().state_dict(), partial)
    partial.replace(out)
    return out


def record_requests(out: Path, count: int = 1000, shifted: bool = False) -> Path:
    """Recorded traffic for A/B and drift: the last `count` test images with labels (npz); `shifted` brightens them."""
    images, labels = load_split("t10k")
    images, labels = images[-count:], labels[-count:]
    if shifted:
        images = images * 1.3 + 0.4
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, inputs=images.numpy(), labels=labels.numpy())
    return out


USAGE = """usage:
  python -m autotune.workloads.fashion_mnist revise fashion-cnn|fashion-cnn-tiny epoch|shifted OUT.pt
  python -m autotune.workloads.fashion_mnist record OUT.npz [shifted]"""


def main() -> None:
    """Write a revised checkpoint (a real model revision) or a recorded-traffic file."""
    import sys

    from autotune.workloads.base import load_workload

    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "revise":
        path = revise(load_workload(args[1]), args[2], Path(args[3]))
    elif len(args) in (2, 3) and args[0] == "record":
        path = record_requests(Path(args[1]), shifted=args[2:] == ["shifted"])
    else:
        raise SystemExit(USAGE)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
