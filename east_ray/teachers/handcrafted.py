"""The hand-crafted teacher: MFCC and spectral statistics per 0.96 s frame, no weights.

At 16 kHz, a 25 ms / 10 ms power STFT gives per STFT frame 20 MFCCs (40 mel bands, DCT-II)
and four spectral descriptors (log centroid, log bandwidth, log 85% roll-off, log
flatness). Each 0.96 s block (96 STFT frames) is summarised by the mean and standard
deviation of those 24 values → 48 dimensions, `T = N // 15360` frames for N samples (the
catalog row's frame grid). The catalog marks this teacher `standardise=True`: each
dimension is z-scored with training-split statistics when embeddings are loaded for
training.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torchaudio.functional as AF
from torch import Tensor

from east_ray.errors import BadValueError
from east_ray.teachers.extractor import Extractor

SAMPLE_RATE = 16_000
N_FFT, WIN, HOP = 512, 400, 160
STFT_FRAMES_PER_BLOCK = 96  # 0.96 s
BLOCK_SAMPLES = STFT_FRAMES_PER_BLOCK * HOP
N_MELS, N_MFCC = 40, 20
DIM = 2 * (N_MFCC + 4)
EPS = 1e-10


@functools.lru_cache(maxsize=2)
def _bases(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    mel = AF.melscale_fbanks(
        N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE, norm="slaney", mel_scale="slaney"
    )
    dct = AF.create_dct(N_MFCC, N_MELS, norm="ortho")
    freqs = torch.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    return mel.to(device), dct.to(device), freqs.to(device)


def frame_descriptors(power: Tensor) -> Tensor:
    """Power spectrogram `(B, F, S)` → per STFT frame descriptors `(B, S, 24)`."""
    mel_basis, dct, freqs = _bases(power.device)
    spec = power.transpose(1, 2)  # (B, S, F)
    mfcc = torch.log(spec @ mel_basis + EPS) @ dct
    total = spec.sum(-1, keepdim=True) + EPS
    centroid = (spec * freqs).sum(-1, keepdim=True) / total
    bandwidth = torch.sqrt((spec * (freqs - centroid) ** 2).sum(-1, keepdim=True) / total)
    cumulative = torch.cumsum(spec, -1) / total
    rolloff = freqs[
        torch.searchsorted(cumulative.contiguous(), torch.full_like(total, 0.85)).clamp_max(
            len(freqs) - 1
        )
    ]
    flatness = torch.exp(torch.log(spec + EPS).mean(-1, keepdim=True)) / (total / spec.shape[-1])
    spectral = torch.cat([centroid, bandwidth, rolloff, flatness], -1)
    return torch.cat([mfcc, torch.log(spectral + EPS)], -1)


def handcrafted_embedding(audio: Tensor) -> Tensor:
    """Mono 16 kHz audio `(B, N)` → `(B, T, 48)` float32 (mean and std per 0.96 s block)."""
    if audio.ndim != 2:
        raise ValueError(f"audio: got shape {tuple(audio.shape)}, expected (B, N)")
    t = audio.shape[-1] // BLOCK_SAMPLES
    if t == 0:
        raise BadValueError(
            f"audio: got {audio.shape[-1]} samples, expected at least {BLOCK_SAMPLES} "
            "(one 0.96 s frame)"
        )
    window = torch.hann_window(WIN, device=audio.device)
    spec = torch.stft(audio.float(), N_FFT, HOP, WIN, window, center=True, return_complex=True)
    power = spec.real.square() + spec.imag.square()
    frames = frame_descriptors(power)[:, : t * STFT_FRAMES_PER_BLOCK]
    blocks = frames.reshape(audio.shape[0], t, STFT_FRAMES_PER_BLOCK, -1)
    return torch.cat([blocks.mean(2), blocks.std(2)], -1).float().cpu()


def load_handcrafted(
    device: torch.device | str, checkpoint: Path | None = None, pretrained: bool = True
) -> Extractor:
    """The extractor (weight-free: `checkpoint` must be left out; `pretrained` changes nothing)."""
    if checkpoint is not None:
        raise BadValueError(
            f"checkpoint: got {str(checkpoint)!r}, but the handcrafted teacher has no weights; "
            "leave it out"
        )
    del pretrained  # nothing to load either way
    return Extractor("handcrafted", handcrafted_embedding, device)
