"""Log-mel throughput: east_ray's front end against librosa on the same clips, one core.

Both compute the same features (pre-emphasis, power STFT with n_fft/win/hop of the study,
the same Kaldi mel matrix, log(x + 1e-5), (x + 3.7) / 3.1) on the same waveforms, one thread,
and report clips per second per core and the ratio (target: east_ray >= 3x librosa).
Also reported: the full path from an OGG file (decode + resample + log-mel) per core.

    .venv/bin/python -m bench.logmel [--study openmic] [--clips 32]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from bench import save_result, timed
from east_ray.config import Features, load_study
from east_ray.data.audio import _mel_basis, decode, fit_length, logmel, resample
from east_ray.data.prepare import LOGMEL_BATCH


def _clips(n: int, seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    out = np.empty((n, len(t)), dtype=np.float32)
    for i in range(n):
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        out[i] = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.standard_normal(len(t))
    return out


def librosa_logmel(wave: np.ndarray, f: Features) -> np.ndarray:
    """The same features with librosa's STFT (and the same Kaldi mel matrix, as numpy)."""
    import librosa
    import scipy.signal

    x = wave[1:] - 0.97 * wave[:-1]
    window = scipy.signal.get_window("hann", f.win_length, fftbins=False)
    spec = librosa.stft(
        x,
        n_fft=f.n_fft,
        hop_length=f.hop_length,
        win_length=f.win_length,
        window=window,
        center=True,
        pad_mode="reflect",
    )
    mel = _mel_basis(f).numpy() @ (np.abs(spec) ** 2)
    out: np.ndarray = (np.log(mel + 1e-5) + 3.7) / 3.1
    return out[:, : len(wave) // f.hop_length]


def _rate(fn: Callable[[], Any], n_clips: int, repeats: int = 3) -> float:
    fn()  # warm-up
    best = min(timed(fn) for _ in range(repeats))
    return n_clips / best


def run(study: str, n_clips: int, batch: int = LOGMEL_BATCH) -> dict[str, Any]:
    torch.set_num_threads(1)
    f = load_study(study).features
    waves = _clips(n_clips, f.clip_seconds, f.sample_rate)
    tensors = torch.from_numpy(waves)

    def ours() -> None:
        with torch.inference_mode():
            for i in range(0, n_clips, batch):
                logmel(tensors[i : i + batch], f)

    def theirs() -> None:
        for w in waves:
            librosa_logmel(w, f)

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        src_rate = 44_100
        for i, w in enumerate(_clips(n_clips, f.clip_seconds, src_rate, seed=1)):
            paths.append(Path(tmp) / f"{i}.ogg")
            sf.write(paths[-1], np.stack([w, w], 1), src_rate, format="OGG", subtype="VORBIS")
        n_samples = round(f.clip_seconds * f.sample_rate)

        def ours_full() -> None:
            with torch.inference_mode():
                for i in range(0, n_clips, batch):
                    fitted = [
                        fit_length(resample(*_decoded(p), f.sample_rate), n_samples, 0.9)[0]
                        for p in paths[i : i + batch]
                    ]
                    logmel(torch.stack(fitted), f)

        def theirs_full() -> None:
            import librosa

            for p in paths:
                y, _ = librosa.load(p, sr=f.sample_rate, mono=True)
                librosa_logmel(y[:n_samples], f)

        full = {"east_ray": _rate(ours_full, n_clips, 1), "librosa": _rate(theirs_full, n_clips, 1)}
    ref = librosa_logmel(waves[0], f)
    got = logmel(tensors[:1], f)[0].numpy()
    features = {"east_ray": _rate(ours, n_clips), "librosa": _rate(theirs, n_clips)}
    return {
        "benchmark": "logmel",
        "study": study,
        "clips": n_clips,
        "clip_seconds": f.clip_seconds,
        "threads": 1,
        "features_clips_per_s_per_core": features,
        "features_ratio": features["east_ray"] / features["librosa"],
        "decode_resample_features_clips_per_s_per_core": full,
        "full_path_ratio": full["east_ray"] / full["librosa"],
        "max_abs_diff_vs_librosa": float(np.abs(ref - got).max()),
        "host": platform.node(),
        "date": date.today().isoformat(),
    }


def musicnn_throughput(n_clips: int = 8, seconds: float = 10.0) -> dict[str, Any]:
    """musicnn teacher extraction, clips per second on this process's threads."""
    from east_ray.teachers import load_extractor

    extract = load_extractor("musicnn")
    audio = torch.from_numpy(_clips(n_clips, seconds, 16000))
    extract(audio[:1])  # warm-up
    start = time.perf_counter()
    extract(audio)
    elapsed = time.perf_counter() - start
    return {
        "clips": n_clips,
        "clip_seconds": seconds,
        "threads": torch.get_num_threads(),
        "clips_per_s": n_clips / elapsed,
    }


def _decoded(path: Path) -> tuple[np.ndarray, int]:
    return decode(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study", default="openmic")
    parser.add_argument("--clips", type=int, default=32)
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # numpy's BLAS too: both sides on exactly one core
        result = run(args.study, args.clips)
    print(json.dumps(result, indent=1))
    save_result(result, "logmel")


if __name__ == "__main__":
    main()
