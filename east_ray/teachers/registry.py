"""The teacher registry: name → frame rate, dimension, sample rate and how to load it.

A teacher embeds a clip as a sequence `(T, D)`; `hop_seconds` is the time between two
frames, or `None` for a clip-level teacher that emits one vector per clip (PANNs). The
losses use `hop_seconds` to put student and teacher on one frame grid.

An extractor is a callable: mono float32 audio `(B, N)` at the teacher's `sample_rate`
→ embeddings `(B, T, D)` float32 on the CPU, normalised as the authors did. `loader`
names the function that builds it (`module:function`, imported only when used, so the
optional packages of the pretrained teachers are needed only for those teachers).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

Extractor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TeacherInfo:
    """What is known about a teacher without loading it."""

    name: str
    dim: int
    hop_seconds: float | None
    sample_rate: int
    description: str
    loader: str
    # z-score each dimension with training-split statistics when loaded for training
    standardise: bool = False


TEACHERS: dict[str, TeacherInfo] = {
    info.name: info
    for info in (
        TeacherInfo("vggish", 128, 0.96, 16_000, "VGGish, 8-bit PCA output, (x - 128) / 256",
                    "east_ray.teachers.pretrained:load_vggish"),
        TeacherInfo("openl3", 512, 0.96, 48_000, "OpenL3 mel128/music/512, x - 2.24",
                    "east_ray.teachers.pretrained:load_openl3"),
        TeacherInfo("passt", 768, 0.96, 32_000, "PaSST, 0.96 s window and hop",
                    "east_ray.teachers.pretrained:load_passt"),
        TeacherInfo("panns", 2048, None, 32_000, "PANNs CNN14, one clip-level vector",
                    "east_ray.teachers.pretrained:load_panns"),
        TeacherInfo("musicnn", 200, 187 * 256 / 16_000, 16_000,
                    "musicnn MSD model, penultimate layer per 3 s patch (PyTorch port)",
                    "east_ray.teachers.musicnn:load_musicnn_teacher"),
        TeacherInfo("handcrafted", 48, 0.96, 16_000,
                    "MFCC and spectral statistics per 0.96 s, standardised",
                    "east_ray.teachers.handcrafted:load_handcrafted", standardise=True),
    )
}  # fmt: skip


def get_teacher(name: str) -> TeacherInfo:
    """Look a teacher up by name; an unknown name lists the known ones."""
    try:
        return TEACHERS[name]
    except KeyError:
        known = ", ".join(sorted(TEACHERS))
        raise KeyError(f"unknown teacher {name!r}; known teachers: {known}") from None


def load_extractor(
    name: str,
    device: torch.device | str = "cpu",
    checkpoint: Path | None = None,
    pretrained: bool = True,
) -> Extractor:
    """Build teacher `name`'s extractor on `device` (weights from `checkpoint` if given)."""
    module_name, function = get_teacher(name).loader.split(":")
    loader = getattr(importlib.import_module(module_name), function)
    return cast(Extractor, loader(torch.device(device), checkpoint, pretrained))
