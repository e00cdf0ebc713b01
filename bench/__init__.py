"""Benchmarks: ratios measured side by side in one run (not timed tests)."""

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from east_ray.losses import masked_bce


def local_ray(num_gpus: int = 0) -> None:
    """The benchmarks' Ray: 2 CPUs (this machine's), optional fake GPUs, loopback only."""
    from east_ray.ray_session import init_ray  # bench.gpu runs where Ray may not be installed

    init_ray(num_cpus=2, num_gpus=num_gpus)


def timed(fn: Callable[..., Any], *args: Any) -> float:
    """Wall seconds of `fn(*args)` (the caller synchronises a GPU inside `fn`)."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def bare_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    grad_clip: float,
    autocast: AbstractContextManager[Any] | None = None,
) -> None:
    """The reference a trainer step is compared with: forward, masked BCE, backward,
    clip, Adam on tensors already where the model is; nothing else."""
    x, labels, mask = batch
    with autocast or nullcontext():
        logits = model(x).logits
    opt.zero_grad(set_to_none=True)
    masked_bce(logits.float(), labels, mask).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
