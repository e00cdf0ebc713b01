"""The Dasheng teacher (the `dasheng` package's base model, weights from its Zenodo record):
16 kHz audio → each requested transformer block's output, pooled to 1 s frames.

Dasheng's own frames are patches of 4 log-mel frames (a centred STFT with a 160-sample hop),
so patch k is centred on sample 640 k + 240 (25 Hz). Audio is embedded in chunks of 10 s,
which its positional embedding (1,008 mel frames) holds; each block's output over a chunk
is pooled as the hub teachers' are (`east_ray.teachers.hub.pool_frames`). Layer "0" is the
patch embedding with its position, "1".."12" the blocks' outputs, the last after the
model's final layer norm (what the package's forward returns).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from east_ray.catalog.teachers import get_teacher
from east_ray.teachers.extractor import Extractor
from east_ray.teachers.hub import chunks, pool_frames
from east_ray.teachers.weights import (
    Weights,
    import_package,
    read_file,
    state_dict_of,
    weights_file,
)

SIZE = {"embed_dim": 768, "depth": 12, "num_heads": 12}  # dasheng_base
PATCH_HOP = 640  # samples: 4 mel frames of 160
PATCH_FIRST_CENTRE = 240  # mel frame m is centred on 160 m; patch k spans 4k .. 4k + 3
CHUNK = 160_000  # 10 s of the 10.08 s its positional embedding covers


def build_dasheng(checkpoint: Path | None, pretrained: bool, size: dict[str, int]) -> Any:
    """The package's `Dasheng` of `size`, with the weights file's own settings and weights
    (a file of the package's layout: `{"model": state dict, "config": settings}`)."""
    package = import_package("dasheng", "dasheng.pretrained.pretrained", "dasheng", extra="hf")
    path = weights_file("dasheng", checkpoint, pretrained)
    if path is None:
        return package.Dasheng(**size).eval()
    stored = read_file("dasheng", path)
    settings = stored.get("config", {}) if isinstance(stored, dict) else {}
    model = package.Dasheng(**{**settings, **size})
    Weights("dasheng", path, state_dict_of("dasheng", stored, path)).load_into(model)
    return model.eval()


def hidden_states(model: Any, audio: Tensor) -> list[Tensor]:
    """Every layer's output `(B, patches, D)` for audio `(B, N)` of at most `CHUNK` samples."""
    x = model.patch_embed(model.forward_to_spec(audio))  # (B, D, 1, patches)
    x = x + model.time_pos_embed[..., : x.shape[-1]] + model.freq_pos_embed
    x = x.flatten(2).transpose(1, 2)
    states = [x]
    for block in model.blocks:
        x = block(x)
        states.append(x)
    states[-1] = model.norm(x)
    return states


def load_dasheng_teacher(
    device: torch.device | str,
    checkpoint: Path | None = None,
    pretrained: bool = True,
    *,
    outputs: tuple[str, ...] = ("dasheng",),
    size: dict[str, int] | None = None,
) -> Extractor:
    """Dasheng: 16 kHz audio `(B, N)` → each reference in `outputs` as `(B, T, 768)`,
    T = N // 16,000 (1 for a shorter clip). `checkpoint`: `dasheng_base.pt`. `size`
    replaces the base model's (tests)."""
    info = get_teacher("dasheng")
    model = build_dasheng(checkpoint, pretrained, size or SIZE).to(device)
    index = {name: i for i, (name, _) in enumerate(info.layers)}
    layers = {ref: index[str(get_teacher(ref).layer)] for ref in outputs}
    frame = info.sample_rate  # 1 s

    def embed(audio: Tensor) -> dict[str, Tensor]:
        if audio.shape[1] < frame:
            audio = F.pad(audio, (0, frame - audio.shape[1]))
        pooled: dict[str, list[Tensor]] = {ref: [] for ref in outputs}
        for start, length in chunks(audio.shape[1], frame, CHUNK):
            states = hidden_states(model, audio[:, start : start + length])
            for ref, i in layers.items():
                n = states[i].shape[1]
                weights = pool_frames(n, length, frame, PATCH_HOP, PATCH_FIRST_CENTRE)
                pooled[ref].append(weights.to(audio.device) @ states[i])
        return {ref: torch.cat(parts, dim=1) for ref, parts in pooled.items()}

    return Extractor(outputs[0], embed, device, model, outputs=outputs)
