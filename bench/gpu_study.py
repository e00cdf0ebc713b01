"""The study runner on one GPU: `bench/gpu_study.toml` (15 cells on the demo's SynthMIC
data) through `python -m east_ray.study`, once with 4 trials packed per GPU (1/4 GPU each)
and once with 1, side by side on the same machine; cells per minute and what each trial
ran on, read back from `results.parquet`.

    python -m bench.gpu_study --data data/synthmic --out OUT_DIR   # writes gpu_study.json

The dataset must already be prepared with its teachers (`make demo` leaves it in
data/synthmic), so the measurement is the runner and the trainer, not the preprocessing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

SPEC = Path(__file__).resolve().parent / "gpu_study.toml"


def run_study(data: Path, storage: Path, gpus_per_trial: float, log: Path) -> dict[str, Any]:
    """One full run of the study; its wall time and a summary of its result rows."""
    command = [
        sys.executable,
        "-m",
        "east_ray.study",
        str(SPEC),
        "--data",
        str(data),
        "--storage",
        str(storage),
        "--gpus-per-trial",
        str(gpus_per_trial),
        "--retries",
        "0",
    ]
    started = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=True)
    seconds = time.perf_counter() - started
    rows = pd.read_parquet(storage / "gpu_check" / "results.parquet")
    runs = rows[rows["regularizer"] != "teacher_lr"]
    return {
        "gpus_per_trial": gpus_per_trial,
        "seconds": seconds,
        "cells": len(runs),
        "cells_per_minute": 60 * len(runs) / seconds,
        "devices": sorted(runs["device"].astype(str).unique()),
        "gpu_ids": sorted(runs["gpu_ids"].astype(str).unique()),
        "mean_trial_wall_s": float(runs["wall_seconds"].mean()),
        "test_mAP_mean": float(runs["test_mAP"].mean()),
        "gpu_hours": float(runs["gpu_hours"].sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="the prepared demo dataset")
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_study.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="east_ray_gpu_study_"))
    rows = []
    for gpus in (0.25, 1.0):
        tag = f"gpu{gpus:g}"
        rows.append(run_study(args.data, tmp / tag, gpus, args.out / f"study-{tag}.log"))
        print(json.dumps(rows[-1]), flush=True)
        (args.out / "gpu_study.json").write_text(json.dumps(rows, indent=1))
    packed, alone = rows
    print(f"4 per GPU / 1 per GPU: {packed['cells_per_minute'] / alone['cells_per_minute']:.2f}x")


if __name__ == "__main__":
    main()
