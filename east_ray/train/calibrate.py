"""A student's bare training step and its measured time on a device: the reference the
benchmarks compare the trainer with, and the calibration behind `--estimate`."""

from __future__ import annotations

import statistics
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from east_ray.config import StudySpec
from east_ray.losses import masked_bce
from east_ray.models import build_student
from east_ray.train.inputs import adam


def bare_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    grad_clip: float,
    autocast: AbstractContextManager[Any] | None = None,
) -> None:
    """Forward, masked BCE, backward, clip, Adam on tensors already where the model is;
    nothing else. `batch`: log-mels `(B, F, T)`, labels and mask `(B, K)`."""
    x, labels, mask = batch
    with autocast or nullcontext():
        logits = model(x).logits
    opt.zero_grad(set_to_none=True)
    masked_bce(logits.float(), labels, mask).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()


def student_description(spec: StudySpec) -> str:
    """What a step's cost depends on, as the GPU benchmark records it beside its figures."""
    r, f = spec.recipe, spec.features
    size = f"batch {r.batch_size}, input {f.n_mels}x{f.frames}"
    return f"{spec.student} {spec.student_options}, {size}"


def step_seconds(spec: StudySpec, num_classes: int, device: torch.device, steps: int = 5) -> float:
    """Median wall seconds of `spec`'s student's bare step at the recipe's batch size and
    the features' input size on `device`, after one warm-up step (random inputs: the cost
    does not depend on the values)."""
    if steps < 1:
        raise ValueError(f"steps: got {steps}, expected at least 1")
    model = build_student(spec.student, num_classes, seed=0, **spec.student_options).to(device)
    opt = adam(model, spec.recipe, device)
    b, f, t = spec.recipe.batch_size, spec.features.n_mels, spec.features.frames
    generator = torch.Generator().manual_seed(0)
    batch = (
        torch.randn(b, f, t, generator=generator).to(device),
        (torch.rand(b, num_classes, generator=generator) < 0.2).float().to(device),
        torch.ones(b, num_classes, dtype=torch.bool).to(device),
    )
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        bare_step(model, opt, batch, spec.recipe.grad_clip)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])
