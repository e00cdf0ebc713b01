"""The distance measures (`east_ray.distances`) against references written here from the
papers' formulas (numpy, float64, plain loops), their values on degenerate batches, their
gradients, and their rows in the catalog."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from east_ray.catalog import REGULARIZERS, regularizer
from east_ray.distances import cka_loss, pkt_loss, rkd_angle_loss, rkd_distance_loss
from east_ray.errors import UnknownNameError
from east_ray.losses import LossSpec, align, east_loss, stage_sequence
from east_ray.models import build_student
from east_ray.models.hint import HintedStudent

Measure = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _huber(a: float) -> float:
    return 0.5 * a * a if abs(a) < 1.0 else abs(a) - 0.5


def cka_reference(x: np.ndarray, y: np.ndarray) -> float:
    """1 − ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), features centred (Kornblith et al., eq. 4)."""
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    num = np.linalg.norm(y.T @ x) ** 2
    return float(1.0 - num / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def _psi_d(x: np.ndarray) -> dict[tuple[int, int], float]:
    b = len(x)
    d = {(i, j): float(np.linalg.norm(x[i] - x[j])) for i in range(b) for j in range(b) if i != j}
    mu = sum(d.values()) / len(d)
    return {k: v / mu for k, v in d.items()}


def rkd_distance_reference(x: np.ndarray, y: np.ndarray) -> float:
    ps, pt = _psi_d(x), _psi_d(y)
    return float(np.mean([_huber(ps[k] - pt[k]) for k in ps]))


def _psi_a(x: np.ndarray) -> np.ndarray:
    b = len(x)
    out = np.zeros((b, b, b))
    for j in range(b):
        for i in range(b):
            for k in range(b):
                if j in {i, k}:
                    continue
                e_ji = (x[i] - x[j]) / np.linalg.norm(x[i] - x[j])
                e_jk = (x[k] - x[j]) / np.linalg.norm(x[k] - x[j])
                out[j, i, k] = e_ji @ e_jk
    return out


def rkd_angle_reference(x: np.ndarray, y: np.ndarray) -> float:
    diff = _psi_a(x) - _psi_a(y)
    return float(np.mean([_huber(v) for v in diff.ravel()]))


def _pkt_probabilities(x: np.ndarray) -> np.ndarray:
    b = len(x)
    k = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            cos = x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
            k[i, j] = (cos + 1) / 2
    return k / k.sum(axis=1, keepdims=True)


def pkt_reference(x: np.ndarray, y: np.ndarray) -> float:
    p, q = _pkt_probabilities(x), _pkt_probabilities(y)
    return float(
        np.mean(
            [sum(q[i, j] * np.log(q[i, j] / p[i, j]) for j in range(len(x))) for i in range(len(x))]
        )
    )


MEASURES: dict[str, tuple[Measure, Callable[[np.ndarray, np.ndarray], float]]] = {
    "cka": (cka_loss, cka_reference),
    "rkd_d": (rkd_distance_loss, rkd_distance_reference),
    "rkd_a": (rkd_angle_loss, rkd_angle_reference),
    "pkt": (pkt_loss, pkt_reference),
}


def _pair(
    b: int, t: int = 3, c: int = 5, d: int = 7, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(b, t, c, generator=gen, dtype=torch.float64)
    teacher = torch.randn(b, t, d, generator=gen, dtype=torch.float64)
    return s, teacher


@pytest.mark.parametrize("name", sorted(MEASURES))
@pytest.mark.parametrize("batch", [2, 4, 16])
def test_each_measure_equals_its_float64_reference(name: str, batch: int) -> None:
    measure, reference = MEASURES[name]
    s, t = _pair(batch)
    expected = np.mean([reference(s[:, k].numpy(), t[:, k].numpy()) for k in range(s.shape[1])])
    got = float(measure(s, t))
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_gradients_are_finite_at_batch_two_and_on_constant_features(name: str) -> None:
    measure, _ = MEASURES[name]
    s, t = _pair(2)
    for student in (s, torch.ones_like(s), torch.zeros_like(s)):
        leaf = student.clone().float().requires_grad_(True)
        value = measure(leaf, t.float())
        value.backward()
        assert torch.isfinite(value) and leaf.grad is not None
        assert torch.isfinite(leaf.grad).all()


def test_constant_features_have_defined_values() -> None:
    s, t = _pair(4)
    same = torch.ones_like(s)
    # nothing to align with: CKA is 0 (loss 1); equal constant batches agree exactly
    assert float(cka_loss(same, t)) == pytest.approx(1.0)
    for measure in (rkd_distance_loss, rkd_angle_loss, pkt_loss):
        assert float(measure(same, torch.ones_like(t))) == pytest.approx(0.0, abs=1e-12)
        assert torch.isfinite(measure(same, t))


def test_invariances_the_papers_state() -> None:
    """CKA: invariant to rotation and scale; RKD: to scale (ψ_D is over the mean distance,
    angles have no scale); PKT: to per-sample scale (cosine kernel)."""
    s, t = _pair(8)
    q, _ = torch.linalg.qr(
        torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    )
    rotated = 3.0 * s @ q
    for measure in (cka_loss, rkd_distance_loss, rkd_angle_loss):
        assert float(measure(rotated, t)) == pytest.approx(float(measure(s, t)), rel=1e-9)
    scales = 0.5 + torch.rand(
        8, 3, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(4)
    )
    assert float(pkt_loss(s * scales, t)) == pytest.approx(float(pkt_loss(s, t)), rel=1e-9)
    # a teacher that is the student, up to rotation and scale: every measure at its minimum
    assert float(cka_loss(s, rotated)) == pytest.approx(0.0, abs=1e-9)
    assert float(rkd_distance_loss(s, rotated)) == pytest.approx(0.0, abs=1e-12)


def test_an_unknown_measure_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="cka, rkd_d, rkd_a, pkt"):
        regularizer("hsic")
    for name in MEASURES:  # each reads the teacher's sequence at a stage, as dCor does
        row = REGULARIZERS[name]
        assert row.reads_sequence and not row.reads_logits and row.uses_stage


@pytest.mark.parametrize("stage", ["final", "all"])
def test_fitnet_pulls_the_projected_stages_toward_the_teacher(stage: str) -> None:
    student = build_student("cp_resnet", 5, seed=0, base_channels=4)
    hinted = HintedStudent(student, 7, 40, seed=0)
    x = torch.randn(4, 40, 160, generator=torch.Generator().manual_seed(6))
    out = hinted(x)
    teacher = torch.randn(4, 2, 7, generator=torch.Generator().manual_seed(7))
    spec = LossSpec(regularizer="fitnet", stage=stage, lam=0.5)
    hops = [0.16] * len(out.stages)
    labels = torch.zeros(4, 5)
    terms = east_loss(
        out,
        labels,
        torch.ones(4, 5),
        spec,
        stage_hops=hops,
        teacher_seqs=[teacher],
        teacher_hops=[0.96],
    )
    chosen = out.stages if stage == "all" else out.stages[-1:]
    pairs = [align(stage_sequence(m), 0.16, teacher, 0.96) for m in chosen]
    expected = torch.stack([((s - t) ** 2).mean() for s, t in pairs]).mean()
    torch.testing.assert_close(terms.reg, expected)
    terms.total.backward()  # the projections learn from the hint
    trained = hinted.hints if stage == "all" else hinted.hints[-1:]
    assert all(h.weight.grad is not None and h.weight.grad.abs().sum() > 0 for h in trained)
    with pytest.raises(ValueError, match="must be a HintedStudent"):
        east_loss(
            student(x),
            labels,
            torch.ones(4, 5),
            spec,
            stage_hops=hops,
            teacher_seqs=[teacher],
            teacher_hops=[0.96],
        )
