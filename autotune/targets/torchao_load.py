"""A gpu-torchao artifact, `model.pt2`: a torch.export program that torch and torchao alone load and run.

The program holds the pruned architecture, the casting hooks and torchao's quantized weight tensors; it
takes the workload's input tensors positionally and returns the output autotune reads. This module
imports torch and torchao only, so it also serves outside autotune, e.g. after `autotune export`:

    python torchao_load.py model.pt2 inputs.pt outputs.pt

(`inputs.pt`: a tensor, a tuple of tensors or a dict of them, saved with torch.save.)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

METADATA = "autotune.json"  # the program's extra file: input names in call order, device


@dataclass
class Program:
    """A loaded artifact: the module, its inputs' names in call order, and the device its weights live on."""

    module: nn.Module
    inputs: list[str]
    device: str

    def tensors(self, inputs) -> list[torch.Tensor]:
        """The inputs as the program takes them: positional, in order, on its device."""
        if isinstance(inputs, torch.Tensor):
            values = [inputs]
        elif isinstance(inputs, Mapping):
            values = [inputs[name] for name in self.inputs]
        else:
            values = list(inputs)
        return [value.to(self.device) for value in values]


def save_program(program: torch.export.ExportedProgram, path, inputs: list[str], device: str) -> None:
    metadata = json.dumps({"inputs": inputs, "device": device})
    torch.export.save(program, path, extra_files={METADATA: metadata})


def load_program(path) -> Program:
    import torchao  # noqa: F401  (registers torchao's operators and tensor types the program refers to)

    extra = {METADATA: ""}
    exported = torch.export.load(path, extra_files=extra)
    metadata = json.loads(extra[METADATA])
    return Program(exported.module(), metadata["inputs"], metadata["device"])


def main(argv: list[str]) -> None:
    program_path, inputs_path, outputs_path = argv
    program = load_program(program_path)
    inputs = torch.load(inputs_path)
    with torch.no_grad():
        outputs = program.module(*program.tensors(inputs))
    torch.save(outputs.cpu(), outputs_path)


if __name__ == "__main__":
    main(sys.argv[1:])
