"""Small models of the shapes autotune meets in the wild, each a real workload trained in seconds.

- `sequential_cnn`: layers in numbered `nn.Sequential` containers (`features.0`, `classifier.3`).
- `depthwise_cnn`: an `nn.ModuleList` of inverted-residual blocks (1x1 expand, 3x3 depthwise, 1x1
  project, residual adds).
- `nested_shared`: nested blocks, one conv module called twice, two branches concatenated.
- `tiny_bert`: a BERT encoder built from a config (no download) with dict inputs, classifying token
  sequences; logits read from the HF `ModelOutput`.

Named in a study as `zoo:<function>` with this folder on PYTHONPATH.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn
from torch.nn import functional as F

from autotune.paths import cache_dir
from autotune.workloads import LabelledData, ModelIO, Workload, top1_accuracy
from autotune.workloads.fashion_mnist import load_split


class SequentialCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class InvertedResidual(nn.Module):
    def __init__(self, channels: int, expansion: int = 2) -> None:
        super().__init__()
        hidden = channels * expansion
        self.expand = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6())
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()
        )
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.project(self.depthwise(self.expand(x)))


class DepthwiseCNN(nn.Module):
    def __init__(self, width: int = 16, blocks: int = 3) -> None:
        super().__init__()
        # Stride 4 keeps the depthwise convs at 7x7: their CPU backward pass is slow, and tests train this.
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, stride=4, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU6())
        self.blocks = nn.ModuleList(InvertedResidual(width) for _ in range(blocks))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Branches(nn.Module):
    """Two branches concatenated; the `shared` conv is applied twice in the first branch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.shared = nn.Conv2d(channels, channels, 3, padding=1)
        self.side = nn.Conv2d(channels, channels, 1)
        self.merge = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x):
        a = self.shared(F.relu(self.shared(x)))
        b = self.side(x)
        return F.relu(self.merge(torch.cat([F.relu(a), F.relu(b)], dim=1)))


class NestedShared(nn.Module):
    """Also has layers the output does not depend on: a probe computed and kept aside (like an auxiliary
    head or a pooler nobody reads) and a module never called."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, stride=2, padding=1)
        self.body = nn.Module()
        self.body.inner = Branches(width)
        self.fc = nn.Linear(width, 10)
        self.probe = nn.Linear(width, 4)
        self.spare = nn.Conv2d(width, width, 1)

    def forward(self, x):
        x = self.body.inner(F.relu(self.stem(x)))
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
        self.last_probe = self.probe(pooled).detach()
        return self.fc(pooled)


def _train(model: nn.Module, inputs, labels, io: ModelIO, steps: int, batch: int = 64, lr: float = 3e-3) -> nn.Module:
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    model.train()
    for step in range(steps):
        index = order[(step * batch) % (len(labels) - batch) :][:batch]
        part = {k: v[index] for k, v in inputs.items()} if isinstance(inputs, dict) else inputs[index]
        loss = F.cross_entropy(io.run(model, part), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _cached(name: str, build, train) -> dict:
    """Train once per workspace and architecture; later calls load the state dict."""
    shapes = repr([(k, tuple(v.shape)) for k, v in build().state_dict().items()])
    path = cache_dir("zoo") / f"{name}-{hashlib.sha256(shapes.encode()).hexdigest()[:12]}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    model = train(build())
    state = model.state_dict()
    torch.save(state, path)
    return state


def _image_workload(name: str, build, steps: int) -> Workload:
    train_x, train_y = load_split("train")
    test_x, test_y = load_split("t10k")
    train_x, train_y = train_x[:8000], train_y[:8000]
    io = ModelIO()
    state = _cached(name, build, lambda m: _train(m, train_x, train_y, io, steps))

    def factory() -> nn.Module:
        model = build()
        model.load_state_dict(state)
        return model.eval()

    return Workload(
        name=name,
        model_factory=factory,
        calibration=train_x[-128:],
        recovery=LabelledData(train_x, train_y),
        validation=LabelledData(test_x[:1000], test_y[:1000]),
        metric=top1_accuracy,
        task_loss=F.cross_entropy,
    )


def sequential_cnn() -> Workload:
    return _image_workload("sequential_cnn", SequentialCNN, steps=150)


def depthwise_cnn() -> Workload:
    return _image_workload("depthwise_cnn", DepthwiseCNN, steps=150)


def nested_shared() -> Workload:
    return _image_workload("nested_shared", NestedShared, steps=150)


# ---------------------------------------------------------------- a BERT-style encoder with dict inputs

VOCAB, SEQUENCE = 64, 16


def _token_task(count: int, seed: int) -> tuple[dict, torch.Tensor]:
    """Sequences of random tokens with padding; the label says whether token 7 outnumbers token 9."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, VOCAB, (count, SEQUENCE), generator=generator)
    marks = torch.randint(0, 4, (count, SEQUENCE), generator=generator)
    ids = torch.where(marks == 0, torch.full_like(ids, 7), torch.where(marks == 1, torch.full_like(ids, 9), ids))
    lengths = torch.randint(SEQUENCE // 2, SEQUENCE + 1, (count,), generator=generator)
    mask = (torch.arange(SEQUENCE)[None, :] < lengths[:, None]).long()
    ids = ids * mask
    labels = (((ids == 7) & (mask == 1)).sum(1) > ((ids == 9) & (mask == 1)).sum(1)).long()
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return inputs, labels


def _bert() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=SEQUENCE,
        num_labels=2,
        attn_implementation="eager",
    )
    return BertForSequenceClassification(config).eval()


def tiny_bert() -> Workload:
    io = ModelIO(
        output="logits",
        output_kind="logits",
        dynamic_axes={name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask", "token_type_ids")},
    )
    train_x, train_y = _token_task(4000, seed=0)
    test_x, test_y = _token_task(1000, seed=1)
    state = _cached("tiny_bert", _bert, lambda m: _train(m, train_x, train_y, io, steps=400))

    def factory() -> nn.Module:
        model = _bert()
        model.load_state_dict(state)
        return model.eval()

    return Workload(
        name="tiny_bert",
        model_factory=factory,
        calibration={k: v[-128:] for k, v in train_x.items()},
        recovery=LabelledData(train_x, train_y),
        validation=LabelledData(test_x, test_y),
        metric=top1_accuracy,
        io=io,
        task_loss=F.cross_entropy,
    )
