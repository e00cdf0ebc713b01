"""The memory each regularizer's loss keeps for its backward pass, for a batch of 16 at the
paper's OpenMIC shapes: CP-ResNet's stage maps (32 and 128 base channels: the benchmark's
and the paper's student) aligned to 62 frames of a 768-d teacher (PaSST), on the final
stage and on all three. Bytes of the distinct tensors autograd saves while the loss is
computed (`torch.autograd.graph.saved_tensors_hooks`), float32; the stage maps themselves
and the student's own activations are left out (but the frequency mean and, for FitNet,
the hint projection, which the loss's step computes). Each measure's step time against the
baseline step is `make bench`'s regularizer rows (`bench.trainer`).

    .venv/bin/python -m bench.distances
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import Tensor, nn

from east_ray.catalog import REGULARIZERS, regularizer
from east_ray.losses import LossSpec, RegInputs, align, stage_sequence
from east_ray.models import StudentOutput

BATCH, FRAMES, TEACHER_DIM = 16, 62, 768


def saved_bytes(spec: LossSpec, out: StudentOutput, teacher: Tensor, stages: list[Tensor]) -> int:
    """Bytes of the distinct tensors autograd keeps for backward while the row's loss runs
    on `stages` (the student's stage maps and the teacher not counted); a hint row's
    projections (`east_ray.models.hint`) run inside, as they do in its training step."""
    given = {m.data_ptr() for m in stages} | {teacher.data_ptr()}
    seen: dict[int, int] = {}

    def pack(x: Tensor) -> Tensor:
        if x.data_ptr() not in given:
            seen[x.data_ptr()] = x.numel() * x.element_size()
        return x

    assert spec.reg_loss is not None
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        sequences = [stage_sequence(m) for m in stages]
        if regularizer(spec.regularizer).hint:
            sequences = [nn.Linear(s.shape[-1], teacher.shape[-1])(s) for s in sequences]
        pairs = [align(s, 0.16, teacher, 0.16) for s in sequences]
        spec.reg_loss(RegInputs(out, torch.ones(BATCH, 20), spec, pairs, None))
    return sum(seen.values())


def measure(base_channels: int) -> dict[str, dict[str, int]]:
    gen = torch.Generator().manual_seed(0)
    channels = (base_channels, 2 * base_channels, 4 * base_channels)
    stages = [torch.randn(BATCH, c, 8, FRAMES, generator=gen, requires_grad=True) for c in channels]
    out = StudentOutput(torch.zeros(BATCH, 20), stages)
    teacher = torch.randn(BATCH, FRAMES, TEACHER_DIM, generator=gen)
    rows: dict[str, dict[str, int]] = {}
    for name, row in REGULARIZERS.items():
        if row.reads_sequence and not row.reads_logits:
            rows[name] = {
                f"{stage}_bytes": saved_bytes(LossSpec(name, stage, 0.5), out, teacher, chosen)
                for stage, chosen in (("final", stages[-1:]), ("all", stages))
            }
    return rows


def run() -> dict[str, Any]:
    return {
        "batch": BATCH,
        "frames": FRAMES,
        "teacher_dim": TEACHER_DIM,
        "by_base_channels": {str(c): measure(c) for c in (32, 128)},
    }


def main() -> None:
    print(json.dumps(run(), indent=1))


if __name__ == "__main__":
    main()
