"""A training batch as the student's input on the device, and the recipe's augmentations.

`_inputs` moves a `Batch` to the device (with mel-band jitter, computing each clip's
log-mel there from its stored STFT magnitudes); `spec_augment` and `mixup` are the
recipe's augmentations, which `augment` applies in the recipe's order.
Device helpers: which device, its memory share, page-locked batch buffers, how far the
host gathers ahead, the optimiser.

Augmentation, by default the authors' (DESIGN §1): each example gets one frequency and
one time mask (SpecAugment) in the log-power domain, before normalisation, so a stripe
holds log-power 0, i.e. (0 + NORM_SHIFT) / NORM_SCALE in the stored units; its mixup
partner, drawn uniformly from the training subset (`epoch_batches(partners=True)`), gets
masks of its own; then the two are mixed, λ ~ Beta(α, α), λ = max(λ, 1 − λ): log-mel,
labels, teacher sequences and logits, with the label masks OR-ed. `recipe.specaug_on =
"mixed_input"` masks the mixed input instead, stripes 0 (the normalisation's mean), and
`recipe.mixup_partner = "batch"` mixes with a permutation of the batch. With
`recipe.mel_jitter = "authors"` a training example's log-mel, and its partner's, is first
computed on the device from the clip's stored STFT magnitudes with a filterbank of its own
(band edges drawn per clip by `epoch_batches`; east_ray.data.meljitter), as the authors
did; "off" (the default) trains on the stored log-mels, unchanged bit for bit.

On a GPU the host runs one step ahead: a thread gathers the next batches straight into
page-locked memory (`east_ray.train.prefetch`) while the step's kernels are launched, and
they are copied without waiting for the device; the augmentation's random draws (mask
widths and positions, mixup weights, in-batch partners) are made on the device, so a step
copies only its batch's own arrays to it; Adam is the fused kernel; and a step's losses are
read back (the step's only synchronisation) after the next step is queued.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
import torchaudio.functional as AF

from east_ray.config import Features, Recipe
from east_ray.data.audio import NORM_SCALE, NORM_SHIFT
from east_ray.data.meljitter import jittered_logmel
from east_ray.train.data import Alloc, Batch

# The value a SpecAugment stripe holds, in the stored (normalised) log-mel units, for each
# `recipe.specaug_on`. Masking is a replacement, so writing normalise(0) into a normalised
# log-mel equals writing log-power 0 before the affine normalisation, as the authors did.
MASK_FILL = {"log_power": (0.0 + NORM_SHIFT) / NORM_SCALE, "mixed_input": 0.0}


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def limit_gpu_memory(fraction: float, device: torch.device) -> None:
    """Cap this process's CUDA allocations at `fraction` of the device (a fractional-GPU
    trial); nothing on a CPU or for a whole GPU."""
    if device.type != "cuda" or fraction >= 1.0:
        return
    # torch refuses a bare "cuda" device here: it needs the index.
    index = torch.cuda.current_device() if device.index is None else device.index
    torch.cuda.set_per_process_memory_fraction(fraction, index)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host → device without waiting for the device to go idle: a copy from pageable memory
    first waits for the stream to drain, one from pinned memory is queued behind it
    (`pin_memory` returns a tensor that is pinned already as it is)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t


def _pinned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An empty page-locked array (`data.Alloc`): batches gathered into it reach the GPU in
    one copy; the caching host allocator reuses its memory once the copy is done."""
    like = torch.from_numpy(np.empty(0, dtype=dtype))
    return torch.empty(shape, dtype=like.dtype, pin_memory=True).numpy()


def batch_alloc(device: torch.device) -> Alloc:
    """Where `device`'s batches are gathered: page-locked memory for a GPU."""
    return _pinned_empty if device.type == "cuda" else np.empty


def prefetch_depth(device: torch.device) -> int:
    """How many batches a thread gathers ahead on `device`: two on a GPU, where the host's
    gathering and launching bound the step; none on the CPU, where the step's own threads
    use the cores."""
    return 2 if device.type == "cuda" else 0


def adam(model: torch.nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.Adam:
    """The recipe's Adam; on CUDA the fused kernel (one launch for every parameter, the
    same update), on the CPU the default implementation."""
    fused = True if device.type == "cuda" else None
    return torch.optim.Adam(
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, fused=fused
    )


def _tensor(x: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    if x is None:
        return None
    return _to_device(torch.from_numpy(np.ascontiguousarray(x)), device).float()


@dataclasses.dataclass
class Inputs:
    x: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    teacher_seqs: tuple[torch.Tensor, ...]  # one (B, T', D) per teacher
    teacher_logits: torch.Tensor | None


def inputs_on(batch: Batch, device: torch.device, features: Features | None = None) -> Inputs:
    """`batch` on `device`: its stored log-mels, or with mel-band jitter (a training batch
    with `magnitude`) log-mels computed there with each clip's jittered filterbank from
    its STFT magnitudes (`features`: the dataset's)."""
    x: torch.Tensor | None
    if batch.magnitude is not None and batch.jitter is not None:
        if features is None:
            raise ValueError("a batch with mel-band jitter needs the features to compute")
        x = jittered_logmel(
            _to_device(torch.from_numpy(batch.magnitude), device),
            _to_device(torch.from_numpy(batch.jitter), device),
            features,
        )
    else:
        x = _tensor(batch.logmel, device)
    labels = _tensor(batch.labels, device)
    assert x is not None and labels is not None
    return Inputs(
        x,
        labels,
        _to_device(torch.from_numpy(batch.mask), device),
        tuple(_to_device(torch.from_numpy(s), device).float() for s in batch.teacher_seqs),
        _tensor(batch.teacher_logits, device),
    )


def take_rows(inp: Inputs, index: torch.Tensor) -> Inputs:
    """Rows `index` `(B,)` of every input."""

    def take(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[index]

    return Inputs(
        inp.x[index],
        inp.labels[index],
        inp.mask[index],
        tuple(s[index] for s in inp.teacher_seqs),
        take(inp.teacher_logits),
    )


def mixup(inp: Inputs, partner: Inputs, alpha: float) -> Inputs:
    """Mix row i of `inp` with row i of `partner` (same shapes): λ_i ~ Beta(α, α),
    λ_i = max(λ_i, 1 − λ_i); log-mel, labels, teacher sequences and logits mixed, masks OR-ed."""
    # drawn where the batch is, without checking the arguments: the check would read a
    # device tensor back, a synchronisation every step
    concentration = torch.full((inp.x.shape[0],), alpha, device=inp.x.device)
    lam = torch.distributions.Beta(concentration, concentration, validate_args=False).sample()
    lam = torch.maximum(lam, 1 - lam)

    def mix(t: torch.Tensor | None, u: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None or u is None else _mixed(t, u, lam)

    x, labels = mix(inp.x, partner.x), mix(inp.labels, partner.labels)
    assert x is not None and labels is not None
    return Inputs(
        x,
        labels,
        inp.mask | partner.mask,
        tuple(
            _mixed(t, u, lam) for t, u in zip(inp.teacher_seqs, partner.teacher_seqs, strict=True)
        ),
        mix(inp.teacher_logits, partner.teacher_logits),
    )


def _mixed(t: torch.Tensor, u: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Row i: lam_i · t_i + (1 − lam_i) · u_i."""
    w = lam.view(-1, *([1] * (t.ndim - 1)))
    return w * t + (1 - w) * u


def spec_augment(x: torch.Tensor, freq: int, time_: int, fill: float) -> torch.Tensor:
    """One frequency and one time mask per example of `x` `(B, F, T)`, widths drawn
    uniformly below `freq` / `time_` bins (torchaudio's rule, as the authors'), set to `fill`."""
    y = x.unsqueeze(1)
    if freq > 0:
        y = AF.mask_along_axis_iid(y, freq, fill, 2)
    if time_ > 0:
        y = AF.mask_along_axis_iid(y, time_, fill, 3)
    return y.squeeze(1)


def needs_partners(recipe: Recipe) -> bool:
    """Whether the training batches must carry partners drawn from the training subset."""
    return recipe.mixup_alpha > 0 and recipe.mixup_partner == "training_set"


def _mask(x: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """SpecAugment of `x` `(B, F, T)` with the recipe's widths and fill."""
    return spec_augment(x, recipe.specaug_freq, recipe.specaug_time, MASK_FILL[recipe.specaug_on])


def _partners(
    batch: Batch, inp: Inputs, recipe: Recipe, features: Features, device: torch.device
) -> Inputs:
    """Row i's mixup partner: row i of `batch.partner` (drawn from the training subset),
    masked like an example but with masks of its own; or, with `mixup_partner = "batch"`,
    a row of `inp` itself (already masked when masks come first)."""
    if recipe.mixup_partner == "batch":
        return take_rows(inp, torch.randperm(len(batch.rows), device=device))
    if batch.partner is None:
        raise ValueError(
            'recipe.mixup_partner "training_set" needs batches with partners: '
            "epoch_batches(..., partners=True) or make_batch(data, rows, partner_rows)"
        )
    partner = inputs_on(batch.partner, device, features)
    if recipe.specaug_on == "log_power":
        partner.x = _mask(partner.x, recipe)
    return partner


def augment(batch: Batch, recipe: Recipe, features: Features, device: torch.device) -> Inputs:
    """`batch` as the student sees it in training, on `device` (module doc: masks, then
    mixup, or mixup, then masks)."""
    inp = inputs_on(batch, device, features)
    if recipe.specaug_on == "log_power":
        inp.x = _mask(inp.x, recipe)
    if recipe.mixup_alpha > 0:
        inp = mixup(inp, _partners(batch, inp, recipe, features, device), recipe.mixup_alpha)
    if recipe.specaug_on == "mixed_input":
        inp.x = _mask(inp.x, recipe)
    return inp


def autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """The forward pass's context for `recipe.precision`: bf16 autocast on `device` for
    "bf16" (CPU autocast included, so a CPU run is what was asked for), none for "fp32" and
    "tf32"."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
