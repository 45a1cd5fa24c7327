"""The compression plan: per-layer weight bits and pruning ratio, plain data exchanged by every part."""

from __future__ import annotations

import collections
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from autotune.errors import PlanError

FULL_PRECISION_BITS = 32
HALF_PRECISION_BITS = 16  # a 16-bit float (bf16 or f16: the target's hardware file names which)
SUPPORTED_BITS = (4, 8, 16, 32)
FLOAT_BITS = (HALF_PRECISION_BITS, FULL_PRECISION_BITS)  # layers left in floating point, not integer-quantized


@dataclass(frozen=True)
class LayerChoice:
    """What to do to one layer: run it at `bits` (integer 4 or 8, float 16 or 32) and prune `prune` of its output channels."""

    bits: int = FULL_PRECISION_BITS
    prune: float = 0.0

    def __post_init__(self) -> None:
        if self.bits not in SUPPORTED_BITS:
            raise PlanError(f"bits={self.bits!r}: expected one of {list(SUPPORTED_BITS)}")
        if not 0.0 <= self.prune < 1.0:
            raise PlanError(f"prune={self.prune!r}: expected a ratio in [0, 1)")
        # Ratios come from float grids (0.1 * 3 != 0.3); store them rounded so plans compare equal.
        object.__setattr__(self, "prune", round(float(self.prune), 6))


@dataclass(frozen=True)
class Plan:
    """Per-layer choices keyed by the module's qualified name; layers not named stay FP32 and unpruned."""

    layers: Mapping[str, LayerChoice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Model order is kept for display; identity (digest, JSON) sorts names itself.
        object.__setattr__(self, "layers", dict(self.layers))

    def choice(self, layer: str) -> LayerChoice:
        return self.layers.get(layer, LayerChoice())

    def pruning(self) -> dict[str, float]:
        """The pruning sub-plan: the only part that changes weights before quantization."""
        return {name: c.prune for name, c in self.layers.items() if c.prune > 0}

    def bits(self) -> dict[str, int]:
        return {name: c.bits for name, c in self.layers.items()}

    def validate_layers(self, known_layers: Iterable[str]) -> None:
        known = set(known_layers)
        unknown = sorted(set(self.layers) - known)
        if unknown:
            raise PlanError(f"plan names unknown layer(s) {unknown}; the model has {sorted(known)}")

    def to_dict(self) -> dict:
        return {"layers": {n: {"bits": c.bits, "prune": c.prune} for n, c in self.layers.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping) -> Plan:
        try:
            layers = data["layers"]
            return cls({name: LayerChoice(int(c["bits"]), float(c["prune"])) for name, c in layers.items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"malformed plan: {exc!r}; expected {{'layers': {{name: {{'bits', 'prune'}}}}}}") from exc

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from exc

    @classmethod
    def uniform(cls, layers: Iterable[str], bits: int, prune: float = 0.0) -> Plan:
        return cls({name: LayerChoice(bits, prune) for name in layers})

    def digest(self) -> str:
        """Stable short identity of the plan, used to find a plan already evaluated."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def compact(self, layer_order: Iterable[str]) -> str:
        """One token per layer in the given order: bits, then '-NN' for NN% pruned (e.g. '8 8-30 32 4')."""
        tokens = []
        for name in layer_order:
            c = self.choice(name)
            tokens.append(f"{c.bits}" + (f"-{round(c.prune * 100)}" if c.prune else ""))
        return " ".join(tokens)

    def counts(self) -> str:
        """Short summary for plans too long to list layer by layer, e.g. '8b x30, 32b x5, 4b x2; 12 pruned 25-50%'."""
        bits = collections.Counter(c.bits for c in self.layers.values())
        text = ", ".join(f"{b}b x{n}" for b, n in sorted(bits.items(), key=lambda item: (-item[1], item[0])))
        ratios = sorted(c.prune for c in self.layers.values() if c.prune)
        if ratios:
            low, high = round(ratios[0] * 100), round(ratios[-1] * 100)
            text += f"; {len(ratios)} pruned {low}%" + (f"-{high}%" if high != low else "")
        return text

    def describe(self) -> str:
        """Compact human summary, e.g. 'stem:8b block1.conv1:8b/p0.3 head:32b'."""
        parts = []
        for name, c in self.layers.items():
            parts.append(f"{name}:{c.bits}b" + (f"/p{c.prune:g}" if c.prune else ""))
        return " ".join(parts)
