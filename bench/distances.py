"""The memory each regularizer's loss keeps for its backward pass, for a batch of 16 at the
paper's OpenMIC shapes: CP-ResNet's stage maps (32 and 128 base channels: the benchmark's
and the paper's student) aligned to 62 frames of a 768-d teacher (PaSST), on the final
stage and on all three. Bytes of the distinct tensors autograd saves while the loss is
computed (`torch.autograd.graph.saved_tensors_hooks`), float32; the stage maps themselves
and the student's own activations are left out. Each measure's step time against the
baseline step is `make bench`'s regularizer rows (`bench.trainer`).

    .venv/bin/python -m bench.distances
"""

from __future__ import annotations

import json

import torch
from torch import Tensor

from east_ray.catalog import REGULARIZERS
from east_ray.losses import LossSpec, RegInputs, align, stage_sequence
from east_ray.models import StudentOutput

BATCH, FRAMES, TEACHER_DIM = 16, 62, 768


def saved_bytes(spec: LossSpec, inputs: RegInputs) -> int:
    """Bytes of the distinct tensors autograd keeps for backward while the row's loss runs
    (the aligned sequences it is given not counted)."""
    given = {p.data_ptr() for pair in inputs.pairs for p in pair}
    seen: dict[int, int] = {}

    def pack(x: Tensor) -> Tensor:
        if x.data_ptr() not in given:
            seen[x.data_ptr()] = x.numel() * x.element_size()
        return x

    assert spec.reg_loss is not None
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        spec.reg_loss(inputs)
    return sum(seen.values())


def measure(base_channels: int) -> dict[str, dict[str, int]]:
    gen = torch.Generator().manual_seed(0)
    channels = (base_channels, 2 * base_channels, 4 * base_channels)
    stages = [torch.randn(BATCH, c, 8, FRAMES, generator=gen, requires_grad=True) for c in channels]
    out = StudentOutput(torch.zeros(BATCH, 20), stages)
    teacher = torch.randn(BATCH, FRAMES, TEACHER_DIM, generator=gen)
    pairs = [align(stage_sequence(m), 0.16, teacher, 0.16) for m in stages]
    rows: dict[str, dict[str, int]] = {}
    for name, row in REGULARIZERS.items():
        if not row.reads_sequence or row.reads_logits:
            continue
        rows[name] = {}
        for stage, chosen in (("final", pairs[-1:]), ("all", pairs)):
            spec = LossSpec(name, stage, 0.5)
            inputs = RegInputs(out, torch.ones(BATCH, 20), spec, chosen, None)
            rows[name][f"{stage}_bytes"] = saved_bytes(spec, inputs)
    return rows


def main() -> None:
    result = {
        "batch": BATCH,
        "frames": FRAMES,
        "teacher_dim": TEACHER_DIM,
        "by_base_channels": {str(c): measure(c) for c in (32, 128)},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
