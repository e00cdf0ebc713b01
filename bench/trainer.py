"""Trainer overhead and regularizer cost, measured side by side in one run (CPU).

1. Full path vs bare loop, inside a Tune trial: the trainer's step fed from Parquet → Ray
   Data → object store (`BlockStore` over the block refs the trial receives through
   `tune.with_parameters`, the study's path) against a bare PyTorch loop (forward, masked
   BCE, backward, clip, Adam) over the *same* batches already in memory as float32
   tensors, in the same trial process; same model, batch size and number of steps.
   Target ratio ≤ 1.05.
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
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from bench import bare_step, local_ray, save_result, timed
from east_ray.config import SYSTEMS, Cell, Features, Recipe, TeacherLRRecipe
from east_ray.data.datasets import get_dataset
from east_ray.data.parquet import LabelTable, read_labels
from east_ray.data.prepare import prepare
from east_ray.synthmic import synthesize
from east_ray.teachers.embeddings import extract_teacher
from east_ray.teachers.stored import load_embeddings
from east_ray.train.data import (
    BlockStore,
    build_trial_data,
    epoch_batches,
    make_batch,
)
from east_ray.train.teacher_lr import fit_teacher_lr, load_teacher_logits
from east_ray.train.trainer import TrialSpec, _Run

FEATURES = Features(sample_rate=32000, n_mels=128, f_max=16000.0, clip_seconds=10.0)


@dataclass(frozen=True)
class Inputs:
    """What both measurements read: the study's object-store blocks and small arrays."""

    labels: LabelTable
    block_refs: list[Any]  # ObjectRefs of Arrow blocks (clip_id, logmel), as the study's
    seq: np.ndarray
    logits: np.ndarray
    recipe: Recipe
    options: dict[str, int | float | str | bool]
    run_root: Path


def make_run(inputs: Inputs, store: BlockStore, regularizer: str, stage: str | None) -> _Run:
    lam = 0.0 if regularizer == "none" else 0.5
    teacher = None if regularizer == "none" else "handcrafted"
    cell = Cell("synthmic", "cp_resnet", regularizer, teacher, stage, lam, 1.0, 0)
    data = build_trial_data(cell, inputs.labels, store, inputs.seq, inputs.logits)
    spec = TrialSpec(cell, inputs.recipe, FEATURES, len(inputs.labels.labels[0]), inputs.options)
    torch.manual_seed(0)
    return _Run(spec, data, inputs.run_root / cell.cell_id, torch.device("cpu"))


def overhead_trial(config: dict[str, Any], inputs: Inputs) -> None:
    """A Tune trial: the trainer's step, fed from the object-store blocks as a study trial
    is, against a bare loop on the same batches as in-memory tensors, steps alternating."""
    from ray import tune

    torch.set_num_threads(2)
    run_full = make_run(inputs, BlockStore(ray.get(inputs.block_refs)), "none", None)
    data, recipe = run_full.data, inputs.recipe
    batches = list(epoch_batches(data, recipe.batch_size, 0, 1))[: config["steps"]]
    bare_model = run_full.model
    bare_opt = torch.optim.Adam(bare_model.parameters(), lr=recipe.lr, weight_decay=1e-4)
    in_memory = [
        (torch.from_numpy(b.logmel).float(), torch.from_numpy(b.labels), torch.from_numpy(b.mask))
        for b in batches
    ]

    def bare(i: int) -> None:
        bare_step(bare_model, bare_opt, in_memory[i % len(in_memory)], recipe.grad_clip)

    def full_step(i: int) -> None:  # gathers its batch from the object-store blocks
        run_full.train_batches([make_batch(data, batches[i % len(batches)].rows)])

    bare(0)
    full_step(0)  # warm-up
    bare_t, full_t = [], []
    for i in range(config["steps"]):
        bare_t.append(timed(bare, i))
        full_t.append(timed(full_step, i))
    run_full.writer.close()
    tune.report(
        {
            "bare_step_s": statistics.median(bare_t),
            "full_path_step_s": statistics.median(full_t),
            "threads": float(torch.get_num_threads()),
        }
    )


def overhead_in_tune(inputs: Inputs, steps: int) -> dict[str, float]:
    """Run `overhead_trial` as the one trial of a Tune run holding both CPUs."""
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(overhead_trial, inputs=inputs), {"cpu": 2})
    tuner = tune.Tuner(
        trainable,
        param_space={"steps": steps},
        run_config=tune.RunConfig(storage_path=str(inputs.run_root / "tune"), verbose=0),
    )
    result = tuner.fit()[0]
    if result.error is not None or result.metrics is None:
        raise RuntimeError(f"overhead trial failed: {result.error}")
    metrics = {k: float(result.metrics[k]) for k in ("bare_step_s", "full_path_step_s")}
    metrics["ratio"] = metrics["full_path_step_s"] / metrics["bare_step_s"]
    return metrics


def regularizer_cost(inputs: Inputs, store: BlockStore, steps: int) -> dict[str, Any]:
    """Every system's trainer step against the baseline's, on the same batches."""
    runs = {"none": make_run(inputs, store, "none", None)}
    runs.update(
        {f"{r}-{s or '-'}": make_run(inputs, store, r, s) for r, s in SYSTEMS if r != "none"}
    )
    batches = list(epoch_batches(runs["none"].data, inputs.recipe.batch_size, 0, 1))[:steps]
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in runs.values():
        r.train_batches([make_batch(r.data, batches[0].rows)])  # warm-up
    for i in range(steps):
        for name, r in runs.items():
            batch = make_batch(r.data, batches[i % len(batches)].rows)
            times[name].append(timed(r.train_batches, [batch]))
    for r in runs.values():
        r.writer.close()
    base = statistics.median(times["none"])
    return {
        name: {"step_s": statistics.median(t), "ratio": statistics.median(t) / base}
        for name, t in times.items()
    }


def run(steps: int, base_channels: int, clips: int) -> dict[str, Any]:
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="east_ray_bench_"))
    synthesize(tmp / "raw", n_clips=clips)
    prepare(get_dataset("synthmic").read(tmp / "raw"), FEATURES, tmp / "data")
    data_dir = tmp / "data"
    extract_teacher(data_dir, "handcrafted")
    short = TeacherLRRecipe(max_steps=10)  # the bench needs logits, not a good teacher
    fit_teacher_lr(data_dir, "handcrafted", short, fraction=1.0, seed=0)
    labels = read_labels(data_dir)
    dataset = ray.data.read_parquet(str(data_dir / "clips")).select_columns(["clip_id", "logmel"])
    inputs = Inputs(
        labels=labels,
        block_refs=list(dataset.materialize().to_arrow_refs()),
        seq=load_embeddings(data_dir, "handcrafted", labels.clip_ids),
        logits=load_teacher_logits(data_dir, "handcrafted", 1.0, 0, labels.clip_ids),
        recipe=Recipe(batch_size=16, mixup_alpha=0.0, specaug_freq=0, specaug_time=0),
        options={"base_channels": base_channels},
        run_root=tmp / "runs",
    )
    overhead = overhead_in_tune(inputs, steps)
    cost = regularizer_cost(inputs, BlockStore(ray.get(inputs.block_refs)), steps)
    return {
        "benchmark": "trainer",
        "student": f"cp_resnet rho 7, {base_channels} base channels",
        "input": [FEATURES.n_mels, 1000],
        "batch_size": inputs.recipe.batch_size,
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
    save_result(result, "trainer")


if __name__ == "__main__":
    main()
