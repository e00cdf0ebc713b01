"""Which CPU kernels a process's PyTorch runs: `recipe.cpu_numerics`.

PyTorch picks its CPU kernels by the instruction set of the CPU it runs on: ATen's
vectorised kernels (reductions, element-wise ops) and oneDNN's convolutions have AVX-512 and
AVX2 variants that add in different orders, and MKL has per-CPU code paths (Intel vs AMD).
So one cell trained on two x86-64 machines drifts apart from the first step, and after a few
hundred steps early stopping and the selected epoch can differ. Thread counts are already
fixed (one per trial, per extraction actor, per Teacher_LR fit), so the kernels are what
is left to pin. "portable" caps all three at AVX2, which every x86-64 server of the last
decade has: `ATEN_CPU_CAPABILITY=avx2`, `ONEDNN_MAX_CPU_ISA=AVX2` and `MKL_CBWR=AVX2`
(MKL's conditional numerical reproducibility). The libraries read these when they first
run a kernel, so they are set before the process computes anything and passed to every
Ray worker; `check_cpu_numerics` refuses a process where that came too late. What it
costs is measured in `bench/portable.py`.
"""

from __future__ import annotations

import os

import torch

from east_ray.errors import BadValueError

PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def use_cpu_numerics(choice: str) -> dict[str, str]:
    """Set the variables of `choice` ("native": none) in this process (its later children
    inherit them) and return them, for the Ray workers' runtime environment. Call before
    any tensor op."""
    env = dict(PORTABLE_ENV) if choice == "portable" else {}
    os.environ.update(env)
    check_cpu_numerics(choice)
    return env


def check_cpu_numerics(choice: str) -> None:
    """Refuse to go on under "portable" when this process's ATen kernels are not the AVX2
    ones: it computed something before the variables were set, or its CPU lacks AVX2."""
    if choice != "portable":
        return
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        raise BadValueError(
            f"recipe.cpu_numerics: 'portable' needs ATen's AVX2 kernels, but this process "
            f"runs {capability} ones (ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY')!r}"
            f"): set the variables {PORTABLE_ENV} before Python starts, or use 'native' on a "
            "CPU without AVX2"
        )
