"""Study overhead: near-empty trials through the study runner (Ray Tune + Optuna, actor
reuse) against the same trainer calls in one process, one trial at a time; then
concurrency scaling with 1, 2 and 4 trials at once on fake GPUs.

Each trial is one epoch of a 4-channel CP-ResNet on a 40-clip SynthMIC set (1 s clips),
so almost all of a trial's time outside the trainer is the runner's overhead.

    .venv/bin/python -m bench.study_overhead [--trials 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench import local_ray
from east_ray.config import Features, Grid, Recipe, Resources, StudySpec, expand_cells
from east_ray.data.datasets import read_release
from east_ray.data.prepare import prepare
from east_ray.data.prepared import PreparedData
from east_ray.study.tune import run_tune, shared_inputs, trial_key
from east_ray.synthmic import synthesize
from east_ray.train.data import load_trial_data
from east_ray.train.trainer import train
from east_ray.train.trial import TrialSpec

FEATURES = Features(sample_rate=16000, n_mels=32, f_max=8000.0, clip_seconds=1.0)


def _spec(trials: int, gpus: float) -> StudySpec:
    return StudySpec(
        name="overhead",
        dataset="synthmic",
        student="cp_resnet",
        features=FEATURES,
        grid=Grid(regularizers=("none",), seeds=tuple(range(trials))),
        recipe=Recipe(batch_size=4, mixup_alpha=0.0, specaug_freq=0, specaug_time=0),
        resources=Resources(cpus_per_trial=0.5 if gpus else 1, gpus_per_trial=gpus),
        student_options={"base_channels": 4},
    )


def run(trials: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="east_ray_overhead_"))
    synthesize(tmp / "raw", n_clips=40)
    data = tmp / "data"
    prepare(read_release("synthmic", tmp / "raw"), FEATURES, data)
    spec = _spec(trials, 0.0)
    cells = expand_cells(spec)
    torch.set_num_threads(1)
    start = time.perf_counter()
    for cell in cells:
        trial = TrialSpec.for_cell(spec, cell, 20, max_epochs=1)
        train(trial, load_trial_data(data, cell), tmp / "inproc" / cell.cell_id)
    in_process = time.perf_counter() - start

    def tune_seconds(spec: StudySpec, slots: int, folder: str) -> float:
        study_dir = tmp / folder
        study_dir.mkdir()
        prepared = PreparedData.open(data)
        shared = {spec.name: shared_inputs(spec, cells, prepared, study_dir, max_epochs=1)}
        pending = {trial_key(spec.name, c.cell_id): c for c in cells}
        begin = time.perf_counter()
        run_tune(spec.name, shared, pending, study_dir, retries=0, max_concurrent=slots)
        return time.perf_counter() - begin

    sequential = tune_seconds(spec, 1, "tune-1")
    scaling = {}
    for slots in (1, 2, 4):
        seconds = tune_seconds(_spec(trials, 1.0), slots, f"gpu-{slots}")
        scaling[str(slots)] = {"seconds": seconds, "trials_per_s": trials / seconds}
    return {
        "benchmark": "study_overhead",
        "trials": trials,
        "in_process_s": in_process,
        "tune_one_at_a_time_s": sequential,
        "overhead_per_trial_s": (sequential - in_process) / trials,
        "concurrency_fake_gpus": scaling,
        "cpus": 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=64)
    args = parser.parse_args()
    local_ray(num_gpus=4)  # fake GPUs: the concurrency-scaling measurement
    print(json.dumps(run(args.trials), indent=1))


if __name__ == "__main__":
    main()
