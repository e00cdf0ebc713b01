"""`recipe.cpu_numerics = "portable"`: the AVX2 kernels in the driver and in every Ray worker,
and a refusal where a process computed before the variables could take effect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from east_ray.errors import BadValueError
from east_ray.train.cpu_numerics import PORTABLE_ENV, use_cpu_numerics


def _has_avx2() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.exists() and "avx2" in cpuinfo.read_text().split()


# A fresh process, as `python -m east_ray.study` is: set the kernels, start local Ray with
# them, and report what the driver and a worker run.
_SCRIPT = """
import json, os
from east_ray.train.cpu_numerics import use_cpu_numerics
env = use_cpu_numerics("portable")
import ray, torch
from east_ray.ray_session import init_ray
init_ray(env=env, num_cpus=1)

@ray.remote
def kernels():
    import os, torch
    torch.ones(4).sum()
    return torch.backends.cpu.get_cpu_capability(), os.environ.get("ONEDNN_MAX_CPU_ISA"), \\
        os.environ.get("MKL_CBWR")

print(json.dumps({"driver": torch.backends.cpu.get_cpu_capability(),
                  "worker": ray.get(kernels.remote())}))
ray.shutdown()
"""


@pytest.mark.slow
@pytest.mark.skipif(not _has_avx2(), reason="needs an x86-64 CPU with AVX2")
def test_portable_kernels_reach_the_driver_and_every_ray_worker() -> None:
    clean = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=clean,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"driver": "AVX2", "worker": ["AVX2", "AVX2", "AVX2"]}


def test_portable_refuses_a_process_that_already_ran_other_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.ones(4).sum()  # this test process has long chosen its kernels
    if torch.backends.cpu.get_cpu_capability() == "AVX2":
        pytest.skip("this CPU's own kernels are the AVX2 ones")
    for name in PORTABLE_ENV:
        monkeypatch.delenv(name, raising=False)  # restored after the test
    with pytest.raises(BadValueError, match="recipe.cpu_numerics: 'portable' needs ATen's AVX2"):
        use_cpu_numerics("portable")
    assert use_cpu_numerics("native") == {}
