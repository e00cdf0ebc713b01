"""Several teachers at once (`catalog.teachers`: a set `a+b`): the spec names a set, its
cells and tables carry it, its regularizer is the mean of its members', KD toward it reads
its members' mean probability, and bad sets are named."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest
import torch

from east_ray.catalog import members, teacher_display
from east_ray.catalog.teachers import member_weights
from east_ray.config import SpecError, expand_cells, parse_study
from east_ray.losses import LossSpec, east_loss
from east_ray.models import StudentOutput
from east_ray.study.stages import teachers_needed
from east_ray.train.data import mean_probability_logits
from tests.release_fixtures import tiny_study


def _spec(teachers: str, regularizers: str = '["none", "dcor", "kd"]') -> str:
    text = tiny_study("sets", regularizers=regularizers)
    return text.replace('teachers = ["handcrafted"]', f"teachers = {teachers}")


def test_a_spec_names_a_set_and_its_cells_carry_it() -> None:
    spec = parse_study(tomllib.loads(_spec('["handcrafted", "handcrafted+musicnn@penultimate"]')))
    assert spec.grid.teachers == ("handcrafted", "handcrafted+musicnn")  # members canonical
    cells = expand_cells(spec)
    assert {c.teacher for c in cells if c.teacher} == {"handcrafted", "handcrafted+musicnn"}
    assert any("handcrafted+musicnn" in c.cell_id for c in cells)
    assert teachers_needed(cells) == ["handcrafted", "musicnn"]  # extracted, fitted per member
    assert teacher_display("passt+vggish") == "PaSST+VGGish"
    assert members("passt+vggish") == ("passt", "vggish")
    # weights as the set names them, normalised; shown in the tables
    weighted = parse_study(tomllib.loads(_spec('["handcrafted=3+musicnn@penultimate=1"]')))
    assert weighted.grid.teachers == ("handcrafted=3+musicnn=1",)
    assert member_weights("handcrafted=3+musicnn=1") == (0.75, 0.25)
    assert member_weights("handcrafted+musicnn") == (0.5, 0.5)
    assert teacher_display("passt=0.7+vggish=0.3") == "PaSST×0.7+VGGish×0.3"


@pytest.mark.parametrize(
    ("teachers", "regularizers", "message"),
    [
        ('["handcrafted+wav2vec"]', '["dcor"]', "grid.teachers[0]: unknown teacher 'wav2vec'"),
        ('["musicnn+musicnn@penultimate"]', '["dcor"]', "names musicnn twice"),
        ('["handcrafted+musicnn"]', '["fitnet"]', "learn a projection onto one teacher"),
        ('["handcrafted=1+musicnn"]', '["dcor"]', "give every member of a set"),
        ('["handcrafted=0+musicnn=1"]', '["dcor"]', "a positive weight"),
    ],
)
def test_a_bad_set_is_named(teachers: str, regularizers: str, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_study(tomllib.loads(_spec(teachers, regularizers)))


def test_a_sets_regularizer_is_the_mean_of_its_members() -> None:
    gen = torch.Generator().manual_seed(3)
    out = StudentOutput(torch.randn(6, 4, generator=gen), [torch.randn(6, 8, 2, 12, generator=gen)])
    labels, mask = (torch.rand(6, 4, generator=gen) > 0.5).float(), torch.ones(6, 4)
    a, b = torch.randn(6, 2, 5, generator=gen), torch.randn(6, 3, 7, generator=gen)
    spec = LossSpec("dcor", "final", 0.5)

    def loss(seqs: list[torch.Tensor], hops: list[float | None]) -> torch.Tensor:
        return east_loss(
            out, labels, mask, spec, stage_hops=[0.16], teacher_seqs=seqs, teacher_hops=hops
        ).reg

    both = loss([a, b], [0.96, 0.5])
    torch.testing.assert_close(both, (loss([a], [0.96]) + loss([b], [0.5])) / 2)
    weighted = east_loss(
        out,
        labels,
        mask,
        spec,
        stage_hops=[0.16],
        teacher_seqs=[a, b],
        teacher_hops=[0.96, 0.5],
        teacher_weights=member_weights("passt=3+vggish=1"),
    ).reg
    torch.testing.assert_close(weighted, 0.75 * loss([a], [0.96]) + 0.25 * loss([b], [0.5]))
    with pytest.raises(ValueError, match="teacher_hops: got 1 for 2 teachers"):
        loss([a, b], [0.96])


def test_kd_toward_a_set_reads_its_members_mean_probability() -> None:
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    mean = mean_probability_logits([z1, z2])
    sigmoid = 1 / (1 + np.exp(-np.stack([z1, z2]).astype(np.float64)))
    np.testing.assert_allclose(
        1 / (1 + np.exp(-mean.astype(np.float64))), sigmoid.mean(0), rtol=1e-5
    )
    assert mean_probability_logits([z1]) is z1  # one teacher: its logits as they are
    weighted = mean_probability_logits([z1, z2], (0.75, 0.25))
    expected = 0.75 * sigmoid[0] + 0.25 * sigmoid[1]
    np.testing.assert_allclose(1 / (1 + np.exp(-weighted.astype(np.float64))), expected, rtol=1e-5)


def test_the_tables_have_a_column_per_set() -> None:
    from east_ray.analysis.tables import expected_pairs, format_table, paper_table

    rows = []
    for teacher, regularizer, value in (
        (None, "none", 0.5),
        ("handcrafted", "dcor", 0.6),
        ("handcrafted+musicnn", "dcor", 0.7),
    ):
        rows.append(
            {
                "cell_id": f"{regularizer}-{teacher}",
                "dataset": "synthmic",
                "student": "cp_resnet",
                "regularizer": regularizer,
                "teacher": teacher,
                "stage": None if teacher is None else "final",
                "lam": 0.0 if teacher is None else 0.5,
                "fraction": 1.0,
                "seed": 0,
                "val_mAP": value,
                "test_mAP": value,
                "test_F1": value,
            }
        )
    teachers = ("handcrafted", "handcrafted+musicnn")
    expected = expected_pairs(("none", "dcor"), ("final",), teachers)
    table = format_table(paper_table(pd.DataFrame(rows), expected, ("mAP",)))
    assert [t for t, _ in table.columns] == ["handcrafted", "handcrafted+musicnn"]
    assert table.loc["EAsT_Final", ("handcrafted+musicnn", "mAP")].startswith("0.700")
