"""Distance measures from the knowledge-distillation literature as EAsT regularizers: each
compares the student's and the teacher's batch at every aligned time step, exactly where
dCor and Cos-Diff do (`east_ray.losses`: the same stages, frame alignment, λ weighting and
label masking, which no sequence regularizer reads), and averages over the steps.

Each measure takes aligned `(B, T, C)` and `(B, T, D)` sequences and returns a scalar
loss; all are relational (they compare samples within the batch), so the student and the
teacher need not share a dimension. A batch whose features are all equal has a defined
value (the 1e-9 in each denominator; never NaN), and the gradients stay finite.

- `cka_loss`: 1 − linear CKA (centred kernel alignment; Kornblith, Norouzi, Lee & Hinton,
  "Similarity of neural network representations revisited", ICML 2019).
- `rkd_distance_loss`, `rkd_angle_loss`: relational KD's distance and angle terms (Park,
  Kim, Lu & Cho, "Relational knowledge distillation", CVPR 2019).
- `pkt_loss`: probabilistic knowledge transfer (Passalis & Tefas, "Learning deep
  representations with probabilistic knowledge transfer", ECCV 2018).
- `hint_loss`: FitNet's hint (Romero et al., "FitNets: hints for thin deep nets", ICLR
  2015): the mean squared difference between the student's features, projected onto the
  teacher's dimension by a learned linear map (`east_ray.models.hint`: trained with the
  student, dropped at inference), and the teacher's. Not relational: it needs the
  projection, which the `fitnet` row's `hint` makes the trainer add.

The `*_reg` functions are the catalog rows' losses (one `RegInputs` in, `L_reg` out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from east_ray.losses import RegInputs, at_least_f32, on_stages

EPS = 1e-9


def _steps(x: Tensor) -> Tensor:
    """`(B, T, C)` → `(T, B, C)`, at least float32: one batch per time step."""
    return at_least_f32(x).transpose(0, 1)


def _centred_gram(x: Tensor) -> Tensor:
    """`(..., B, C)` → `(..., B, B)`: the Gram matrix of the batch centred over samples."""
    centred = x - x.mean(-2, keepdim=True)
    return centred @ centred.transpose(-2, -1)


def linear_cka(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA of `x` `(..., B, C)` and `y` `(..., B, D)` → `(...)`.

    With `K_x = X̄X̄ᵀ`, `K_y = ȲȲᵀ` (X̄ centred over the batch), CKA = ⟨K_x, K_y⟩_F /
    √(‖K_x‖²_F ‖K_y‖²_F + 1e-9): 1 when one representation is a scaled rotation of the
    other, 0 when a batch's features are all equal.
    """
    kx, ky = _centred_gram(x), _centred_gram(y)
    hsic = (kx * ky).sum((-2, -1))
    return hsic / torch.sqrt((kx * kx).sum((-2, -1)) * (ky * ky).sum((-2, -1)) + EPS)


def cka_loss(student_seq: Tensor, teacher_seq: Tensor) -> Tensor:
    """Mean over time of 1 − linear CKA across the batch."""
    return (1.0 - linear_cka(_steps(student_seq), _steps(teacher_seq))).mean()


def _normalised_distances(x: Tensor) -> Tensor:
    """`(..., B, C)` → `(..., B, B)`: pairwise Euclidean distances over their mean across
    the B(B − 1) pairs of distinct samples (RKD's ψ_D)."""
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # gradient 0 at 0
    b = x.shape[-2]
    mean = d.sum((-2, -1), keepdim=True) / max(b * (b - 1), 1)
    return d / (mean + EPS)


def _off_diagonal(b: int, device: torch.device) -> Tensor:
    return ~torch.eye(b, dtype=torch.bool, device=device)


def rkd_distance_loss(student_seq: Tensor, teacher_seq: Tensor) -> Tensor:
    """RKD-D: mean over time and over pairs i ≠ j of Huber(ψ_D(s_i, s_j) − ψ_D(t_i, t_j)),
    ψ_D the distance over the batch's mean distance, Huber's δ = 1 (as Park et al.)."""
    s, t = _steps(student_seq), _steps(teacher_seq)
    ds, dt = _normalised_distances(s), _normalised_distances(t)
    pairs = _off_diagonal(s.shape[-2], s.device)
    return F.smooth_l1_loss(ds[:, pairs], dt[:, pairs], beta=1.0)


def _angles(x: Tensor) -> Tensor:
    """`(..., B, C)` → `(..., B, B, B)`: entry (j, i, k) is the cosine of the angle at x_j
    between x_i and x_k, ⟨e_ji, e_jk⟩ with e_ji the unit vector from x_j to x_i (0 where
    i = j, or where two samples coincide)."""
    e = F.normalize(x.unsqueeze(-3) - x.unsqueeze(-2), dim=-1)  # (..., j, i, C)
    return e @ e.transpose(-2, -1)


def rkd_angle_loss(student_seq: Tensor, teacher_seq: Tensor) -> Tensor:
    """RKD-A: mean over time and over all triplets (j, i, k) of Huber(ψ_A(s) − ψ_A(t)),
    ψ_A the cosine of the angle at the middle sample (`_angles`), Huber's δ = 1."""
    s, t = _steps(student_seq), _steps(teacher_seq)
    return F.smooth_l1_loss(_angles(s), _angles(t), beta=1.0)


def _conditional_probabilities(x: Tensor) -> Tensor:
    """`(..., B, C)` → `(..., B, B)`: row i is P(j | i) ∝ (cos(x_i, x_j) + 1) / 2, the
    cosine kernel of PKT normalised over j."""
    unit = F.normalize(x, dim=-1)
    kernel = (unit @ unit.transpose(-2, -1) + 1.0) / 2.0
    return kernel / (kernel.sum(-1, keepdim=True) + EPS)


def pkt_loss(student_seq: Tensor, teacher_seq: Tensor) -> Tensor:
    """PKT: mean over time and over samples i of KL(Q_i ‖ P_i) = Σ_j q_ij log(q_ij / p_ij),
    Q the teacher's and P the student's conditional probabilities (1e-9 added to both)."""
    p = _conditional_probabilities(_steps(student_seq))
    q = _conditional_probabilities(_steps(teacher_seq))
    return (q * torch.log((q + EPS) / (p + EPS))).sum(-1).mean()


def hint_loss(student_seq: Tensor, teacher_seq: Tensor) -> Tensor:
    """FitNet: mean over steps, samples and dimensions of (W s + b − t)², the student's
    sequence already projected (`(B, T, D)` against `(B, T, D)`)."""
    if student_seq.shape[-1] != teacher_seq.shape[-1]:
        raise ValueError(
            f"hint_loss: the student's features have {student_seq.shape[-1]} values, the "
            f"teacher's {teacher_seq.shape[-1]}; the student must be a HintedStudent"
        )
    return F.mse_loss(_steps(student_seq), _steps(teacher_seq))


def cka_reg(x: RegInputs) -> Tensor:
    """`cka`: `cka_loss` on the selected stages."""
    return on_stages(cka_loss, x)


def rkd_distance_reg(x: RegInputs) -> Tensor:
    """`rkd_d`: `rkd_distance_loss` on the selected stages."""
    return on_stages(rkd_distance_loss, x)


def rkd_angle_reg(x: RegInputs) -> Tensor:
    """`rkd_a`: `rkd_angle_loss` on the selected stages."""
    return on_stages(rkd_angle_loss, x)


def pkt_reg(x: RegInputs) -> Tensor:
    """`pkt`: `pkt_loss` on the selected stages."""
    return on_stages(pkt_loss, x)


def fitnet_reg(x: RegInputs) -> Tensor:
    """`fitnet`: `hint_loss` on the selected stages (each with its own projection)."""
    return on_stages(hint_loss, x)
