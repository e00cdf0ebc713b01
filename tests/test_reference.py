"""Every published cell beside ours: the reference data's shape, the beside-the-paper
table of a fabricated full grid of each paper study, and `python -m east_ray.study paper
--tables-only` on a fabricated results folder (written here: one scores file per run)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import east_ray.analysis.results as er
from east_ray.analysis.metrics import METRICS, evaluate
from east_ray.analysis.reference import REFERENCE
from east_ray.analysis.stats import ScoredClips
from east_ray.analysis.tables import (
    PAPER_ORDER,
    beside_paper,
    compared_cells,
    expected_pairs,
    format_beside_paper,
    paper_reference,
    paper_table,
)
from east_ray.catalog import DATASETS
from east_ray.config import StudySpec, expand_cells, load_study
from east_ray.data.magnatagatune import TOP50
from east_ray.data.scores import SCORES, write_scores
from east_ray.study import __main__ as study
from tests.release_fixtures import OPENMIC_CLASSES

PAPER_STUDIES = ("openmic", "magnatagatune")
TEACHERS = ("vggish", "openl3", "passt", "panns")
AUTHORS = "Baseline (authors' config)"
N_CLIPS = 24
ABSENT = 2  # OpenMIC classes without a labelled positive in the fabricated test split


def test_the_reference_holds_every_cell_of_both_tables_once() -> None:
    assert len(REFERENCE) == 100
    for dataset in PAPER_STUDIES:
        cells = [r[1:4] for r in REFERENCE if r[0] == dataset]
        assert len(cells) == 50 and len(set(cells)) == 50
        metrics = DATASETS[dataset].metrics
        want = {("Baseline", "-", m) for m in metrics} | {
            (s, t, m) for s in PAPER_ORDER[1:] for t in TEACHERS for m in metrics
        }
        assert set(cells) == want
    assert all(0 < r[4] < 1 for r in REFERENCE)
    reference = paper_reference("openmic")  # two spot checks against the poster
    cell = reference.set_index(["system", "teacher", "metric"])["paper"]
    assert cell[("EAsT_KD", "panns", "mAP")] == 0.857 and cell[("Baseline", "-", "F1")] == 0.809
    assert reference["source"].str.contains("Ding & Lerch, ISMIR 2023").all()


def _runs(spec: StudySpec) -> list[tuple[str, str, dict[str, object]]]:
    """(cell id, regularizer, axes) of every run the study's tables read: its cells and
    a Teacher_LR fit per teacher, as `collect_results` names them."""
    runs = [(c.cell_id, c.regularizer, dataclasses.asdict(c)) for c in expand_cells(spec)]
    for t in spec.grid.teachers:
        axes = dict(regularizer="teacher_lr", teacher=t, stage=None, lam=0.0, extra_system="")
        cell_id = f"teacher_lr-{t}-frac1-seed1223"
        runs.append((cell_id, "teacher_lr", {**axes, "fraction": 1.0, "seed": 1223}))
    return runs


def _truth(dataset: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Class names, labels and mask of the test split: every class with a labelled
    positive and negative, but the first `ABSENT` OpenMIC classes, which have no positive."""
    classes = OPENMIC_CLASSES if dataset == "openmic" else TOP50
    rng = np.random.default_rng(0)
    labels = (rng.random((N_CLIPS, len(classes))) < 0.3).astype(np.float32)
    mask = rng.random(labels.shape) < (0.6 if dataset == "openmic" else 1.0)
    mask[:2] = True
    labels[0], labels[1] = 1.0, 0.0
    if dataset == "openmic":
        labels[:, :ABSENT] = 0.0
    return classes, np.where(mask, labels, 0.5).astype(np.float32), mask


def _fabricate(spec: StudySpec, study_dir: Path | None = None) -> pd.DataFrame:
    """One results row per run of `spec` (one seed); with `study_dir`, also each run's
    test scores there and `results.parquet`."""
    classes, labels, mask = _truth(spec.dataset)
    ids = np.array([f"{i:06d}_0" for i in range(N_CLIPS)])
    signal = np.where(labels > 0.5, 1.0, -1.0)
    rows = []
    for i, (cell_id, regularizer, axes) in enumerate(_runs(spec)):
        noise = np.random.default_rng(i).standard_normal(labels.shape)
        # scores as the file stores them (float16), so the file gives the row's metrics
        probs = (1 / (1 + np.exp(-(signal + noise)))).astype(np.float16).astype(np.float32)
        if study_dir is not None:
            path = er.run_folder(study_dir, cell_id, regularizer) / SCORES
            write_scores(ScoredClips(ids, classes, probs, labels, mask), path)
        metrics = evaluate(probs, labels, mask)
        rows.append(
            {
                "cell_id": cell_id,
                **axes,
                "dataset": spec.dataset,
                "val_mAP": metrics["mAP"],
                **{f"test_{m}": metrics[m] for m in METRICS},
            }
        )
    frame = pd.DataFrame(rows)
    if study_dir is not None:
        frame.to_parquet(study_dir / "results.parquet")
    return frame


def _compared(spec: StudySpec, results: pd.DataFrame) -> pd.DataFrame:
    extra = tuple(x.name for x in spec.systems)
    expected = expected_pairs(spec.grid.regularizers, spec.grid.stages, spec.grid.teachers, extra)
    tidy = paper_table(results, expected, DATASETS[spec.dataset].metrics)
    return beside_paper(tidy, paper_reference(spec.dataset), ("Baseline", *extra))


@pytest.mark.parametrize("name", PAPER_STUDIES)
def test_a_full_grid_sets_all_50_published_cells_beside_ours(name: str) -> None:
    spec = load_study(name)
    compared = _compared(spec, _fabricate(spec))
    assert compared_cells(compared) == 50
    published = compared[compared["paper"].notna()]
    assert published["ours"].notna().all()
    # the paper's Baseline beside both of ours: 50 published cells in 52 rows
    assert len(published) == 52
    assert Counter(published["paper_system"])["Baseline"] == 4
    wide = format_beside_paper(compared)
    systems = list(dict.fromkeys(s for s, _ in wide.index))
    assert systems == [
        "Baseline",
        AUTHORS,
        *PAPER_ORDER[1:],
        "EAsT_Cos-Diff (all)",
        "EAsT_KD (all)",
    ]
    assert list(wide.index[:2]) == [("Baseline", "-"), (AUTHORS, "-")]
    first = DATASETS[spec.dataset].metrics[0]
    paper_baseline = paper_reference(spec.dataset).iloc[0]["paper"]
    assert f" / {paper_baseline:.3f} (" in wide.loc[(AUTHORS, "-"), first]
    # rows the paper has no number for (our extra stage choices): "—", never NaN
    assert wide.loc[("EAsT_KD (all)", "vggish"), first].endswith(" / —")
    assert "nan" not in wide.to_string().lower()
    # one seed: the interval holds no seed variation, so no cell gets the "*" mark
    assert (compared.loc[compared["ours"].notna(), "seeds"] == 1).all()
    assert "*" not in set(compared["mark"])


def test_cells_not_run_are_missing_and_not_counted() -> None:
    spec = load_study("openmic")
    results = _fabricate(spec)
    compared = _compared(spec, results[results["regularizer"] != "kd"])
    assert compared_cells(compared) == 50 - 8  # KD: 4 teachers x 2 metrics
    wide = format_beside_paper(compared)
    assert wide.loc[("KD", "passt"), "mAP"] == "missing / 0.851"


def _sections(out: str) -> list[str]:
    """Each dataset's beside-the-paper table, title to its note on the marks."""
    return [part.split("\n\n")[0] for part in out.split("beside the paper: ")[1:]]


def _rows(section: str) -> dict[tuple[str, str], str]:
    """The printed rows of a beside-the-paper table by (system, teacher); a system's name
    is printed on its first row only."""
    lines = section.splitlines()
    at = lines[2].index("teacher")  # the index header: "system   teacher"
    rows, system = {}, ""
    for line in lines[3:-1]:  # the last line: the note on the marks
        system = line[:at].strip() or system
        rows[(system, line[at:].split()[0])] = line
    return rows


def test_paper_tables_only_prints_every_published_cell_beside_ours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = tmp_path / "results"
    for name in PAPER_STUDIES:
        (storage / name).mkdir(parents=True)
        _fabricate(load_study(name), storage / name)
    assert study.main(["paper", "--storage", str(storage), "--tables-only"]) == 0
    out = capsys.readouterr().out
    sections = _sections(out)
    assert len(sections) == 2
    for dataset, section in zip(PAPER_STUDIES, sections, strict=True):
        assert f"50 of the paper's 50 {dataset} cells compared" in section
        rows = _rows(section)
        assert list(rows)[:2] == [("Baseline", "-"), (AUTHORS, "-")]
        reference = paper_reference(dataset)
        for system, teacher, metric, value in reference.iloc[:, :4].itertuples(index=False):
            assert f" / {value:.3f} (" in rows[(system, teacher)], (system, teacher, metric)
        assert f" / {reference['paper'].iloc[0]:.3f} (" in rows[(AUTHORS, "-")]
        printed = "".join(rows.values())
        assert "missing" not in printed and "nan" not in printed.lower()
        assert "° outside an interval from one seed" in section
        assert "Our figures set beside a published one: 52 with 1 seed." in section
    assert "classes: mAP/F1 averaged over 18 of 20 classes (2 have no labelled" in out
    assert "classes: every figure averages all 50" in out

    argv = ["openmic", "--storage", str(storage), "--tables-only", "--absent-classes", "zero"]
    assert study.main(argv) == 0
    out = capsys.readouterr().out
    assert (
        "classes: 18 of 20 have both labels in the test split; mAP averaged over all 20, the 2 "
        "others scored 0 (the authors' rule); F1 over those 18 (ours)"
    ) in out


def test_the_authors_class_rule_scores_18_of_20_of_ours(tmp_path: Path) -> None:
    """2 of the 20 OpenMIC classes never occur in the fabricated test split: under the
    authors' rule every mAP and ROC-AUC of the table is exactly 18/20 of ours, F1 stays."""
    study_dir = tmp_path / "openmic"
    study_dir.mkdir()
    _fabricate(load_study("openmic"), study_dir)
    frame = er.load(study_dir)
    assert er.class_count(frame) == (18, 20)
    metrics = ["mAP", "ROC-AUC", "F1"]
    ours, authors = (
        er.paper_table(frame, metrics=metrics, n_boot=50, absent_classes=rule).set_index(
            ["system", "teacher", "metric"]
        )
        for rule in ("skip", "zero")
    )
    for metric, factor in (("mAP", 18 / 20), ("ROC-AUC", 18 / 20), ("F1", 1.0)):
        got = authors.xs(metric, level="metric")["mean"]
        want = ours.xs(metric, level="metric")["mean"] * factor
        assert np.allclose(got, want, rtol=1e-12, atol=0), metric
    zeroed = authors.xs("mAP", level="metric")
    assert (zeroed["ci_low"] < zeroed["mean"]).all() and (zeroed["mean"] < zeroed["ci_high"]).all()
    # the bootstrap follows the rule: the intervals move with the means
    assert (zeroed["ci_high"] < ours.xs("mAP", level="metric")["ci_high"]).all()
