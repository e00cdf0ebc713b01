"""A study with several λ per teacher: a table per λ beside the one at the λ chosen on
validation, in the study's output and in one call of the results API."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import east_ray.results as er
from east_ray.config import StudySpec, load_study
from east_ray.study.results import render_tables
from tests.test_reference import _fabricate


def _two_lambda_study(tmp_path: Path) -> tuple[StudySpec, Path, pd.DataFrame]:
    spec_file = tmp_path / "lams.toml"
    # `lam_by_teacher = {}` clears the demo's fixed musicnn = 0.8, so `lams` apply
    spec_file.write_text(
        'extends = "demo"\nname = "lams"\n[grid]\nlams = [0.1, 0.8]\nlam_by_teacher = {}\n'
        'regularizers = ["none", "dcor"]\nstages = ["final"]\n'
    )
    spec = load_study(spec_file)
    study_dir = tmp_path / "lams"
    study_dir.mkdir()
    results = _fabricate(spec, study_dir)
    return spec, study_dir, results


def test_each_lambda_gets_its_table_in_the_api(tmp_path: Path) -> None:
    _, study_dir, results = _two_lambda_study(tmp_path)
    frame = er.load(study_dir)
    tables = er.by_lambda(frame, n_boot=50)
    assert sorted(set(tables["at_lam"])) == [0.1, 0.8] and tables.columns[0] == "at_lam"
    for lam in (0.1, 0.8):
        at = tables[(tables["at_lam"] == lam) & (tables["metric"] == "mAP")]
        at = at.set_index("system")
        runs = results[(results["regularizer"] == "dcor") & (results["lam"] == lam)]
        assert at.loc["EAsT_Final", "mean"] == pytest.approx(runs["test_mAP"].mean())
        assert at.loc["EAsT_Final", "lam"] == lam
        baseline = results[results["regularizer"] == "none"]["test_mAP"].mean()
        assert at.loc["Baseline", "mean"] == pytest.approx(baseline)  # in every λ's table


def test_the_study_prints_a_table_per_lambda_after_the_chosen_one(tmp_path: Path) -> None:
    spec, study_dir, results = _two_lambda_study(tmp_path)
    text = render_tables(spec, results, study_dir, write=False)
    chosen = text.index("λ chosen on validation mAP from 0.1, 0.8")
    low = text.index("every regularised system at λ = 0.1")
    high = text.index("every regularised system at λ = 0.8")
    assert chosen < low < high


def test_one_lambda_per_teacher_prints_one_table(tmp_path: Path) -> None:
    spec = load_study("demo")
    study_dir = tmp_path / "demo"
    study_dir.mkdir()
    text = render_tables(spec, _fabricate(spec, study_dir), study_dir, write=False)
    assert "every regularised system at λ" not in text
