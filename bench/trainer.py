"""Trainer overhead and regularizer cost, measured side by side in one run (CPU).

1. Full path vs bare loop: the trainer's step fed from Parquet → Ray Data → object store
   (`BlockStore`, the study's path) against a bare PyTorch loop (forward, masked BCE,
   backward, clip, Adam) over the *same* batches already in memory as float32 tensors;
   same model, batch size and number of steps. Target ratio ≤ 1.05.
2. Regularizer cost: the trainer's step for every system (kd, cos_diff, dcor, dcor_kd on
   final / all stages) against the baseline step. Target ≤ 1.05 for dcor on CP-ResNet at
   batch 16.

The data is a small SynthMIC set prepared at the paper's OpenMIC features (32 kHz, 128
mels, 10 s → 128×1000), the student CP-ResNet at paper size unless `--base-channels`.
Steps alternate between the compared variants (ABAB…) and the median is reported.

    .venv/bin/python -m bench.trainer [--steps 4] [--base-channels 128]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import ray
import torch

from bench import local_ray
from east_ray.config import SYSTEMS, Cell, Features, Recipe
from east_ray.data.loader import (
    BlockStore,
    TrialData,
    build_trial_data,
    epoch_batches,
    make_batch,
)
from east_ray.data.openmic import read_openmic
from east_ray.data.parquet import read_labels
from east_ray.data.prepare import prepare
from east_ray.data.synth import synthesize
from east_ray.losses import masked_bce
from east_ray.teachers.embeddings import extract_teacher, load_embeddings
from east_ray.teachers.teacher_lr import fit_teacher_lr, load_teacher_logits
from east_ray.trainer import TrialSpec, _Run

RESULTS = Path(__file__).resolve().parent / "results"
FEATURES = Features(sample_rate=32000, n_mels=128, f_max=16000.0, clip_seconds=10.0)


def _timed(fn: Callable[..., Any], *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def run(steps: int, base_channels: int, clips: int) -> dict[str, Any]:
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="east_ray_bench_"))
    synthesize(tmp / "raw", n_clips=clips, progress=False)
    prepare(read_openmic(tmp / "raw", dataset="synthmic"), FEATURES, tmp / "data")
    data_dir = tmp / "data"
    extract_teacher(data_dir, "handcrafted")
    fit_teacher_lr(data_dir, "handcrafted", fraction=1.0, seed=0, max_epochs=5)
    labels = read_labels(data_dir)
    dataset = ray.data.read_parquet(str(data_dir / "clips")).select_columns(["clip_id", "logmel"])
    store = BlockStore(ray.get(list(dataset.materialize().to_arrow_refs())))
    seq = load_embeddings(data_dir, "handcrafted", labels.clip_ids)
    logits = load_teacher_logits(data_dir, "handcrafted", 1.0, 0, labels.clip_ids)
    recipe = Recipe(batch_size=16, mixup_alpha=0.0, specaug_freq=0, specaug_time=0)
    options: dict[str, int | float | str | bool] = {"base_channels": base_channels}

    def make_run(regularizer: str, stage: str | None) -> tuple[_Run, TrialData]:
        lam = 0.0 if regularizer == "none" else 0.5
        teacher = None if regularizer == "none" else "handcrafted"
        cell = Cell("synthmic", "cp_resnet", regularizer, teacher, stage, lam, 1.0, 0)
        data = build_trial_data(cell, labels, store, seq, logits)
        spec = TrialSpec(cell, recipe, FEATURES, len(labels.labels[0]), options)
        torch.manual_seed(0)
        return _Run(spec, data, tmp / "runs" / cell.cell_id, torch.device("cpu")), data

    # 1. full path vs bare loop on the same batches
    run_full, data = make_run("none", None)
    batches = list(epoch_batches(data, recipe.batch_size, 0, 1))[:steps]
    bare_model = run_full.model
    bare_opt = torch.optim.Adam(bare_model.parameters(), lr=recipe.lr, weight_decay=1e-4)
    in_memory = [
        (torch.from_numpy(b.logmel).float(), torch.from_numpy(b.labels), torch.from_numpy(b.mask))
        for b in batches
    ]

    def bare_step(i: int) -> None:
        x, y, m = in_memory[i % len(in_memory)]
        bare_opt.zero_grad(set_to_none=True)
        masked_bce(bare_model(x).logits, y, m).backward()
        torch.nn.utils.clip_grad_norm_(bare_model.parameters(), recipe.grad_clip)
        bare_opt.step()

    def full_step(i: int) -> None:  # gathers its batch from the object-store blocks
        run_full.train_step(make_batch(data, batches[i % len(batches)].rows))

    bare_step(0)
    full_step(0)  # warm-up
    bare_t, full_t = [], []
    for i in range(steps):
        bare_t.append(_timed(bare_step, i))
        full_t.append(_timed(full_step, i))
    run_full.writer.close()
    overhead = {
        "bare_step_s": statistics.median(bare_t),
        "full_path_step_s": statistics.median(full_t),
    }
    overhead["ratio"] = overhead["full_path_step_s"] / overhead["bare_step_s"]

    # 2. regularizer cost relative to the baseline step
    runs = {"none": make_run("none", None)}
    runs.update({f"{r}-{s or '-'}": make_run(r, s) for r, s in SYSTEMS if r != "none"})
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r, d in runs.values():
        r.train_step(make_batch(d, batches[0].rows))  # warm-up
    for i in range(steps):
        for name, (r, d) in runs.items():
            batch = make_batch(d, batches[i % len(batches)].rows)
            times[name].append(_timed(r.train_step, batch))
    for r, _ in runs.values():
        r.writer.close()
    base = statistics.median(times["none"])
    cost = {
        name: {"step_s": statistics.median(t), "ratio": statistics.median(t) / base}
        for name, t in times.items()
    }
    return {
        "benchmark": "trainer",
        "student": f"cp_resnet rho 7, {base_channels} base channels",
        "input": [FEATURES.n_mels, 1000],
        "batch_size": recipe.batch_size,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "full_path_vs_bare": overhead,
        "regularizer_cost": cost,
        "host": platform.node(),
        "date": date.today().isoformat(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--base-channels", type=int, default=128)
    parser.add_argument("--clips", type=int, default=40)
    args = parser.parse_args()
    local_ray()
    result = run(args.steps, args.base_channels, args.clips)
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{result['date']}-{result['host']}-trainer.json").write_text(
        json.dumps(result, indent=1)
    )


if __name__ == "__main__":
    main()
