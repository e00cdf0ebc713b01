"""FitNet-style hints (Romero et al., "FitNets: hints for thin deep nets", ICLR 2015): a
student trained with learned linear projections of its stage features onto the teacher's
dimension, which the `fitnet` regularizer pulls toward the teacher's embedding.

`HintedStudent` wraps a student: its logits are the student's, and its stage maps are
the student's stage maps averaged over frequency and projected, `(B, D, 1, T)`, so the
losses' frame alignment and stage choice apply unchanged. (A 1×1 projection commutes with
the frequency mean, so this equals projecting the map and averaging after.) The
projections train with the student and are dropped at inference: `deployed` is the bare
student, whose parameters are those of the deployed model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from east_ray.models.common import Student, StudentOutput


def stage_channels(student: Student, n_mels: int) -> list[int]:
    """The channel count of each of `student`'s stage maps, from one forward pass of a
    silent batch in eval mode (batch-norm statistics untouched)."""
    training = student.training
    student.eval()
    with torch.no_grad():
        out = student(torch.zeros(1, n_mels, 4 * max(student.time_strides)))
    student.train(training)
    return [s.shape[1] for s in out.stages]


class HintedStudent(Student):
    """`student` with one linear hint projection per stage onto `dim` values (module doc)."""

    def __init__(self, student: Student, dim: int, n_mels: int, seed: int | None = None) -> None:
        super().__init__()
        self.student = student
        self.time_strides = student.time_strides
        channels = stage_channels(student, n_mels)
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        hints = [nn.Linear(c, dim) for c in channels]
        for hint, c in zip(hints, channels, strict=True):
            bound = 1.0 / c**0.5  # nn.Linear's own initialisation, from a seeded generator
            with torch.no_grad():
                hint.weight.uniform_(-bound, bound, generator=generator)
                hint.bias.uniform_(-bound, bound, generator=generator)
        self.hints = nn.ModuleList(hints)

    @property
    def deployed(self) -> Student:
        """The student without its hints: what is deployed and counted."""
        return self.student

    def forward(self, x: Tensor) -> StudentOutput:
        out = self.student(x)
        stages = [
            hint(stage.mean(dim=2).transpose(1, 2)).transpose(1, 2).unsqueeze(2)
            for hint, stage in zip(self.hints, out.stages, strict=True)
        ]
        return StudentOutput(out.logits, stages)


def parameter_count(model: nn.Module) -> int:
    """The number of parameters of `model`."""
    return sum(p.numel() for p in model.parameters())
