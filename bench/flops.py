"""Compute efficiency: training FLOP/s of each student as a fraction of the measured
matmul peak of this machine, same threads, float32.

Model FLOPs per step come from `torch.utils.flop_counter.FlopCounterMode` over one
forward + backward; the peak is the best of a few large square `torch.mm` runs.

    .venv/bin/python -m bench.flops [--steps 3]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import timed
from east_ray.losses import masked_bce
from east_ray.models import build_student

# name → (classes, mels, frames, options) at the paper's input sizes, batch 16
STUDENTS: dict[str, tuple[int, int, int, dict[str, int | float | str | bool]]] = {
    "cp_resnet (32 ch)": (20, 128, 1000, {"base_channels": 32}),
    "mobile_fcn": (50, 96, 1456, {"n_mels": 96}),
}
BATCH = 16


def matmul_peak(
    n: int = 2048,
    repeats: int = 5,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> float:
    """Best observed FLOP/s of an n×n matmul (random operands, never zeros)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def mm() -> None:
        torch.mm(a, b)
        if a.is_cuda:
            torch.cuda.synchronize(a.device)

    mm()
    best = min(timed(mm) for _ in range(repeats))
    return 2 * n**3 / best


def student_efficiency(name: str, steps: int, peak: float) -> dict[str, Any]:
    classes, mels, frames, options = STUDENTS[name]
    model = build_student(name.split(" ", maxsplit=1)[0], classes, seed=0, **options)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(BATCH, mels, frames)
    y = (torch.rand(BATCH, classes) > 0.8).float()
    mask = torch.ones(BATCH, classes, dtype=torch.bool)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        masked_bce(model(x).logits, y, mask).backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    seconds = min(timed(step) for _ in range(steps))
    return {
        "flops_per_step": flops,
        "step_s": seconds,
        "flop_per_s": flops / seconds,
        "fraction_of_peak": flops / seconds / peak,
    }


def run(steps: int) -> dict[str, Any]:
    peak = matmul_peak()
    return {
        "benchmark": "flops",
        "threads": torch.get_num_threads(),
        "batch_size": BATCH,
        "matmul_peak_flop_per_s": peak,
        "students": {name: student_efficiency(name, steps, peak) for name in STUDENTS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    print(json.dumps(run(parser.parse_args().steps), indent=1))


if __name__ == "__main__":
    main()
