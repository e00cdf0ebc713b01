"""The catalog's rows: every regularizer row holds together, and a new regularizer or a new
teacher is one row plus one function (each added here without touching any other module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from east_ray import catalog
from east_ray.catalog import REGULARIZERS, TEACHERS, Regularizer, TeacherInfo, teacher_display
from east_ray.config import Cell, expand_cells, parse_study, system_name
from east_ray.losses import LossSpec, RegInputs, east_loss
from east_ray.models.common import StudentOutput
from east_ray.teachers.embeddings import EmbedJob, embed_shard, extract_teacher
from east_ray.teachers.extractor import Extractor
from east_ray.teachers.registry import load_extractor
from east_ray.train.teacher_lr import fit_teacher_lr
from east_ray.train.trainer import train
from east_ray.train.trial import TrialSpec
from tests.test_config import _table
from tests.test_trainer import RECIPE, TEACHER_LR, TEST_FEATURES, _data, _with_teacher


def pooled_l2_reg(x: RegInputs) -> torch.Tensor:
    """A regularizer no shipped row has: the squared difference of the student's and the
    teacher's batch similarity matrices of time-pooled, unit-length features."""
    losses = []
    for s, t in x.pairs:
        gs = torch.nn.functional.normalize(s.mean(dim=1), dim=1)
        gt = torch.nn.functional.normalize(t.mean(dim=1), dim=1)
        losses.append(((gs @ gs.T - gt @ gt.T) ** 2).mean())
    return torch.stack(losses).mean()


POOLED_L2 = Regularizer("pooled_l2", True, False, "Pooled-L2", "tests.test_catalog:pooled_l2_reg")


@pytest.fixture
def pooled_l2(monkeypatch: pytest.MonkeyPatch) -> Regularizer:
    """POOLED_L2 in the catalog for one test: the only place a regularizer is added."""
    monkeypatch.setitem(REGULARIZERS, POOLED_L2.name, POOLED_L2)
    return POOLED_L2


def _grid_cells(regularizer: str) -> list[Cell]:
    table = _table()
    table["grid"] = {
        "teachers": ["musicnn", "handcrafted"],
        "regularizers": ["none", regularizer],
        "stages": ["final", "all"],
        "lams": [0.5],
        "seeds": [1],
    }
    return [c for c in expand_cells(parse_study(table)) if c.regularizer == regularizer]


def _output(batch: int = 4, classes: int = 3) -> StudentOutput:
    gen = torch.Generator().manual_seed(0)
    stages = [torch.randn(batch, 8, 4, 12, generator=gen, requires_grad=True)]
    return StudentOutput(torch.randn(batch, classes, generator=gen), stages)


@pytest.mark.parametrize("name", [n for n in REGULARIZERS if n != "none"])
def test_each_row_expands_loads_and_computes_what_it_reads(name: str) -> None:
    """A row's reads decide its cells' axes, its system names and what its loss needs."""
    row = catalog.regularizer(name)
    cells = _grid_cells(name)
    assert {c.teacher for c in cells} == {"musicnn", "handcrafted"}  # every row here reads one
    assert {c.stage for c in cells} == ({"final", "all"} if row.uses_stage else {None})
    assert {system_name(c.regularizer, c.stage) for c in cells} == {
        row.system_name(c.stage) for c in cells
    }
    spec = LossSpec(name, "final" if row.uses_stage else None, lam=0.5)
    assert spec.reg_loss is not None
    out, labels = _output(), torch.ones(4, 3)
    mask = torch.ones(4, 3, dtype=torch.bool)
    teacher = {
        "stage_hops": [0.16],
        # a hint row reads the student's projected stages, of the teacher's width
        "teacher_seqs": [torch.randn(4, 2, 8 if row.hint else 5)] if row.reads_sequence else [],
        "teacher_hops": [0.96] if row.reads_sequence else [],
        "teacher_logits": torch.randn(4, 3) if row.reads_logits else None,
    }
    terms = east_loss(out, labels, mask, spec, **teacher)  # type: ignore[arg-type]
    assert torch.isfinite(terms.reg) and terms.reg.item() != 0.0
    needed = [k for k in ("teacher_seqs", "teacher_logits") if teacher[k] not in (None, [])]
    for key in needed:  # each input the row reads is required, by name
        empty = {key: None} if key == "teacher_logits" else {key: [], "teacher_hops": []}
        with pytest.raises(ValueError, match=f"{key}: required for regularizer {name!r}"):
            east_loss(out, labels, mask, spec, **{**teacher, **empty})  # type: ignore[arg-type]


def test_an_unknown_regularizer_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="regularizer: got 'l2', expected one of: none, kd, "):
        LossSpec("l2")
    table = _table()
    table["grid"]["regularizers"] = ["none", "l2"]
    with pytest.raises(ValueError, match=r"grid.regularizers\[1\]: got 'l2'"):
        parse_study(table)


def test_a_new_regularizer_is_one_row_and_one_function(
    pooled_l2: Regularizer, prepared: Path, tmp_path: Path
) -> None:
    """The spec accepts it, the grid expands it on both stages with a teacher and λ, the
    tables name it, and a cell trains end to end with its loss in the objective."""
    cells = _grid_cells("pooled_l2")
    assert {(c.teacher, c.stage) for c in cells} == {
        (t, s) for t in ("musicnn", "handcrafted") for s in ("final", "all")
    }
    assert system_name("pooled_l2", "all") == "Pooled-L2 (all)"
    _with_teacher(prepared)
    cell = Cell("synthmic", "cp_resnet", "pooled_l2", "handcrafted", "all", 0.5, 1.0, 0)
    spec = TrialSpec(cell, RECIPE, TEST_FEATURES, 20, {"base_channels": 8}, max_epochs=2)
    reports: list[dict[str, float]] = []
    result = train(
        spec, _data(prepared, spec), tmp_path / "run", report=lambda m, c: reports.append(m) or None
    )
    assert result.epochs == 2 and np.isfinite(result.test["mAP"])
    assert all(r["train_loss_reg"] > 0 for r in reports)  # the row's loss was trained on


def frame_energy(audio: torch.Tensor) -> torch.Tensor:
    """`(B, N)` audio → `(B, T, 4)` per 0.96 s frame: log energy, mean |x|, zero-crossing
    rate, peak |x|; a teacher no shipped row has."""
    frames = audio.unfold(1, FRAME, FRAME)
    crossings = (frames[..., 1:] * frames[..., :-1] < 0).float().mean(-1)
    energy = torch.log(frames.pow(2).mean(-1) + 1e-8)
    return torch.stack([energy, frames.abs().mean(-1), crossings, frames.abs().amax(-1)], -1)


def load_frame_energy(
    device: torch.device | str, checkpoint: Path | None = None, pretrained: bool = True
) -> Extractor:
    return Extractor("frame_energy", frame_energy, device)


FRAME = 15_360  # 0.96 s at 16 kHz
FRAME_ENERGY = TeacherInfo(
    "frame_energy",
    dim=4,
    sample_rate=16_000,
    window=FRAME,
    hop=FRAME,
    description="log energy, mean |x|, zero crossings, peak per 0.96 s",
    builder="tests.test_catalog:load_frame_energy",
    pads_short_clips=False,
    standardise=True,
)


def test_a_new_teacher_is_one_row_and_one_function(
    monkeypatch: pytest.MonkeyPatch, prepared: Path, tmp_path: Path
) -> None:
    """Added in this test alone: a spec names it, its embeddings are extracted and a
    Teacher_LR fitted on them, and a cell that reads both trains end to end."""
    monkeypatch.setitem(TEACHERS, FRAME_ENERGY.name, FRAME_ENERGY)
    table = _table()
    table["grid"] = {"teachers": ["frame_energy"], "regularizers": ["none", "dcor_kd"]}
    table["grid"] |= {"stages": ["final"], "lams": [0.5], "seeds": [1]}
    cells = [c for c in expand_cells(parse_study(table)) if c.teacher]
    assert [(c.teacher, c.system) for c in cells] == [("frame_energy", "EAsT_KD")]
    assert teacher_display("frame_energy") == "frame_energy"

    def run(jobs: list[EmbedJob]) -> None:
        extractor = load_extractor("frame_energy")
        for job in jobs:
            embed_shard(job, extractor)

    extract_teacher(prepared, "frame_energy", runner=run)
    fit_teacher_lr(prepared, "frame_energy", TEACHER_LR, fraction=1.0, seed=0)
    cell = Cell("synthmic", "cp_resnet", "dcor_kd", "frame_energy", "final", 0.5, 1.0, 0)
    spec = TrialSpec(cell, RECIPE, TEST_FEATURES, 20, {"base_channels": 8}, max_epochs=2)
    data = _data(prepared, spec)
    assert [s.shape[-1] for s in data.teacher_seqs] == [FRAME_ENERGY.dim]
    result = train(spec, data, tmp_path / "run")
    assert result.epochs == 2 and np.isfinite(result.test["mAP"])
