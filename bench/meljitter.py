"""Mel-band jitter's cost: the training step with `recipe.mel_jitter = "authors"` against
"off", and the bytes of what it stores per clip against the stored log-mel (CPU).

1. Step: the trainer's whole step (the batch and its mixup partners gathered from the
   stores, the augmentation, forward, loss, backward, clip, Adam) for the baseline cell,
   which is the cheapest step and so shows the largest relative cost. With jitter the
   step also gathers the clips' and partners' float16 STFT magnitudes and computes their
   log-mels with per-clip filterbanks (east_ray.data.meljitter); without, it uses the
   stored log-mels. Each study's recipe (the authors' SpecAugment and mixup), features,
   student and threads (`cpus_per_trial`, at most this machine's cores); `--base-channels`
   replaces the OpenMIC student's 128 channels (paper size: about 20 s a step here), as
   `bench.trainer` does. Random spectrograms and magnitudes of the right shapes: the
   arithmetic does not depend on the values. Ratios from `--reps` repetitions, each
   running both variants once in a freshly shuffled order (`bench.alternating`).
2. Storage: bytes per clip of the stored magnitudes (`n_fft // 2` × frames float16, the
   training clips only) against the log-mel (`n_mels` × frames float16), as arrays (what
   the object store holds) and for a whole dataset's training split.

    .venv/bin/python -m bench.meljitter [--reps 5] [--base-channels 32] [--studies openmic demo]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import alternating, ratio, save_result, spread, synthetic_trial_data
from east_ray.config import Cell, StudySpec, load_study
from east_ray.train.data import ArrayStore, TrialData, epoch_batches
from east_ray.train.trainer import _Run
from east_ray.train.trial import TrialSpec

# training clips of the full datasets (OpenMIC: split01_train less the authors' 2,223
# validation clips; SynthMIC as the demo renders it), for the storage totals
TRAIN_CLIPS = {"openmic": 14_915 - 2_223, "demo": 510}
ALL_CLIPS = {"openmic": 20_000, "demo": 800}


def with_spectra(data: TrialData, n_fft: int, seed: int = 0) -> TrialData:
    """`data` with random float16 magnitudes `(n_train, n_fft // 2, frames)` for its
    training clips, as `load_trial_data(..., spectra=True)` gives."""
    rng = np.random.default_rng(seed)
    train_ids = [data.labels.clip_ids[r] for r in data.train_rows]
    frames = data.store.row_shape[0][1]
    mags = np.abs(rng.standard_normal((len(train_ids), n_fft // 2, frames))).astype(np.float16)
    rows = np.full(len(data.labels.clip_ids), -1, np.int64)
    rows[data.train_rows] = np.arange(len(train_ids))
    return dataclasses.replace(data, spectra=ArrayStore(train_ids, mags), spectra_rows=rows)


def storage(spec: StudySpec, name: str) -> dict[str, Any]:
    """Bytes per clip of the stored magnitudes and log-mel at `spec`'s features."""
    f = spec.features
    logmel = 2 * f.n_mels * f.frames
    magnitude = 2 * (f.n_fft // 2) * f.frames
    return {
        "features": f"{f.sample_rate} Hz, {f.clip_seconds:g} s, {f.n_mels} mels, hop "
        f"{f.hop_length}, n_fft {f.n_fft} ({f.n_mels}x{f.frames})",
        "logmel_bytes_per_clip": logmel,
        "magnitude_bytes_per_clip": magnitude,
        "ratio_per_training_clip": magnitude / logmel,
        "training_clips": TRAIN_CLIPS[name],
        "magnitudes_gb": magnitude * TRAIN_CLIPS[name] / 1e9,
        "logmels_gb_all_clips": logmel * ALL_CLIPS[name] / 1e9,
        "dataset_growth": 1 + magnitude * TRAIN_CLIPS[name] / (logmel * ALL_CLIPS[name]),
    }


def step_cost(
    spec: StudySpec, reps: int, run_root: Path, base_channels: int | None
) -> dict[str, Any]:
    """The baseline step with jitter against without (module doc, 1)."""
    options = dict(spec.student_options)
    if base_channels is not None:
        options["base_channels"] = base_channels
    spec = dataclasses.replace(spec, student_options=options)
    cell = Cell(spec.dataset, spec.student, "none", None, None, 0.0, 1.0, 0)
    b = spec.recipe.batch_size
    data = with_spectra(synthetic_trial_data(spec, cell, clips=8 * b), spec.features.n_fft)
    threads = max(1, min(int(spec.resources.cpus_per_trial), os.cpu_count() or 1))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)

    def new_run(setting: str) -> _Run:
        recipe = dataclasses.replace(spec.recipe, mel_jitter=setting, compile="off")
        trial = TrialSpec.for_cell(dataclasses.replace(spec, recipe=recipe), cell, 20)
        torch.manual_seed(0)
        return _Run(trial, data, run_root / f"{spec.name}-{setting}", torch.device("cpu"))

    runs = {setting: new_run(setting) for setting in ("off", "authors")}
    n_batches = len(data.train_rows) // b

    def step(run: _Run) -> Any:
        def one(i: int) -> None:  # gathers its batch, partners (and magnitudes) as a run does
            batches = epoch_batches(
                data,
                b,
                0,
                1,
                start=i % n_batches,
                partners=run.needs_partners,
                drop_last=True,
                mel_jitter=run.mel_jitter,
            )
            run.train_batches([next(batches)])

        return one

    try:
        for run in runs.values():
            step(run)(0)  # warm-up
        times = alternating({name: step(run) for name, run in runs.items()}, reps)
    finally:
        torch.set_num_threads(before)
        for run in runs.values():
            run.writer.close()
    f = spec.features
    return {
        "student": f"{spec.student} {options}, batch {b}, input {f.n_mels}x{f.frames}",
        "recipe": f"specaug {spec.recipe.specaug_freq}/{spec.recipe.specaug_time}, mixup "
        f"{spec.recipe.mixup_alpha} ({spec.recipe.mixup_partner})",
        "threads": threads,
        "jitter_vs_off": ratio(times, "authors", "off"),
    }


def run(reps: int, base_channels: int | None, studies: tuple[str, ...]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="east_ray_bench_meljitter_"))
    result: dict[str, Any] = {
        "benchmark": "meljitter",
        "repetitions": reps,
        "host": platform.node(),
        "date": date.today().isoformat(),
    }
    for name in studies:
        spec = load_study(name)
        channels = base_channels if name == "openmic" else None
        result[name] = {
            "step": step_cost(spec, reps, tmp, channels),
            "storage": storage(spec, name),
        }
    return result


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"# Mel-band jitter {result['date']} on {result['host']}",
        "",
        "| study | step with jitter / without | storage per training clip (magnitudes / log-mel) |",
        "|---|---|---|",
    ]
    for name in TRAIN_CLIPS:
        if name not in result:
            continue
        step, st = result[name]["step"], result[name]["storage"]
        r = step["jitter_vs_off"]
        lines.append(
            f"| {name}: {step['student']}, {step['threads']} thread(s) | {spread(r)} "
            f"({r['seconds'] * 1e3:.0f} vs {r['reference_seconds'] * 1e3:.0f} ms) | "
            f"{st['magnitude_bytes_per_clip']:,} / {st['logmel_bytes_per_clip']:,} B = "
            f"{st['ratio_per_training_clip']:.1f}x; {st['magnitudes_gb']:.2f} GB for "
            f"{st['training_clips']:,} training clips ({st['dataset_growth']:.2f}x the dataset) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each ratio")
    parser.add_argument(
        "--base-channels", type=int, default=32, help="the OpenMIC student's (paper: 128)"
    )
    parser.add_argument(
        "--studies", nargs="*", default=list(TRAIN_CLIPS), choices=list(TRAIN_CLIPS)
    )
    args = parser.parse_args()
    result = run(args.reps, args.base_channels, tuple(args.studies))
    print(json.dumps(result, indent=1))
    print(summary(result))
    save_result(result, f"meljitter-{args.base_channels}ch", markdown=summary(result))


if __name__ == "__main__":
    main()
