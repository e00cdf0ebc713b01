"""One-GPU benchmark: the EAsT training step in fp32 vs bf16 autocast, and 1, 2 or 4
trials packed on one GPU (aggregate samples/s, peak GPU memory per trial).

The step is the trainer's: CP-ResNet forward, composite loss with the dcor regularizer on
the final stage against a 10-frame teacher, backward, gradient clipping, Adam; channels_last
on CUDA. Packed trials are separate processes, each capped at 1/k of the GPU memory, as
`tune.with_resources(..., {"gpu": 1/k})` trials are. On a machine without CUDA it runs the
same code on the CPU (a smoke check, not a measurement).

    bench/gpu.sh OUT_DIR        # writes OUT_DIR/gpu.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from east_ray.losses import LossSpec, east_loss
from east_ray.models import build_student

BATCH, CLASSES, MELS, FRAMES = 16, 20, 128, 1000


def measure(
    device_name: str, bf16: bool, steps: int, base_channels: int, memory_fraction: float = 1.0
) -> dict[str, float]:
    """Median step time and peak memory (GPU; on a CPU the process RSS) of `steps` steps."""
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    if cuda and memory_fraction < 1.0:
        torch.cuda.set_per_process_memory_fraction(memory_fraction, device)
    model = build_student("cp_resnet", CLASSES, seed=0, base_channels=base_channels).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    x = torch.randn(BATCH, MELS, FRAMES, device=device)
    labels = (torch.rand(BATCH, CLASSES, device=device) > 0.8).float()
    mask = torch.ones(BATCH, CLASSES, dtype=torch.bool, device=device)
    teacher = torch.randn(BATCH, 10, 128, device=device)
    spec = LossSpec("dcor", "final", 0.8)
    hops = [s * 0.01 for s in model.time_strides]

    def step() -> None:
        context = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
        with context:
            out = model(x)
        terms = east_loss(
            out, labels, mask, spec, stage_hops=hops, teacher_seq=teacher, teacher_hop=0.96
        )
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    times = []
    for i in range(steps + 2):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    if cuda:
        memory = torch.cuda.max_memory_allocated(device) / 2**30
    else:  # the process's peak resident memory instead (KiB on Linux)
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"step_s": median, "samples_per_s": BATCH / median, "peak_memory_gib": memory}


def _worker(args: tuple[str, bool, int, int, float], queue: Any) -> None:
    queue.put(measure(*args))


def packed(device: str, k: int, steps: int, base_channels: int) -> dict[str, Any]:
    """k trials on one device at once, each in its own process with 1/k of the memory."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=((device, True, steps, base_channels, 1 / k), queue))
        for _ in range(k)
    ]
    for p in procs:
        p.start()
    rows = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return {
        "trials": k,
        "aggregate_samples_per_s": sum(r["samples_per_s"] for r in rows),
        "peak_memory_gib_per_trial": max(r["peak_memory_gib"] for r in rows),
        "per_trial": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu.json")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--base-channels", type=int, default=128)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke check)",
        "student": f"cp_resnet rho 7, {args.base_channels} base channels, batch {BATCH}, "
        f"input {MELS}x{FRAMES}",
        "fp32": measure(device, False, args.steps, args.base_channels),
        "bf16": measure(device, True, args.steps, args.base_channels),
    }
    result["bf16_speedup"] = result["fp32"]["step_s"] / result["bf16"]["step_s"]
    result["packing"] = [packed(device, k, args.steps, args.base_channels) for k in (1, 2, 4)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "packing"}, indent=1))
    for row in result["packing"]:
        print(
            f"{row['trials']} per GPU: {row['aggregate_samples_per_s']:.1f} samples/s, "
            f"{row['peak_memory_gib_per_trial']:.2f} GiB per trial"
        )


if __name__ == "__main__":
    main()
