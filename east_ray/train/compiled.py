"""torch.compile of a training step's forward and loss, with fixed shapes and an eager fallback.

`compile_mode(setting, device)` turns `recipe.compile` into a torch.compile mode, or None for
eager: "auto" is "reduce-overhead" (inductor plus CUDA graphs) on CUDA, where a paper-size
step is launch overhead and memory-bound elementwise work (21.5 ms on an H100 in fp32 and
bf16 alike), and eager on the CPU, where compiling costs more than it saves (README
"Runtime options"). "reduce-overhead" on the CPU compiles as "default" does (CUDA graphs
need CUDA).

`CompiledStep(fn, model, mode, name)` runs one training step's forward and loss (`fn`, which
returns `LossTerms`) and its backward. Shapes are fixed (`dynamic=False`): an epoch's
last, smaller training batch runs eager (`eager`), so one graph serves a whole run;
evaluation calls the eager `fn`: its last batch is smaller, which a fixed-shape graph
would compile again for, padding it would change the validation loss of the batch-wise
regularizers (dCor, Cos-Diff compare the rows of a batch), and it is a small part of an
epoch (README "Runtime options").
Compiling happens during the first step (the forward at the call, the backward at
`.backward()`), so that step is the guarded one: if torch.compile is unavailable or the
first step raises (no C++ compiler, an op inductor cannot lower), one warning names the
reason, the model's buffers (BatchNorm statistics) and the RNG states are put back as they
were before the step, and that step and every later one run eager, giving the numbers an
eager run gives.

Each CompiledStep starts from `torch.compiler.reset()`: a trial process that Ray reuses for
the next trial would otherwise keep every earlier trial's graphs (and their CUDA-graph
memory pools), and past dynamo's recompile limit (8 graphs per function; each system,
student and teacher shape is one) it would run eager without saying so. A reset costs what
a fresh process pays; inductor's on-disk cache keeps a graph compiled before cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

import torch
from torch import nn

from east_ray.losses import LossTerms

logger = logging.getLogger(__name__)

T = TypeVar("T")


def compile_mode(setting: str, device: torch.device) -> str | None:
    """The torch.compile mode `recipe.compile = setting` asks for on `device`; None: eager."""
    if setting == "auto":
        return "reduce-overhead" if device.type == "cuda" else None
    return None if setting == "off" else setting


def _snapshot(model: nn.Module) -> Callable[[], None]:
    """A function that puts `model`'s buffers and the RNG states back as they are now."""
    buffers = [b.detach().clone() for b in model.buffers()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []

    def restore() -> None:
        with torch.no_grad():
            for buffer, saved in zip(model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
        torch.set_rng_state(cpu_rng)
        if cuda_rng:
            torch.cuda.set_rng_state_all(cuda_rng)

    return restore


class CompiledStep(Generic[T]):
    """Forward, loss and backward of a training step, compiled as `mode` says (module doc)."""

    def __init__(
        self, fn: Callable[[T], LossTerms], model: nn.Module, mode: str | None, name: str
    ) -> None:
        self.fn, self.model, self.mode, self.name = fn, model, mode, name
        self.step_fn = fn
        self.fallback_reason = ""  # why a compiled step runs eager ("" while it does not)
        self.untried = mode is not None  # the first compiled step has not run yet
        if mode is None:
            return
        torch.compiler.reset()
        try:
            self.step_fn = torch.compile(fn, mode=mode, dynamic=False)
        except Exception as exc:  # torch.compile unavailable here (platform, Python version)
            self._fall_back(exc)

    @property
    def compiled(self) -> bool:
        """Whether steps run compiled (False when eager by choice or by fallback)."""
        return self.step_fn is not self.fn

    def _fall_back(self, exc: Exception) -> None:
        first_line = next(iter(str(exc).strip().splitlines()), "")  # inductor's run long
        reason = f"{type(exc).__name__}: {first_line}"
        logger.warning(
            "%s: recipe.compile = %r could not compile the training step (%s); training "
            'eager instead (set recipe.compile = "off" to skip compiling)',
            self.name,
            self.mode,
            reason,
        )
        logger.debug("%s: the compile failure in full", self.name, exc_info=exc)
        self.fallback_reason, self.step_fn, self.untried = reason, self.fn, False

    def _run(self, fn: Callable[[T], LossTerms], inp: T) -> LossTerms:
        terms = fn(inp)
        terms.total.backward()
        return terms

    def eager(self, inp: T) -> LossTerms:
        """One step's forward, loss and backward on `inp`, eager whatever the mode (a batch
        of another shape than the compiled graph's)."""
        return self._run(self.fn, inp)

    def __call__(self, inp: T) -> LossTerms:
        """One step's forward, loss and backward on `inp`; its loss terms (gradients are
        accumulated into the model's parameters, as `.backward()` does)."""
        if self.mode == "reduce-overhead" and self.compiled:
            # a new iteration: the CUDA-graph outputs of the last one may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        if not self.untried:
            return self._run(self.step_fn, inp)
        self.untried = False
        restore = _snapshot(self.model)
        try:
            return self._run(self.step_fn, inp)
        except Exception as exc:  # compiling failed inside the first step
            self._fall_back(exc)
            restore()
            self.model.zero_grad(set_to_none=True)
            return self._run(self.fn, inp)
