"""The one interface every student implements.

A student maps a log-mel batch `(B, F, T)` to `StudentOutput`: pre-sigmoid `logits`
`(B, K)` and the list of stage feature maps, each `(B, C, F', T')`, first stage first
(the last one is the map the classifier pools). `time_strides[i]` is how many log-mel
frames one time step of stage `i` spans, so stage `i` has a hop of
`time_strides[i] * mel_hop_seconds`: the losses align teachers by it.
"""

from typing import NamedTuple

from torch import Tensor, nn


class StudentOutput(NamedTuple):
    logits: Tensor
    stages: list[Tensor]


class Student(nn.Module):
    """Base of the students: declares the interface, holds no behaviour."""

    time_strides: tuple[int, ...]

    def forward(self, x: Tensor) -> StudentOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, x: Tensor) -> StudentOutput:
        out: StudentOutput = super().__call__(x)
        return out
