"""Audio decoding and the paper's log-mel front end.

`decode` reads any file libsndfile reads (OGG, MP3, WAV, FLAC; any rate, any channel
count) into mono float32; `fit_length` brings a waveform to the clip length; `logmel`
turns a batch of waveforms `(B, N)` into log-mel spectrograms `(B, n_mels, frames)`:
pre-emphasis [-0.97, 1], power STFT (periodic=False Hann window of `win_length`,
centred), Kaldi-style mel banks, `log(x + 1e-5)`, then `(x + 3.7) / 3.1` (DESIGN §1).

The authors computed this on the fly and jittered the mel band edges (`fmin`/`fmax`
augmentation) during training; `prepare` computes it once, without that jitter, so a
prepared dataset is a deterministic function of the audio. `stft_magnitude` gives what
the jitter needs instead (`recipe.mel_jitter`, east_ray.data.meljitter).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torchaudio.compliance import kaldi

from east_ray.config import Features
from east_ray.errors import BadValueError

PRE_EMPHASIS = (-0.97, 1.0)
LOG_OFFSET = 1e-5
NORM_SHIFT, NORM_SCALE = 3.7, 3.1


class AudioError(BadValueError):
    """A clip that cannot be used; `reason` is recorded in the dataset's skip list."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def decode(path: Path | str) -> tuple[np.ndarray, int]:
    """Read an audio file → (mono float32 samples `(N,)`, sample rate)."""
    p = Path(path)
    if not p.is_file():
        raise AudioError(p, "missing audio file")
    if p.stat().st_size == 0:
        raise AudioError(p, "empty audio file")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(p, f"undecodable audio: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioError(p, "audio file has no samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(mono)):
        raise AudioError(p, "audio contains NaN or Inf samples")
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def resample(audio: np.ndarray, rate: int, target_rate: int) -> torch.Tensor:
    """Mono samples at `rate` → float32 tensor at `target_rate` (torchaudio's sinc resampler)."""
    x = torch.from_numpy(audio)
    if rate == target_rate:
        return x
    resampled: torch.Tensor = AF.resample(x, rate, target_rate)
    return resampled


def fit_length(
    audio: torch.Tensor, n_samples: int, min_fraction: float, path: Path | str = "<audio>"
) -> tuple[torch.Tensor, bool]:
    """Crop to `n_samples`, or reflect-pad a clip that is at most slightly short.

    A clip shorter than `min_fraction · n_samples` is rejected (`AudioError`), never
    zero-filled. Returns the fitted waveform and whether it was padded.
    """
    n = audio.shape[-1]
    if n >= n_samples:
        return audio[..., :n_samples], False
    if n < min_fraction * n_samples:
        raise AudioError(
            path, f"too short: {n} samples, expected at least {min_fraction:g} x {n_samples}"
        )
    padded = torch.nn.functional.pad(audio.view(1, 1, -1), (0, n_samples - n), mode="reflect")
    return padded.view(-1), True


@functools.lru_cache(maxsize=8)
def _mel_basis(features: Features) -> torch.Tensor:
    """Kaldi mel banks `(n_mels, n_fft // 2 + 1)` (the last STFT bin gets weight 0)."""
    banks, _ = kaldi.get_mel_banks(
        features.n_mels,
        features.n_fft,
        float(features.sample_rate),
        features.f_min,
        features.f_max,
        100.0,
        -500.0,
        1.0,
    )
    return torch.nn.functional.pad(banks, (0, 1))


def _power(waveforms: torch.Tensor, features: Features) -> torch.Tensor:
    """Power STFT `(B, n_fft // 2 + 1, N // hop_length + 1)` of pre-emphasised waveforms
    `(B, N)`."""
    if waveforms.ndim != 2:
        raise ValueError(f"waveforms: got shape {tuple(waveforms.shape)}, expected (B, N)")
    x = waveforms.float()
    # y[n] = x[n] - 0.97 x[n-1]: the [-0.97, 1] filter, by slicing (conv1d is 30x slower here)
    x = PRE_EMPHASIS[1] * x[..., 1:] + PRE_EMPHASIS[0] * x[..., :-1]
    window = torch.hann_window(features.win_length, periodic=False, device=x.device)
    spec = torch.stft(
        x,
        features.n_fft,
        hop_length=features.hop_length,
        win_length=features.win_length,
        window=window,
        center=True,
        return_complex=True,
    )
    parts = torch.view_as_real(spec)  # |z|² as re·re + im·im: 4x faster than abs() or pow
    return torch.addcmul(parts[..., 0] * parts[..., 0], parts[..., 1], parts[..., 1])


def logmel(waveforms: torch.Tensor, features: Features) -> torch.Tensor:
    """Waveforms `(B, N)` at `features.sample_rate` → normalised log-mel `(B, n_mels, frames)`.

    `frames = N // hop_length`.
    """
    power = _power(waveforms, features)
    mel = _mel_basis(features).to(power.device) @ power
    out = mel.add_(LOG_OFFSET).log_().add_(NORM_SHIFT).div_(NORM_SCALE)
    return out[..., : waveforms.shape[-1] // features.hop_length]


def stft_magnitude(waveforms: torch.Tensor, features: Features) -> torch.Tensor:
    """Waveforms `(B, N)` → the STFT magnitudes `logmel` takes its power from, `(B,
    n_fft // 2, frames)`: the Nyquist bin, which the mel banks weight 0, left out
    (east_ray.data.meljitter computes jittered log-mels from them)."""
    power = _power(waveforms, features)
    frames = waveforms.shape[-1] // features.hop_length
    return power[:, : features.n_fft // 2, :frames].sqrt()
