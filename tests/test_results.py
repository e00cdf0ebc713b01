"""The analysis API on a hand-made study folder: load's categories, the paper table with
bootstrap CIs and † marks, paired tests, per-run CIs, per-class AP, runs without scores."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import east_ray.analysis.results as er
from east_ray.analysis.metrics import METRICS, evaluate
from east_ray.analysis.stats import ScoredClips
from east_ray.analysis.tables import PAPER_ORDER, format_table
from east_ray.data.scores import write_scores
from east_ray.errors import BadValueError

CLASSES = ("guitar", "piano", "voice")
N = 240


def _truth(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = (rng.random((N, len(CLASSES))) < 0.3).astype(np.float32)
    mask = rng.random((N, len(CLASSES))) < 0.7
    return np.where(mask, labels, 0.5).astype(np.float32), mask


def _run(
    study: Path,
    cell_id: str,
    regularizer: str,
    teacher: str | None,
    seed: int,
    skill: float,
    *,
    stage: str | None = None,
    scores: bool = True,
    clip_ids: np.ndarray | None = None,
) -> dict[str, object]:
    """One run: scores that separate the classes by `skill`, its file, its results row."""
    rng = np.random.default_rng(seed)
    labels, mask = _truth(np.random.default_rng(0))  # every run sees the same test clips
    signal = np.where(labels > 0.5, 1.0, -1.0) * skill
    probs = 1 / (1 + np.exp(-(signal + rng.standard_normal(labels.shape))))
    ids = np.array([f"{i:06d}_0" for i in range(N)]) if clip_ids is None else clip_ids
    clips = ScoredClips(ids, CLASSES, probs, labels, mask)
    if scores:
        write_scores(clips, er.run_folder(study, cell_id, regularizer) / "test_scores.parquet")
    metrics = evaluate(probs, labels, mask)
    return {
        "cell_id": cell_id,
        "dataset": "openmic",
        "regularizer": regularizer,
        "teacher": teacher,
        "stage": stage,
        "lam": 0.0 if regularizer in ("none", "teacher_lr") else 0.8,
        "fraction": 1.0,
        "seed": seed,
        "val_mAP": metrics["mAP"],
        **{f"test_{m}": metrics[m] for m in METRICS},
    }


def _write(rows: list[dict[str, object]], study: Path) -> None:
    study.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(study / "results.parquet")


def _study(tmp_path: Path, *, with_scores_for_kd: bool = False) -> Path:
    study = tmp_path / "openmic"
    rows = [
        _run(study, "none-s1", "none", None, 1, 0.2),
        _run(study, "none-s2", "none", None, 2, 0.2),
        _run(study, "dcor-final-vggish-s1", "dcor", "vggish", 1, 1.5, stage="final"),
        _run(study, "dcor-final-vggish-s2", "dcor", "vggish", 2, 1.5, stage="final"),
        _run(study, "teacher_lr-vggish-frac1-seed1", "teacher_lr", "vggish", 1, 0.2),
        _run(study, "kd-panns-s1", "kd", "panns", 1, 0.2, scores=with_scores_for_kd),
    ]
    _write(rows, study)
    return study


def test_load_orders_systems_and_teachers_as_the_paper(tmp_path: Path) -> None:
    study = tmp_path / "s"
    rows = [
        _run(study, "a", "dcor_kd", "musicnn", 1, 0.0, stage="all", scores=False),
        _run(study, "b", "dcor", "panns", 1, 0.0, stage="final", scores=False),
        _run(study, "c", "none", None, 1, 0.0, scores=False),
        _run(study, "d", "kd", "vggish", 1, 0.0, scores=False),
    ]
    _write(rows, study)
    frame = er.load(study)
    # the systems and teachers present, in the paper's order, then the others
    assert list(frame["system"].cat.categories) == ["Baseline", "KD", "EAsT_Final", "EAsT_KD (all)"]
    assert list(frame["teacher"].cat.categories) == ["-", "vggish", "panns", "musicnn"]
    assert frame["system"].cat.ordered and frame["teacher"].cat.ordered
    assert frame.sort_values("system")["cell_id"].tolist() == ["c", "d", "b", "a"]
    assert frame["teacher"].tolist() == ["musicnn", "panns", "-", "vggish"]  # one label
    # a grouping by both gives one row per run, not every pair of categories
    assert len(frame.groupby(["system", "teacher"], observed=True).size()) == 4
    assert frame.loc[2, "scores_file"] == str(study / "cells" / "c" / "test_scores.parquet")
    with pytest.raises(FileNotFoundError, match="no stored results"):
        er.load(tmp_path / "nothing")


def test_paper_table_has_bootstrap_cis_and_marks_the_significant_system(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = er.load(_study(tmp_path))
    with caplog.at_level(logging.WARNING, logger="east_ray"):
        table = er.paper_table(frame, n_boot=300)
    assert caplog.text.count("no test_scores.parquet") == 1 and "kd-panns-s1" in caplog.text
    assert set(table["metric"]) == {"mAP", "F1"}  # OpenMIC's table
    mAP = table[table["metric"] == "mAP"].set_index(["system", "teacher"])
    final = mAP.loc[("EAsT_Final", "vggish")]
    assert final["ci_low"] < final["mean"] < final["ci_high"]
    assert final["ci95"] == pytest.approx((final["ci_high"] - final["ci_low"]) / 2)
    assert final["p_value"] < 0.05 and final["n"] == 2
    base = mAP.loc[("Baseline", "panns")]  # repeated under every teacher, never tested
    assert base["ci_low"] < base["mean"] < base["ci_high"] and np.isnan(base["p_value"])
    kd = mAP.loc[("KD", "panns")]
    assert not np.isnan(kd["mean"]) and np.isnan(kd["ci_low"]) and np.isnan(kd["p_value"])
    lr = mAP.loc[("Teacher_LR", "vggish")]  # its copy under teacher_lr/ in the study
    assert lr["ci_low"] < lr["ci_high"] and lr["p_value"] > 0.05
    wide = format_table(table)
    assert wide.loc["EAsT_Final", ("VGGish", "mAP")].endswith("†")
    low, high = mAP.loc[("Baseline", "vggish")][["ci_low", "ci_high"]]
    assert wide.loc["Baseline", ("VGGish", "mAP")].endswith(f" [{low:.3f}, {high:.3f}]")
    assert "†" not in wide.loc["Teacher_LR", ("VGGish", "mAP")]
    assert wide.loc["KD", ("PANNs", "mAP")].count(".") == 1  # mean only, no CI
    again = er.paper_table(frame, n_boot=300)
    pd.testing.assert_frame_equal(table, again)  # seeded: the same numbers every call
    # the dtypes `load` gives: the paper's order as ordered categoricals, counts as integers
    for column in ("system", "teacher", "metric"):
        assert table[column].cat.ordered, column
    assert list(table["system"].cat.categories) == list(frame["system"].cat.categories)
    assert pd.api.types.is_integer_dtype(table["n"])
    intervals = er.system_intervals(frame, n_boot=50)
    assert pd.api.types.is_integer_dtype(intervals["n"]) and intervals["system"].cat.ordered
    assert intervals["system"].iloc[0] == "Baseline" and intervals["teacher"].iloc[0] == "-"


def test_paired_tests_and_run_intervals(tmp_path: Path) -> None:
    frame = er.load(_study(tmp_path, with_scores_for_kd=True))
    plain = er.paired_tests(frame, metrics=["mAP"], n_boot=300)
    # the paper's order, not the alphabet (EAsT_Final before KD would be alphabetical)
    order = list(dict.fromkeys(plain["system"].astype(str)))
    assert order == sorted(order, key=list(PAPER_ORDER).index) and plain["system"].cat.ordered
    assert plain["teacher"].cat.categories[0] == "-"
    tests = plain.set_index(["system", "teacher"])
    assert "Baseline" not in tests.index.get_level_values("system")
    final = tests.loc[("EAsT_Final", "vggish")]
    base = frame[frame["system"] == "Baseline"]["test_mAP"].mean()
    ours = frame[frame["system"] == "EAsT_Final"]["test_mAP"].mean()
    assert final["diff"] == pytest.approx(ours - base)
    assert 0 < final["ci_low"] < final["diff"] < final["ci_high"] and final["p_value"] < 0.05
    assert tests.loc[("KD", "panns"), "p_value"] > 0.05  # the same skill as the baseline

    runs = er.run_intervals(frame, n_boot=300)
    assert len(runs) == len(frame)
    for metric in ("mAP", "F1"):
        low, high = runs[f"test_{metric}_ci_low"], runs[f"test_{metric}_ci_high"]
        assert (low < runs[f"test_{metric}"]).all() and (runs[f"test_{metric}"] < high).all()


def test_class_ap_has_class_rows_and_system_columns(tmp_path: Path) -> None:
    frame = er.load(_study(tmp_path))
    table = er.class_ap(frame)
    assert list(table.index) == list(CLASSES) and table.index.name == "class"
    assert list(table.columns) == [
        ("Baseline", "-"),
        ("Teacher_LR", "vggish"),
        ("KD", "panns"),
        ("EAsT_Final", "vggish"),
    ]
    assert table[("KD", "panns")].isna().all()  # no scores
    assert (table[("EAsT_Final", "vggish")] > table[("Baseline", "-")]).all()
    final = frame[frame["system"] == "EAsT_Final"]
    # the mean of the class APs is the run's mAP, up to the stored scores' float16
    assert table[("EAsT_Final", "vggish")].mean() == pytest.approx(
        final["test_mAP"].mean(), abs=1e-3
    )
    # the difference a reader wants, which plain column arithmetic turns into NaN
    assert table["EAsT_Final"].sub(table["Baseline"]).isna().all().all()
    diff = er.compare(table, "EAsT_Final")
    assert list(diff.columns) == ["vggish"] and diff.notna().all().all()
    expected = table[("EAsT_Final", "vggish")] - table[("Baseline", "-")]
    pd.testing.assert_series_equal(diff["vggish"], expected, check_names=False)
    with pytest.raises(BadValueError, match=r"system: 'EAsT_All' is not a system .* 'KD'"):
        er.compare(table, "EAsT_All")
    with pytest.raises(BadValueError, match="baseline: 'KD' has teachers"):
        er.compare(table, "EAsT_Final", baseline="KD")


def test_runs_on_other_test_clips_are_refused(tmp_path: Path) -> None:
    study = tmp_path / "s"
    other = np.array([f"{i:06d}_9" for i in range(N)])
    rows = [
        _run(study, "none-s1", "none", None, 1, 0.2),
        _run(study, "kd-vggish-s1", "kd", "vggish", 1, 0.2, clip_ids=other),
    ]
    _write(rows, study)
    with pytest.raises(BadValueError, match=r"kd-vggish-s1/test_scores.parquet: its 240 test"):
        er.paired_tests(er.load(study), n_boot=10)
    with pytest.raises(BadValueError, match="no scores_file column"):
        er.system_intervals(pd.read_parquet(study / "results.parquet"))


def test_the_authors_class_rule_needs_stored_scores(tmp_path: Path) -> None:
    study = tmp_path / "s"
    _write([_run(study, "none-s1", "none", None, 1, 0.2, scores=False)], study)
    frame = er.load(study)
    assert er.class_count(frame) is None
    with pytest.raises(BadValueError, match="'zero' needs the test split's labels"):
        er.paper_table(frame, n_boot=10, absent_classes="zero")
    with pytest.raises(ValueError, match="absent_classes: got 'none'"):
        er.paper_table(frame, n_boot=10, absent_classes="none")
