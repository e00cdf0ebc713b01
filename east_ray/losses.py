"""The EAsT objective: `L = (1 - λ)·L_pred + λ·L_reg`, as the authors' code computes it.

- `L_pred`: binary cross-entropy on logits, averaged over labelled entries only.
- `L_reg`, one of
  - `kd`: per-class binary KL divergence between teacher and student at temperature τ,
    averaged over labelled entries (`kd_mask="labelled"`, the authors' current code) or
    over all entries (`"all"`, their first commit), × τ²;
  - `dcor`: mean over aligned time steps of `1 − dCor²` across the batch (the squared
    distance correlation of Székely et al. 2007, biased V-statistic);
  - `cos_diff`: mean |difference| of the per-step cosine-similarity Gram matrices;
  - `dcor_kd`: `w·KD + (1 − w)·dcor` (w = 0.3 in the paper).
- Stage "final" uses the last stage map, "all" averages the loss over every stage.

Each regularizer is a row of `east_ray.catalog` whose `loss` names its function here
(`kd_reg`, `dcor_reg`, `cos_diff_reg`, `dcor_kd_reg`: one `RegInputs` in, `L_reg` out).

Student stage maps `(B, C, F, T)` are averaged over frequency to `(B, T, C)` and put on
one frame grid with the teacher `(B, T', D)` (`align`), by `recipe.alignment`:

- "authors" (default), the pairing of the authors' code: the sequence with the longer hop
  is repeated frame-wise (`repeat_interleave` by hop_t / hop_s, the factor they hard-coded:
  ×6 for a 0.96 s teacher against CP-ResNet's 0.16 s stages, the student ×2 for Mobile FCN's
  1.92 s stages against 0.96 s) and both are truncated to the shorter; a ratio that is not
  whole repeats frame k of the finer sequence at coarse frame ⌊k · ratio⌋. A clip-level
  teacher (`hop=None`) is repeated over the student frames that start within the whole
  0.96 s frames the student's span holds, their `teacher_expand`: 60 of CP-ResNet's 62 on
  OpenMIC (VGGish's 10 frames × 6), all 30 / 15 of Mobile FCN's on MTAT.
- "time": frames that cover the same audio are paired. Student frame k spans
  `[k, k + 1) · hop_s`; teacher frame t is centred `first_centre + t · hop_t` seconds into
  the clip (0 for a centred teacher) and spans a hop around it. Each frame of the finer
  sequence is paired with the frame of the other that holds its midpoint (a midpoint on a
  boundary goes to the later frame); frames with no partner are dropped. A clip-level
  teacher is repeated at every student frame. It differs from "authors" for the centred
  teachers (OpenL3, PaSST), whose frame t the authors pair with the student frames of
  `[t, t + 1) · 0.96 s`, half a window later than the audio it saw, and for PANNs on
  OpenMIC (62 frames, not 60).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from east_ray.catalog import STAGES, regularizer
from east_ray.catalog.resolve import resolve
from east_ray.config import RECIPE_CHOICES
from east_ray.models.common import StudentOutput


def at_least_f32(x: Tensor) -> Tensor:
    """Losses run in float32 even under bf16 autocast (float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` over entries where `mask` is True (0 when nothing is labelled)."""
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def masked_bce(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Binary cross-entropy of `logits` `(B, K)` against soft `labels`, labelled entries only."""
    bce = F.binary_cross_entropy_with_logits(
        at_least_f32(logits), at_least_f32(labels), reduction="none"
    )
    return masked_mean(bce, mask)


def kd_loss(
    student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None, temperature: float = 2.0
) -> Tensor:
    """τ² · mean of KL(Bern(σ(z_t/τ)) ‖ Bern(σ(z_s/τ))) over the entries where `mask` is
    True, or over all entries when `mask` is None; `(B, K)` each."""
    zs = at_least_f32(student_logits) / temperature
    zt = at_least_f32(teacher_logits) / temperature
    pt = torch.sigmoid(zt)
    kl = pt * (F.logsigmoid(zt) - F.logsigmoid(zs)) + (1 - pt) * (
        F.logsigmoid(-zt) - F.logsigmoid(-zs)
    )
    mean = kl.mean() if mask is None else masked_mean(kl, mask)
    return mean * temperature**2


def _double_centred_distances(x: Tensor) -> Tensor:
    """(..., B, D) → (..., B, B): pairwise Euclidean distances, double-centred."""
    # Exact differences (no |a|²+|b|²−2ab cancellation); the gradient at a zero distance is 0.
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    return d - d.mean(-1, keepdim=True) - d.mean(-2, keepdim=True) + d.mean((-2, -1), keepdim=True)


def distance_correlation_sqr(x: Tensor, y: Tensor) -> Tensor:
    """Squared distance correlation of `x` `(..., B, D)` and `y` `(..., B, E)` → `(...)`.

    Rows are samples; leading dimensions are batched. Biased (V-statistic) estimator, the
    value `dcor.distance_correlation_sqr` computes; 1e-9 in the denominator keeps constant
    inputs finite.
    """
    a = _double_centred_distances(at_least_f32(x))
    b = _double_centred_distances(at_least_f32(y))
    dcov_xy = (a * b).mean((-2, -1))
    dvar = (a * a).mean((-2, -1)) * (b * b).mean((-2, -1))
    return dcov_xy / torch.sqrt(dvar + 1e-9)


def dcor_loss(student_seq: Tensor, teacher_seq: Tensor) -> Tensor:
    """Mean over time of 1 − dCor² across the batch; aligned `(B, T, C)` and `(B, T, D)`."""
    r = distance_correlation_sqr(student_seq.transpose(0, 1), teacher_seq.transpose(0, 1))
    return (1.0 - r).mean()


def cos_diff_loss(student_seq: Tensor, teacher_seq: Tensor) -> Tensor:
    """Mean |S_s − S_t| of per-step cosine Gram matrices `(T, B, B)`; aligned sequences."""
    s = F.normalize(at_least_f32(student_seq), dim=-1).transpose(0, 1)
    t = F.normalize(at_least_f32(teacher_seq), dim=-1).transpose(0, 1)
    return (s @ s.transpose(-2, -1) - t @ t.transpose(-2, -1)).abs().mean()


def stage_sequence(feature_map: Tensor) -> Tensor:
    """A stage map `(B, C, F, T)` averaged over frequency → `(B, T, C)`."""
    return feature_map.mean(dim=2).transpose(1, 2)


_EPS = 1e-9  # 6 · 0.16 / 0.96 must give 1, not 0.99999…
AUTHORS_CLIP_GRID_SECONDS = 0.96  # the hop of the grid the authors sized PANNs' repeat by


class _Grid(NamedTuple):
    """`n` frames, frame i owning the seconds `[origin + i · hop, origin + (i + 1) · hop)`."""

    n: int
    hop: float
    origin: float


@functools.lru_cache(maxsize=256)  # the same few grids every step
def _frame_pairs(
    student: _Grid, teacher: _Grid, anchor: float
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Student and teacher frame of each aligned step: every frame of the finer grid, at
    `origin + (i + anchor) · hop`, with the frame of the coarser grid owning that time."""
    student_finer = student.hop <= teacher.hop
    fine, coarse = (student, teacher) if student_finer else (teacher, student)
    pairs = [
        (i, math.floor((fine.origin + (i + anchor) * fine.hop - coarse.origin) / coarse.hop + _EPS))
        for i in range(fine.n)
    ]
    fine_idx = tuple(i for i, j in pairs if 0 <= j < coarse.n)
    coarse_idx = tuple(j for _, j in pairs if 0 <= j < coarse.n)
    return (fine_idx, coarse_idx) if student_finer else (coarse_idx, fine_idx)


def _authors_clip_frames(n_s: int, student_hop: float) -> int:
    """How many student frames the authors paired with a clip-level teacher vector."""
    grid = AUTHORS_CLIP_GRID_SECONDS
    span = math.floor(n_s * student_hop / grid + _EPS) * grid
    return max(1, min(n_s, math.ceil(span / student_hop - _EPS)))


def _check_choice(name: str, value: str) -> None:
    """A named recipe option must be one of `RECIPE_CHOICES[name]`."""
    if value not in RECIPE_CHOICES[name]:
        raise ValueError(f"{name}: got {value!r}, expected one of {RECIPE_CHOICES[name]}")


def align(
    student_seq: Tensor,
    student_hop: float,
    teacher_seq: Tensor,
    teacher_hop: float | None,
    *,
    alignment: str = "authors",
    teacher_first_centre: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Put `(B, T_s, C)` and `(B, T_t, D)` on one frame grid → two `(B, T, ·)` tensors.

    `alignment`: "authors" or "time" (module docstring); `teacher_hop=None` marks a
    clip-level teacher. `teacher_first_centre`: seconds from the clip's start to the centre
    of teacher frame 0 (used by "time" only).
    """
    _check_choice("alignment", alignment)
    if student_hop <= 0:
        raise ValueError(f"student_hop: got {student_hop}, expected seconds > 0")
    n_s, n_t = student_seq.shape[1], teacher_seq.shape[1]
    if teacher_hop is None:
        if n_t != 1:
            raise ValueError(
                f"teacher_seq: got {n_t} frames for a clip-level teacher (teacher_hop=None), "
                "expected 1"
            )
        n = n_s if alignment == "time" else _authors_clip_frames(n_s, student_hop)
        return student_seq[:, :n], teacher_seq.expand(-1, n, -1)
    if teacher_hop <= 0:
        raise ValueError(f"teacher_hop: got {teacher_hop}, expected seconds > 0 or None")
    # "authors": both grids from 0, fine frames by their start; "time": teacher frames
    # around their centres, fine frames by their midpoint
    time = alignment == "time"
    teacher_origin = teacher_first_centre - teacher_hop / 2 if time else 0.0
    # Under torch.compile the pairs are traced once into constants of the graph: the cache
    # serves eager steps (dynamo would ignore it, with a warning).
    pairs = _frame_pairs.__wrapped__ if torch.compiler.is_compiling() else _frame_pairs
    s_idx, t_idx = pairs(
        _Grid(n_s, student_hop, 0.0), _Grid(n_t, teacher_hop, teacher_origin), 0.5 if time else 0.0
    )
    device = student_seq.device
    return (
        student_seq[:, torch.tensor(s_idx, device=device)],
        teacher_seq[:, torch.tensor(t_idx, device=device)],
    )


class RegInputs(NamedTuple):
    """What a regularizer's loss (its catalog row's `loss`) receives: the student's
    output, the label mask `(B, K)`, the system, the aligned (student, teacher) sequences
    of the chosen stages (`(B, T, C)`, `(B, T, D)`; empty unless the row reads the
    sequence) and the teacher's logits `(B, K)` (None unless it reads them)."""

    out: StudentOutput
    mask: Tensor
    spec: LossSpec
    pairs: list[tuple[Tensor, Tensor]]
    teacher_logits: Tensor | None


RegLoss = Callable[[RegInputs], Tensor]


@functools.cache
def _reg_loss(name: str) -> RegLoss | None:
    """The loss function a catalog row names (`"module:function"`; None for none)."""
    target = regularizer(name).loss
    if not target:
        return None
    loss: RegLoss = resolve(target)
    return loss


@dataclass(frozen=True)
class LossSpec:
    """Which EAsT system to train: regularizer, stage selection, λ and KD settings."""

    regularizer: str = "none"
    stage: str | None = None
    lam: float = 0.0
    kd_temperature: float = 2.0
    kd_weight_in_dcor_kd: float = 0.3
    kd_mask: str = "labelled"  # or "all"
    alignment: str = "authors"  # how teacher and student frames pair (module docstring)
    # the regularizer's loss, resolved here, outside any compiled region
    reg_loss: RegLoss | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        row = regularizer(self.regularizer)
        if row.uses_stage and self.stage not in STAGES:
            raise ValueError(
                f"stage: got {self.stage!r} for regularizer {self.regularizer!r}, "
                "expected 'final' or 'all'"
            )
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam: got {self.lam}, expected a number in [0, 1]")
        _check_choice("kd_mask", self.kd_mask)
        _check_choice("alignment", self.alignment)
        object.__setattr__(self, "reg_loss", _reg_loss(self.regularizer))


class LossTerms(NamedTuple):
    total: Tensor
    pred: Tensor
    reg: Tensor


def _stage_pairs(
    spec: LossSpec,
    stages: Sequence[Tensor],
    stage_hops: Sequence[float],
    teacher_seq: Tensor,
    *,
    teacher_hop: float | None,
    teacher_first_centre: float,
) -> list[tuple[Tensor, Tensor]]:
    """(student, teacher) sequences of the selected stages, each on one frame grid."""
    if len(stages) != len(stage_hops):
        raise ValueError(f"stage_hops: got {len(stage_hops)} hops for {len(stages)} stages")
    chosen = range(len(stages)) if spec.stage == "all" else [len(stages) - 1]
    return [
        align(
            stage_sequence(stages[i]),
            stage_hops[i],
            teacher_seq,
            teacher_hop,
            alignment=spec.alignment,
            teacher_first_centre=teacher_first_centre,
        )
        for i in chosen
    ]


def kd_reg(x: RegInputs) -> Tensor:
    """`kd`: KD toward the teacher's Teacher_LR logits."""
    assert x.teacher_logits is not None  # the row reads logits: east_loss checked
    kd_mask = x.mask if x.spec.kd_mask == "labelled" else None
    return kd_loss(x.out.logits, x.teacher_logits, kd_mask, x.spec.kd_temperature)


def on_stages(loss: Callable[[Tensor, Tensor], Tensor], x: RegInputs) -> Tensor:
    """`loss` of each selected stage's aligned (student, teacher) pair, equally weighted."""
    return torch.stack([loss(s, t) for s, t in x.pairs]).mean()


def dcor_reg(x: RegInputs) -> Tensor:
    """`dcor`: `dcor_loss` on the selected stages."""
    return on_stages(dcor_loss, x)


def cos_diff_reg(x: RegInputs) -> Tensor:
    """`cos_diff`: `cos_diff_loss` on the selected stages."""
    return on_stages(cos_diff_loss, x)


def dcor_kd_reg(x: RegInputs) -> Tensor:
    """`dcor_kd`: `w·KD + (1 − w)·dcor`, w = `kd_weight_in_dcor_kd`."""
    w = x.spec.kd_weight_in_dcor_kd
    return w * kd_reg(x) + (1 - w) * dcor_reg(x)


def east_loss(
    out: StudentOutput,
    labels: Tensor,
    mask: Tensor,
    spec: LossSpec,
    *,
    stage_hops: Sequence[float] = (),
    teacher_seqs: Sequence[Tensor] = (),
    teacher_hops: Sequence[float | None] = (),
    teacher_first_centres: Sequence[float] = (),
    teacher_weights: Sequence[float] = (),
    teacher_logits: Tensor | None = None,
) -> LossTerms:
    """The composite loss of one batch for the system `spec` describes.

    `labels`/`mask` `(B, K)`; `teacher_seqs`, one `(B, T', D)` per teacher of the cell (a
    set has several), for a regularizer that reads the sequence, `teacher_logits` `(B, K)`
    for one that reads logits (its catalog row); `stage_hops` are the stage hops in
    seconds; each teacher's `teacher_hops` and `teacher_first_centres` (default 0) place
    its frames (`align`). With several teachers, `L_reg` is the mean of each one's, or
    their sum weighted by `teacher_weights` (summing to 1).
    """
    pred = masked_bce(out.logits, labels, mask)
    row = regularizer(spec.regularizer)
    if row.reads_logits and teacher_logits is None:
        raise ValueError(f"teacher_logits: required for regularizer {row.name!r}, got None")
    if row.reads_sequence and not teacher_seqs:
        raise ValueError(f"teacher_seqs: required for regularizer {row.name!r}, got none")
    if row.reads_sequence and len(teacher_hops) != len(teacher_seqs):
        raise ValueError(f"teacher_hops: got {len(teacher_hops)} for {len(teacher_seqs)} teachers")
    if spec.reg_loss is None:
        reg = torch.zeros((), device=pred.device)
    elif not row.reads_sequence:
        reg = spec.reg_loss(RegInputs(out, mask, spec, [], teacher_logits))
    else:
        centres = teacher_first_centres or [0.0] * len(teacher_seqs)
        per_teacher = [
            spec.reg_loss(
                RegInputs(
                    out,
                    mask,
                    spec,
                    _stage_pairs(
                        spec, out.stages, stage_hops, seq, teacher_hop=hop, teacher_first_centre=c
                    ),
                    teacher_logits,
                )
            )
            for seq, hop, c in zip(teacher_seqs, teacher_hops, centres, strict=True)
        ]
        if len(per_teacher) == 1:
            reg = per_teacher[0]
        elif teacher_weights:
            weights = torch.tensor(teacher_weights, device=pred.device)
            reg = (weights * torch.stack(per_teacher)).sum()
        else:
            reg = torch.stack(per_teacher).mean()
    total = (1 - spec.lam) * pred + spec.lam * reg
    return LossTerms(total, pred, reg)
