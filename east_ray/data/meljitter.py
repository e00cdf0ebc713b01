"""Mel-band-edge jitter: the authors' per-clip training augmentation (DESIGN §1).

The authors compute the log-mel of every training clip on the fly with its own mel
filterbank: `f_min + randint(0, 20)` Hz to `f_max − randint(0, 2000)` Hz (numpy's
exclusive upper bounds: 0…19 and 0…1999), Kaldi-style banks
(`torchaudio.compliance.kaldi.get_mel_banks`, last STFT bin weight 0), then
`log(x + 1e-5)`; SpecAugment and the normalisation follow. Validation and test use the
fixed edges. With `recipe.mel_jitter = "authors"` the trainer does the same per step:

- `draw_jitter` draws each clip's two integers (`(n, 2)`: Hz added to f_min, Hz taken
  from f_max) from the numpy generator that `epoch_batches` already uses for the epoch,
  after its order and partner draws, so those stay as they were and a resumed run
  draws the same edges.
- `jittered_banks` builds one bank per clip `(B, n_mels, n_fft // 2)` on the device, the
  Kaldi formula vectorised over the batch; with zero jitter it equals
  `kaldi.get_mel_banks` (tests/test_meljitter.py).
- `jittered_logmel` applies them to the clips' stored STFT magnitudes `(B, n_fft // 2,
  frames)` as one batched matmul and normalises as `east_ray.data.audio.logmel` does.

What is stored, and why (east_ray.data.spectra_prepare writes it, east_ray.data.spectra
reads it): the STFT magnitude of each training clip (pre-emphasised, the same window as
the log-mel), float16, `n_fft // 2` bins (the padded Nyquist bin always has weight 0) ×
`frames`, in a folder beside `clips/` so a prepared dataset is never rewritten, and for
the training split only (validation and test never jitter). Not the waveform: a float16
waveform's rounding noise is broadband and lifted the near-empty top mel bands of a real
OpenMIC clip by up to 0.15 (normalised units); float32 costs 5× the log-mel's bytes, and
the STFT of a step's 32 clips (examples and partners) took ~0.5 s on this CPU, half a
benchmark step. Not the power: it overflows float16 (up to ~1.5e5 for a full-scale high
tone). The magnitude fits float16's range (≤ ~800), keeps 11 significant bits, and needs
only a square, a matmul and a log per step; at zero jitter it gave that clip's float32
log-mel within 3.1e-4, below the stored float16 log-mel's own rounding (up to 9.8e-4).
It costs 4× the log-mel's bytes per training clip at 128 mels (8× at the demo's 64).

Draws, reproducibly: from the `(seed, epoch)` generator of `epoch_batches`, after the
order and the partners (those are unchanged, and a resumed epoch redraws the same edges),
one pair per example slot and then one per partner slot, integers as the authors'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchaudio.compliance import kaldi

from east_ray.config import Features
from east_ray.data.audio import LOG_OFFSET, NORM_SCALE, NORM_SHIFT


@dataclass(frozen=True)
class JitterRanges:
    """Exclusive upper bounds of the integer jitter, in Hz: f_min + U{0…f_min_up − 1},
    f_max − U{0…f_max_down − 1} (numpy's `randint(0, n)`, as the authors call it)."""

    f_min_up: int
    f_max_down: int


# `recipe.mel_jitter` → ranges; "off" has none (the stored log-mels are used).
JITTER: dict[str, JitterRanges | None] = {
    "off": None,
    "authors": JitterRanges(f_min_up=20, f_max_down=2000),
}


def draw_jitter(rng: np.random.Generator, n: int, ranges: JitterRanges) -> np.ndarray:
    """`n` clips' jitter `(n, 2)` int64: column 0 Hz added to f_min, column 1 Hz taken from
    f_max."""
    return np.stack(
        [rng.integers(0, ranges.f_min_up, n), rng.integers(0, ranges.f_max_down, n)], axis=1
    )


def _kaldi_mel(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log(1.0 + freq / 700.0)


def jittered_banks(jitter: torch.Tensor, features: Features) -> torch.Tensor:
    """Kaldi mel banks `(B, n_mels, n_fft // 2)` of `jitter` `(B, 2)` (Hz added to f_min,
    taken from f_max), on `jitter`'s device.

    The edges and the mel spacing are computed in float64 and rounded to float32, and the
    bins' mels come from `kaldi.mel_scale`, exactly as `kaldi.get_mel_banks` rounds its
    Python floats against its float32 tensors, so zero jitter gives its banks."""
    device = jitter.device
    j = jitter.to(torch.float64)
    low = _kaldi_mel(features.f_min + j[:, 0])
    high = _kaldi_mel(features.f_max - j[:, 1])
    delta = ((high - low) / (features.n_mels + 1)).to(torch.float32).view(-1, 1, 1)
    low32 = low.to(torch.float32).view(-1, 1, 1)
    band = torch.arange(features.n_mels, device=device).view(1, -1, 1)
    left = low32 + band * delta
    centre = low32 + (band + 1.0) * delta
    right = low32 + (band + 2.0) * delta
    bin_width = features.sample_rate / features.n_fft
    mel = kaldi.mel_scale(bin_width * torch.arange(features.n_fft // 2, device=device))
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0)


def jittered_logmel(
    magnitude: torch.Tensor, jitter: torch.Tensor, features: Features
) -> torch.Tensor:
    """Normalised log-mel `(B, n_mels, frames)` of STFT magnitudes `(B, n_fft // 2, frames)`
    with each clip's jittered banks (`jitter` `(B, 2)`, on the same device)."""
    expected = features.n_fft // 2
    if magnitude.ndim != 3 or magnitude.shape[1] != expected:
        raise ValueError(
            f"STFT magnitudes: got shape {tuple(magnitude.shape)}, expected (B, {expected}, "
            f"frames) for n_fft {features.n_fft}; prepare the spectra with these features"
        )
    mag = magnitude.float()
    mel = torch.bmm(jittered_banks(jitter, features), mag * mag)
    return mel.add_(LOG_OFFSET).log_().add_(NORM_SHIFT).div_(NORM_SCALE)
