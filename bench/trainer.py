"""Trainer overhead, regularizer cost and torch.compile, measured side by side in one run (CPU).

1. Full path vs bare loop, inside a Tune trial: the trainer's step fed from Parquet → Ray
   Data → object store (`BlockStore` over the block refs the trial receives through
   `tune.with_parameters`, the study's path) against a bare PyTorch loop (forward, masked
   BCE, backward, clip, Adam) over the *same* batches already in memory as float32
   tensors, in the same trial process; same model, batch size and number of steps.
   Target ratio ≤ 1.05.
2. Regularizer cost: the trainer's step for every system (kd, cos_diff, dcor, dcor_kd on
   final / all stages) against the baseline step. Target ≤ 1.05 for dcor on CP-ResNet at
   batch 16.
3. torch.compile: the trainer's step (dcor, final stage) with `recipe.compile = "default"`
   against eager, for the demo study's student, features and recipe and for the paper's
   Mobile FCN (`magnatagatune`: 96×1455, batch 16), on random spectrograms; with the time
   the first compiled step took (the compile; and again in a new run of the same cell, from
   inductor's cache, as in a reused trial process), the first step's loss beside eager's (the
   same weights, batch and augmentation; not for Mobile FCN, whose dropout draws other
   masks when compiled), and an evaluation batch against a training step (eager), which
   bounds what compiling the evaluation could save. One thread, as a demo trial runs, and
   an empty inductor cache (`compile_speedups`).

The data of 1 and 2 is a small SynthMIC set prepared at the paper's OpenMIC features (32
kHz, 128 mels, 10 s → 128×1000), the student CP-ResNet at paper size unless
`--base-channels`. Every ratio comes from `--reps` repetitions, each running every variant
once in a freshly shuffled order (`bench.alternating`); the median ratio and its range are
reported.

    .venv/bin/python -m bench.trainer [--reps 5] [--base-channels 128] [--compile STUDY ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from bench import (
    CLASSES,
    alternating,
    bare_step,
    local_ray,
    ratio,
    save_result,
    synthetic_trial_data,
    timed,
)
from east_ray.config import SYSTEMS, Cell, Features, Recipe, TeacherLRRecipe, load_study
from east_ray.data.datasets import read_release
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
from east_ray.train.inputs import adam
from east_ray.train.teacher_lr import fit_teacher_lr, load_teacher_logits
from east_ray.train.trainer import _Run
from east_ray.train.trial import TrialSpec

FEATURES = Features(sample_rate=32000, n_mels=128, f_max=16000.0, clip_seconds=10.0)
# the demo's student (CP-ResNet, 8 channels, 64×300) and the paper's Mobile FCN (96×1455)
COMPILE_STUDIES = ("demo", "magnatagatune")
INDUCTOR_CACHE = "TORCHINDUCTOR_CACHE_DIR"  # read by inductor at each compile


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
    seqs = (inputs.seq,) if teacher else ()
    data = build_trial_data(cell, inputs.labels, store, seqs, inputs.logits)
    spec = TrialSpec(cell, inputs.recipe, FEATURES, len(inputs.labels.labels[0]), inputs.options)
    torch.manual_seed(0)
    return _Run(spec, data, inputs.run_root / cell.cell_id, torch.device("cpu"))


def overhead_trial(config: dict[str, Any], inputs: Inputs) -> None:
    """A Tune trial: the trainer's step, fed from the object-store blocks as a study trial
    is, against a bare loop on the same batches as in-memory tensors, one step of each per
    repetition."""
    from ray import tune

    torch.set_num_threads(2)
    run_full = make_run(inputs, BlockStore(ray.get(inputs.block_refs)), "none", None)
    data, recipe = run_full.data, inputs.recipe
    batches = list(epoch_batches(data, recipe.batch_size, 0, 1, drop_last=True))
    bare_model = run_full.model
    bare_opt = adam(bare_model, recipe, torch.device("cpu"))
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
    times = alternating({"bare": bare, "full_path": full_step}, config["reps"])
    run_full.writer.close()
    tune.report({**ratio(times, "full_path", "bare"), "threads": float(torch.get_num_threads())})


def overhead_in_tune(inputs: Inputs, reps: int) -> dict[str, float]:
    """Run `overhead_trial` as the one trial of a Tune run holding both CPUs."""
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(overhead_trial, inputs=inputs), {"cpu": 2})
    tuner = tune.Tuner(
        trainable,
        param_space={"reps": reps},
        run_config=tune.RunConfig(storage_path=str(inputs.run_root / "tune"), verbose=0),
    )
    result = tuner.fit()[0]
    if result.error is not None or result.metrics is None:
        raise RuntimeError(f"overhead trial failed: {result.error}")
    keys = ("seconds", "reference_seconds", "ratio", "ratio_min", "ratio_max", "repetitions")
    return {k: float(result.metrics[k]) for k in keys}


def regularizer_cost(inputs: Inputs, store: BlockStore, reps: int) -> dict[str, Any]:
    """Every system's trainer step against the baseline's, on the same batches."""
    runs = {"none": make_run(inputs, store, "none", None)}
    runs.update(
        {f"{r}-{s or '-'}": make_run(inputs, store, r, s) for r, s in SYSTEMS if r != "none"}
    )
    batches = list(epoch_batches(runs["none"].data, inputs.recipe.batch_size, 0, 1, drop_last=True))
    for r in runs.values():
        r.train_batches([make_batch(r.data, batches[0].rows)])  # warm-up

    def step(run: _Run) -> Any:
        return lambda i: run.train_batches([make_batch(run.data, batches[i % len(batches)].rows)])

    times = alternating({name: step(r) for name, r in runs.items()}, reps)
    for r in runs.values():
        r.writer.close()
    return {name: ratio(times, name, "none") for name in runs}


def compile_speedup(study: str, reps: int, run_root: Path) -> dict[str, Any]:
    """The trainer's step compiled ("default") against eager for study `study` (module doc)."""
    spec = load_study(study)
    cell = Cell(spec.dataset, spec.student, "dcor", "vggish", "final", 0.8, 1.0, 0)
    b = spec.recipe.batch_size
    data = synthetic_trial_data(spec, cell, clips=8 * b)  # 6 training batches, 1 valid

    def new_run(setting: str, folder: str) -> _Run:
        recipe = dataclasses.replace(spec.recipe, compile=setting)
        trial = TrialSpec.for_cell(dataclasses.replace(spec, recipe=recipe), cell, CLASSES)
        torch.manual_seed(0)
        return _Run(trial, data, run_root / f"{study}-{folder}", torch.device("cpu"))

    runs = {"off": new_run("off", "eager"), "default": new_run("default", "compiled")}
    eager, compiled = runs["off"], runs["default"]
    batches = list(epoch_batches(data, b, 0, 1, partners=eager.needs_partners, drop_last=True))
    first_s, first_loss = {}, {}
    for setting, run in runs.items():  # same weights, batch and random numbers
        torch.manual_seed(1)
        start = time.perf_counter()
        first_loss[setting] = float(run.train_step(batches[0])[0])  # compiles
        first_s[setting] = time.perf_counter() - start
    # the next run of the same cell in this process compiles again (each run starts from a
    # reset), from inductor's cache: what a reused trial process pays for a graph it built
    again = new_run("default", "compiled-again")
    first_s["default_again"] = timed(again.train_step, batches[0])
    again.writer.close()
    valid = data.valid_rows[:b]

    def step(run: _Run) -> Any:
        return lambda i: run.train_batches([batches[1 + i % (len(batches) - 1)]])

    times = alternating(
        {
            "eager": step(eager),
            "compiled": step(compiled),
            "eval_batch": lambda i: eager.evaluate_rows(valid),
        },
        reps,
    )
    for run in runs.values():
        run.writer.close()
    loss, eager_loss = first_loss["default"], first_loss["off"]
    # compiled dropout draws other masks than eager: the two losses are not comparable
    dropout = any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in eager.model.modules())
    return {
        "student": f"{spec.student} {spec.student_options}, batch {b}, "
        f"input {spec.features.n_mels}x{spec.features.frames}",
        "compiled": compiled.forward_backward.compiled,
        "fallback_reason": compiled.forward_backward.fallback_reason,
        "compiled_vs_eager": ratio(times, "compiled", "eager"),
        "first_step_s": {
            "eager": first_s["off"],
            "compiled": first_s["default"],
            "compiled_again": first_s["default_again"],
        },
        "first_step_loss": first_loss,
        "first_step_loss_rel_diff": None if dropout else abs(loss - eager_loss) / abs(eager_loss),
        "eval_batch_vs_train_step": ratio(times, "eval_batch", "eager"),
    }


@contextmanager
def _threads_and_inductor_cache(threads: int, cache: Path) -> Iterator[None]:
    """`threads` torch threads and an empty inductor cache folder, for the block."""
    before, saved = torch.get_num_threads(), os.environ.get(INDUCTOR_CACHE)
    torch.set_num_threads(threads)
    os.environ[INDUCTOR_CACHE] = str(cache)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if saved is None:
            del os.environ[INDUCTOR_CACHE]
        else:
            os.environ[INDUCTOR_CACHE] = saved


def compile_speedups(studies: tuple[str, ...], reps: int, tmp: Path) -> dict[str, Any]:
    """`compile_speedup` of each study, on one thread as a demo trial runs
    (`cpus_per_trial = 1`; it also keeps other processes on a shared machine from stalling
    the kernels' thread barriers), compiling from an empty inductor cache: the first study's
    compile includes inductor's one-off probe of the CPU's vector instructions."""
    with _threads_and_inductor_cache(1, tmp / "inductor"):
        return {name: compile_speedup(name, reps, tmp / "runs") for name in studies}


def run(
    reps: int, base_channels: int, clips: int, compile_studies: tuple[str, ...]
) -> dict[str, Any]:
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="east_ray_bench_"))
    synthesize(tmp / "raw", n_clips=clips)
    prepare(read_release("synthmic", tmp / "raw"), FEATURES, tmp / "data")
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
        logits=load_teacher_logits(data_dir, "handcrafted", 1.0, 0, labels.clip_ids, recipe=short),
        recipe=Recipe(batch_size=16, mixup_alpha=0.0, specaug_freq=0, specaug_time=0),
        options={"base_channels": base_channels},
        run_root=tmp / "runs",
    )
    overhead = overhead_in_tune(inputs, reps)
    cost = regularizer_cost(inputs, BlockStore(ray.get(inputs.block_refs)), reps)
    return {
        "benchmark": "trainer",
        "student": f"cp_resnet rho 7, {base_channels} base channels",
        "input": [FEATURES.n_mels, 1000],
        "batch_size": inputs.recipe.batch_size,
        "repetitions": reps,
        "threads": torch.get_num_threads(),
        "full_path_vs_bare": overhead,
        "regularizer_cost": cost,
        "compile": compile_speedups(compile_studies, reps, tmp),
        "host": platform.node(),
        "date": date.today().isoformat(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each ratio")
    parser.add_argument("--base-channels", type=int, default=128)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument(
        "--compile",
        nargs="*",
        default=list(COMPILE_STUDIES),
        help="studies whose student is measured compiled vs eager (none: skip)",
    )
    args = parser.parse_args()
    local_ray()
    result = run(args.reps, args.base_channels, args.clips, tuple(args.compile))
    print(json.dumps(result, indent=1))
    save_result(result, "trainer")


if __name__ == "__main__":
    main()
