"""The EAsT losses against reference implementations and their defining properties."""

import dcor
import numpy as np
import pytest
import torch

from east_ray.catalog import REGULARIZERS
from east_ray.config import SYSTEMS
from east_ray.distances import cka_loss, pkt_loss, rkd_angle_loss, rkd_distance_loss
from east_ray.losses import (
    LossSpec,
    align,
    cos_diff_loss,
    dcor_loss,
    distance_correlation_sqr,
    east_loss,
    kd_loss,
    masked_bce,
)
from east_ray.models import StudentOutput


def _rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_rotation(dim: int, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    return q


@pytest.mark.parametrize(
    "case", ["random", "linear", "nonlinear", "independent_dims", "heavy_tailed"]
)
def test_distance_correlation_sqr_matches_dcor_package(case: str) -> None:
    gen = _rng(1)
    x = torch.randn(32, 7, generator=gen, dtype=torch.float64)
    if case == "random":
        y = torch.randn(32, 5, generator=gen, dtype=torch.float64)
    elif case == "linear":
        y = x @ torch.randn(7, 3, generator=gen, dtype=torch.float64)
    elif case == "nonlinear":
        y = torch.cat([x**2, torch.sin(3 * x)], dim=1)
    elif case == "independent_dims":
        y = torch.cat([x[:, :1], torch.randn(32, 4, generator=gen, dtype=torch.float64)], 1)
    else:
        y = torch.distributions.StudentT(1.5).sample((32, 4)).double()
    ours = distance_correlation_sqr(x, y).item()
    ref = dcor.distance_correlation_sqr(x.numpy(), y.numpy())
    assert ours == pytest.approx(ref, abs=1e-6)


def test_distance_correlation_sqr_is_batched_over_leading_dims() -> None:
    gen = _rng(2)
    x = torch.randn(5, 16, 8, generator=gen, dtype=torch.float64)
    y = torch.randn(5, 16, 3, generator=gen, dtype=torch.float64)
    batched = distance_correlation_sqr(x, y)
    assert batched.shape == (5,)
    for t in range(5):
        ref = dcor.distance_correlation_sqr(x[t].numpy(), y[t].numpy())
        assert batched[t].item() == pytest.approx(ref, abs=1e-6)


def test_dcor_loss_is_zero_for_rotated_and_scaled_teacher_and_invariant() -> None:
    gen = _rng(3)
    student = torch.randn(16, 6, 12, generator=gen, dtype=torch.float64)  # (B, T, C)
    rot = _random_rotation(12, gen)
    teacher = 3.5 * student @ rot + 0.7  # rotation, scaling and shift of the student
    assert dcor_loss(student, teacher).item() == pytest.approx(0.0, abs=1e-6)
    unrelated = torch.randn(16, 6, 20, generator=gen, dtype=torch.float64)
    base = dcor_loss(student, unrelated).item()
    assert base > 0.05
    transformed = 0.2 * unrelated @ _random_rotation(20, gen) - 4.0
    assert dcor_loss(student, transformed).item() == pytest.approx(base, abs=1e-6)


def test_dcor_loss_depends_on_each_time_step_separately() -> None:
    gen = _rng(4)
    student = torch.randn(8, 2, 4, generator=gen, dtype=torch.float64)
    teacher = student.clone()
    teacher[:, 1] = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    r1 = dcor.distance_correlation_sqr(student[:, 1].numpy(), teacher[:, 1].numpy())
    assert dcor_loss(student, teacher).item() == pytest.approx((0 + (1 - r1)) / 2, abs=1e-6)


def test_gradients_finite_with_two_identical_rows() -> None:
    gen = _rng(5)
    student = torch.randn(8, 3, 6, generator=gen)
    student[1] = student[0]
    student.requires_grad_(True)
    teacher = torch.randn(8, 3, 4, generator=gen)
    teacher[1] = teacher[0]
    for loss_fn in (dcor_loss, cos_diff_loss):
        (grad,) = torch.autograd.grad(loss_fn(student, teacher), student)
        assert torch.isfinite(grad).all(), loss_fn.__name__
        assert grad.abs().sum() > 0


def test_cos_diff_loss_matches_definition_and_is_zero_for_rotation() -> None:
    gen = _rng(6)
    s = torch.randn(5, 3, 4, generator=gen, dtype=torch.float64)
    t = torch.randn(5, 3, 9, generator=gen, dtype=torch.float64)
    expected = 0.0
    for step in range(3):
        for i in range(5):
            for j in range(5):
                cs = torch.nn.functional.cosine_similarity(s[i, step], s[j, step], dim=0)
                ct = torch.nn.functional.cosine_similarity(t[i, step], t[j, step], dim=0)
                expected += abs(cs.item() - ct.item())
    assert cos_diff_loss(s, t).item() == pytest.approx(expected / 75, abs=1e-9)
    rotated = 2.0 * s @ _random_rotation(4, gen)
    assert cos_diff_loss(s, rotated).item() == pytest.approx(0.0, abs=1e-9)


def test_masked_bce_ignores_unlabelled_entries() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[True, False], [True, False]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], labels[:, 0])
    assert masked_bce(logits, labels, mask).item() == pytest.approx(expected.item())
    wild = logits.clone()
    wild[:, 1] = 1e4  # unlabelled entries must not matter, however wrong
    assert masked_bce(wild, labels, mask).item() == pytest.approx(expected.item())


def test_kd_loss_is_scaled_masked_binary_kl() -> None:
    gen = _rng(7)
    zs, zt = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    mask = torch.rand(4, 3, generator=gen) > 0.3
    tau = 2.0
    ps, pt = torch.sigmoid(zs / tau), torch.sigmoid(zt / tau)
    kl = pt * torch.log(pt / ps) + (1 - pt) * torch.log((1 - pt) / (1 - ps))
    expected = kl[mask].mean() * tau**2
    assert kd_loss(zs, zt, mask, tau).item() == pytest.approx(expected.item(), rel=1e-5)
    assert kd_loss(zt, zt, mask, tau).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("regularizer", ["kd", "dcor_kd"])
def test_kd_mask_all_averages_over_every_entry(regularizer: str) -> None:
    """kd_mask "labelled": KD over the labelled entries; "all": over every entry, so the two
    differ by exactly the unlabelled entries' KL, and agree when everything is labelled."""
    gen = _rng(10)
    out = _toy_output(gen)
    t_logits = torch.randn(8, 5, generator=gen)
    teacher = torch.randn(8, 2, 16, generator=gen)
    labels = torch.zeros(8, 5)
    mask = torch.rand(8, 5, generator=gen) > 0.4
    stage = "final" if regularizer == "dcor_kd" else None

    def reg(kd_mask: str, m: torch.Tensor) -> float:
        spec = LossSpec(regularizer, stage, 0.5, kd_mask=kd_mask)
        terms = east_loss(
            out,
            labels,
            m,
            spec,
            stage_hops=(0.16,) * 3,
            teacher_seqs=[teacher],
            teacher_hops=[0.96],
            teacher_logits=t_logits,
        )
        return terms.reg.item()

    every = torch.ones_like(mask)
    w = 1.0 if regularizer == "kd" else 0.3  # KD's share of L_reg
    labelled, everywhere = kd_loss(out.logits, t_logits, mask), kd_loss(out.logits, t_logits, None)
    assert everywhere.item() == pytest.approx(kd_loss(out.logits, t_logits, every).item())
    assert reg("all", mask) - reg("labelled", mask) == pytest.approx(
        w * (everywhere - labelled).item(), rel=1e-5
    )
    assert abs(everywhere - labelled).item() > 1e-3
    assert reg("all", every) == pytest.approx(reg("labelled", every))
    with pytest.raises(ValueError, match="kd_mask: got 'some'"):
        LossSpec("kd", None, 0.5, kd_mask="some")


# The authors' pairing, from their released configs (config/<dataset>/east_final_<teacher>.json,
# "stages_args": student_expand / teacher_expand per stage) and their teachers' frame counts:
# both sequences are repeated frame-wise by those factors, then truncated to the shorter.
# (student frames, stage hop in s, student_expand) per stage:
AUTHORS_STAGES = {
    "openmic": [(62, 0.16, 1)] * 3,  # CP-ResNet, 10 s: every stage 8 × 62
    "magnatagatune": [(30, 0.96, 1), (15, 1.92, 2), (15, 1.92, 2)],  # Mobile FCN, 29.1 s
}
# teacher → (frames a clip, hop in s, teacher_expand per stage), per dataset
AUTHORS_TEACHERS = {
    "openmic": {
        "vggish": (10, 0.96, [6, 6, 6]),
        "openl3": (11, 0.96, [6, 6, 6]),  # centred: 11 frames for 10 s
        "passt": (11, 0.96, [6, 6, 6]),
        "panns": (1, None, [60, 60, 60]),
    },
    "magnatagatune": {
        "vggish": (30, 0.96, [1, 1, 1]),
        "openl3": (31, 0.96, [1, 1, 1]),  # centred: 31 frames for 29.1 s
        "passt": (31, 0.96, [1, 1, 1]),
        "panns": (1, None, [30, 15, 15]),  # and student_expand 1 on every stage
    },
}
AUTHORS_CASES = [
    (dataset, teacher, stage)
    for dataset, teachers in AUTHORS_TEACHERS.items()
    for teacher in teachers
    for stage in range(3)
]


def _repeat_and_truncate(
    student: torch.Tensor, s_expand: int, teacher: torch.Tensor, t_expand: int
) -> tuple[torch.Tensor, torch.Tensor]:
    s = student.repeat_interleave(s_expand, dim=1)
    t = teacher.repeat_interleave(t_expand, dim=1)
    length = min(s.shape[1], t.shape[1])
    return s[:, :length], t[:, :length]


def _frame_ids(n: int) -> torch.Tensor:
    """A sequence `(1, n, 1)` whose frame i holds i: aligned values are frame indices."""
    return torch.arange(n, dtype=torch.float64).view(1, n, 1)


@pytest.mark.parametrize(("dataset", "teacher", "stage"), AUTHORS_CASES)
def test_default_alignment_is_the_authors_pairing(dataset: str, teacher: str, stage: int) -> None:
    n_s, hop_s, s_expand = AUTHORS_STAGES[dataset][stage]
    n_t, hop_t, t_expands = AUTHORS_TEACHERS[dataset][teacher]
    if hop_t is None:  # their clip-level PANNs never repeats the student
        s_expand = 1
    student, teach = _frame_ids(n_s), _frame_ids(n_t)
    s, t = align(student, hop_s, teach, hop_t)
    ref_s, ref_t = _repeat_and_truncate(student, s_expand, teach, t_expands[stage])
    assert torch.equal(s, ref_s) and torch.equal(t, ref_t)


def test_authors_pairing_lengths() -> None:
    """The table of the report: aligned steps per dataset, teacher and stage."""
    lengths = {
        (dataset, teacher): [
            align(_frame_ids(n_s), hop_s, _frame_ids(n_t), hop_t)[0].shape[1]
            for n_s, hop_s, _ in AUTHORS_STAGES[dataset]
        ]
        for dataset, teachers in AUTHORS_TEACHERS.items()
        for teacher, (n_t, hop_t, _) in teachers.items()
    }
    assert lengths == {
        ("openmic", "vggish"): [60, 60, 60],
        ("openmic", "openl3"): [62, 62, 62],
        ("openmic", "passt"): [62, 62, 62],
        ("openmic", "panns"): [60, 60, 60],
        ("magnatagatune", "vggish"): [30, 30, 30],
        ("magnatagatune", "openl3"): [30, 30, 30],
        ("magnatagatune", "passt"): [30, 30, 30],
        ("magnatagatune", "panns"): [30, 15, 15],
    }


def test_align_non_integer_ratio_and_clip_level() -> None:
    student = torch.arange(62.0).view(1, 62, 1)
    teacher = torch.arange(4.0).view(1, 4, 1)  # musicnn: 3 s hop against 0.16 s
    s, t = align(student, 0.16, teacher, 3.0)
    assert s.shape[1] == 62
    assert t[0, :, 0].tolist() == [min(int(k * 0.16 / 3.0 + 1e-9), 3) for k in range(62)]
    clip = torch.randn(2, 1, 5)
    s, t = align(torch.randn(2, 7, 3), 0.16, clip, None)
    assert t.shape == (2, 6, 5) and torch.equal(t[:, 3], clip[:, 0])  # the 0.96 s in 1.12 s
    s, t = align(torch.randn(2, 7, 3), 0.16, clip, None, alignment="time")
    assert t.shape == (2, 7, 5)  # "time": every student frame
    with pytest.raises(ValueError, match="teacher_seq: got 3 frames"):
        align(torch.randn(2, 7, 3), 0.16, torch.randn(2, 3, 5), None)
    with pytest.raises(ValueError, match="alignment: got 'hops'"):
        align(student, 0.16, teacher, 3.0, alignment="hops")


# (student frames, stage hop, teacher frames, teacher hop, first centre): CP-ResNet and
# Mobile FCN stages against centred (OpenL3, PaSST), start-framed (VGGish: a .975 s window)
# and musicnn-like teachers
TIME_CASES = [
    (62, 0.16, 11, 0.96, 0.0),
    (62, 0.16, 10, 0.96, 0.4875),
    (30, 0.96, 31, 0.96, 0.0),
    (30, 0.96, 30, 0.96, 0.4875),
    (15, 1.92, 31, 0.96, 0.0),
    (62, 0.16, 3, 2.992, 1.488),
]


@pytest.mark.parametrize(("n_s", "hop_s", "n_t", "hop_t", "centre"), TIME_CASES)
def test_time_alignment_pairs_frames_covering_the_same_audio(
    n_s: int, hop_s: float, n_t: int, hop_t: float, centre: float
) -> None:
    s, t = align(
        _frame_ids(n_s),
        hop_s,
        _frame_ids(n_t),
        hop_t,
        alignment="time",
        teacher_first_centre=centre,
    )
    pairs = list(zip(s[0, :, 0].long().tolist(), t[0, :, 0].long().tolist(), strict=True))
    student_mid = [(k + 0.5) * hop_s for k, _ in pairs]
    teacher_mid = [centre + j * hop_t for _, j in pairs]
    # the finer frame's midpoint lies in the coarser frame it is paired with
    half = max(hop_s, hop_t) / 2
    assert all(abs(a - b) <= half + 1e-9 for a, b in zip(student_mid, teacher_mid, strict=True))
    fine = [k for k, _ in pairs] if hop_s <= hop_t else [j for _, j in pairs]
    assert fine == sorted(set(fine))  # each finer frame at most once, in order
    n_fine = n_s if hop_s <= hop_t else n_t
    dropped = set(range(n_fine)) - set(fine)
    if hop_s <= hop_t:  # a student frame is dropped only past the teacher's frames
        assert all((k + 0.5) * hop_s > centre + (n_t - 0.5) * hop_t - 1e-9 for k in dropped)
    else:
        assert all(centre + j * hop_t >= n_s * hop_s - 1e-9 for j in dropped)


def test_time_alignment_differs_from_the_authors_for_centred_teachers() -> None:
    student, teacher = _frame_ids(62), _frame_ids(11)
    _, t = align(student, 0.16, teacher, 0.96, alignment="time")
    # student frame k (midpoint .16 k + .08 s) pairs with OpenL3's frame centred nearest
    assert t[0, :, 0].long().tolist() == [(k + 3) // 6 for k in range(62)]
    _, t = align(student, 0.16, teacher, 0.96)
    assert t[0, :, 0].long().tolist() == [k // 6 for k in range(62)]


def _toy_output(gen: torch.Generator, batch: int = 8) -> StudentOutput:
    stages = [torch.randn(batch, c, 2, 12, generator=gen) for c in (4, 6, 8)]
    return StudentOutput(torch.randn(batch, 5, generator=gen), stages)


DISTANCES = {
    "cka": cka_loss,
    "rkd_d": rkd_distance_loss,
    "rkd_a": rkd_angle_loss,
    "pkt": pkt_loss,
}


# every system whose loss reads the student's own stage maps (a hint regularizer's reads
# its projections: tests/test_distances.py)
@pytest.mark.parametrize(
    ("regularizer", "stage"), [(r, s) for r, s in SYSTEMS if not REGULARIZERS[r].hint]
)
def test_east_loss_composes_each_system(regularizer: str, stage: str | None) -> None:
    gen = _rng(8)
    out = _toy_output(gen)
    labels = (torch.rand(8, 5, generator=gen) > 0.5).float()
    mask = torch.rand(8, 5, generator=gen) > 0.2
    teacher = torch.randn(8, 2, 16, generator=gen)
    t_logits = torch.randn(8, 5, generator=gen)
    lam = 0.0 if regularizer == "none" else 0.7
    spec = LossSpec(regularizer, stage, lam)
    terms = east_loss(
        out,
        labels,
        mask,
        spec,
        stage_hops=(0.16, 0.16, 0.16),
        teacher_seqs=[teacher],
        teacher_hops=[0.96],
        teacher_logits=t_logits,
    )
    assert terms.total.item() == pytest.approx(
        ((1 - lam) * terms.pred + lam * terms.reg).item(), rel=1e-6
    )
    assert terms.pred.item() == pytest.approx(masked_bce(out.logits, labels, mask).item())
    chosen = range(3) if stage == "all" else [2]
    seq = [align(out.stages[i].mean(2).transpose(1, 2), 0.16, teacher, 0.96) for i in chosen]
    kd = kd_loss(out.logits, t_logits, mask).item()
    expected = {
        "none": 0.0,
        "kd": kd,
        "cos_diff": np.mean([cos_diff_loss(s, t).item() for s, t in seq]),
        "dcor": np.mean([dcor_loss(s, t).item() for s, t in seq]),
        "dcor_kd": 0.3 * kd + 0.7 * np.mean([dcor_loss(s, t).item() for s, t in seq]),
        **{
            name: np.mean([measure(s, t).item() for s, t in seq])
            for name, measure in DISTANCES.items()
        },
    }[regularizer]
    assert terms.reg.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_east_loss_names_missing_teacher_inputs() -> None:
    out = _toy_output(_rng(9))
    labels, mask = torch.zeros(8, 5), torch.ones(8, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="teacher_logits: required for regularizer 'kd'"):
        east_loss(out, labels, mask, LossSpec("kd", None, 0.5))
    with pytest.raises(ValueError, match="teacher_seqs: required for regularizer 'dcor'"):
        east_loss(out, labels, mask, LossSpec("dcor", "final", 0.5), stage_hops=(1, 1, 1))
    with pytest.raises(ValueError, match="stage: got None"):
        LossSpec("dcor", None, 0.5)
    with pytest.raises(ValueError, match="lam: got 1.5"):
        LossSpec("kd", None, 1.5)
    with pytest.raises(ValueError, match="alignment: got 'hops'"):
        LossSpec("dcor", "final", 0.5, alignment="hops")


def test_east_loss_aligns_as_its_spec_says() -> None:
    gen = _rng(10)
    out = _toy_output(gen)  # stage maps of 12 frames
    labels, mask = torch.zeros(8, 5), torch.ones(8, 5, dtype=torch.bool)
    teacher = torch.randn(8, 3, 16, generator=gen)
    final = out.stages[2].mean(2).transpose(1, 2)
    for alignment in ("authors", "time"):
        terms = east_loss(
            out,
            labels,
            mask,
            LossSpec("dcor", "final", 0.5, alignment=alignment),
            stage_hops=(0.16, 0.16, 0.16),
            teacher_seqs=[teacher],
            teacher_hops=[0.96],
            teacher_first_centres=[0.0],
        )
        s, t = align(final, 0.16, teacher, 0.96, alignment=alignment)
        assert terms.reg.item() == pytest.approx(dcor_loss(s, t).item(), rel=1e-6)
