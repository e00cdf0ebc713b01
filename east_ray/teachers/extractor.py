"""`Extractor`: a loaded teacher, the one type every teacher's builder returns.

Call it on mono float audio `(B, N)` at the teacher's sample rate, on any device, and get
`(B, T, D)` float32 embeddings on the CPU, normalised as the authors did, with
`T = info.frames(N)` (the catalog's frame grid, checked on every call). A teacher with
several layers (`catalog.teachers`) can serve several of its references from one forward
pass: `outputs` names them and `embed_all` returns each one's embeddings.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from east_ray.catalog.teachers import get_teacher
from east_ray.errors import BadValueError


class Extractor:
    """A teacher's network (`model`, eval mode, on `device`; None for one without weights)
    behind `embed`, which maps audio on `device` to the teacher's embedding sequence, or,
    with `outputs` (references of the teacher's layers), to a dict of one sequence per
    reference."""

    def __init__(
        self,
        name: str,
        embed: Callable[[Tensor], Tensor | dict[str, Tensor]],
        device: torch.device | str,
        model: nn.Module | None = None,
        *,
        outputs: tuple[str, ...] = (),
    ) -> None:
        self.info = get_teacher(name)
        self.outputs = outputs or (self.info.name,)
        self.infos = {ref: get_teacher(ref) for ref in self.outputs}
        other = [ref for ref, info in self.infos.items() if info.base != self.info.base]
        if other:
            raise ValueError(f"{name}: outputs {other} are not layers of {self.info.base}")
        self.model = model
        self.device = torch.device(device)
        self._embed = embed

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def hop_seconds(self) -> float | None:
        return self.info.hop_seconds

    def __call__(self, audio: Tensor) -> Tensor:
        """The embeddings `(B, T, D)` of the one output this extractor serves."""
        if len(self.outputs) != 1:
            raise ValueError(f"{self.name}: serves {self.outputs}; call embed_all")
        return self.embed_all(audio)[self.outputs[0]]

    def embed_all(self, audio: Tensor) -> dict[str, Tensor]:
        """Each output's embeddings `(B, T, D_output)`, by reference."""
        if audio.ndim != 2:
            raise ValueError(
                f"{self.name}: expected mono audio (batch, samples), got shape {tuple(audio.shape)}"
            )
        batch, n_samples = audio.shape
        if batch == 0 or n_samples == 0:
            raise ValueError(f"{self.name}: empty audio batch of shape {tuple(audio.shape)}")
        if not audio.is_floating_point():
            raise TypeError(f"{self.name}: expected float audio in [-1, 1], got {audio.dtype}")
        frames = self.info.frames(n_samples)
        if frames == 0:
            window = self.info.window
            raise BadValueError(
                f"{self.name}: a clip of {n_samples} samples is shorter than one frame "
                f"({window} samples, {window / self.sample_rate:.2f} s at {self.sample_rate} Hz); "
                "use longer audio"
            )
        with torch.inference_mode():
            out = self._embed(audio.to(self.device, torch.float32))
            by_ref = out if isinstance(out, dict) else {self.outputs[0]: out}
            by_ref = {ref: by_ref[ref].to("cpu", torch.float32) for ref in self.outputs}
        for ref, embedded in by_ref.items():
            expected = (batch, frames, self.infos[ref].dim)
            if tuple(embedded.shape) != expected:  # an internal error, never the caller's
                raise RuntimeError(f"{ref}: produced {tuple(embedded.shape)}, expected {expected}")
        # normal tensors (not inference tensors), usable with autograd
        return {ref: embedded.clone() for ref, embedded in by_ref.items()}

    def __repr__(self) -> str:
        return (
            f"Extractor({self.name!r}, sample_rate={self.sample_rate}, dim={self.dim}, "
            f"device={self.device})"
        )
