"""A study with several λ per teacher: a table per λ beside the one at the λ chosen on
validation, in the study's output and in one call of the results API."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import east_ray.analysis.results as er
from east_ray.config import StudySpec, load_study
from east_ray.study.store import render_tables
from tests.test_reference import _fabricate


def _two_lambda_study(tmp_path: Path, **grid: str) -> tuple[StudySpec, Path, pd.DataFrame]:
    """The demo's data with λ 0.1 and 0.8 for EAsT_Final, the λ chosen on validation and
    all clips unless `grid` (TOML values by key) says otherwise."""
    spec_file = tmp_path / "lams.toml"
    # `lam_by_teacher = {}` clears a parent's fixed λ, so `lams` apply
    table = {
        "lams": "[0.1, 0.8]",
        "lam_by_teacher": "{}",
        "regularizers": '["none", "dcor"]',
        "stages": '["final"]',
        "lam_choice": '"validation"',
        "fractions": "[1.0]",
        **grid,
    }
    lines = "".join(f"{key} = {value}\n" for key, value in table.items())
    spec_file.write_text(f'extends = "demo"\nname = "lams"\n[grid]\n{lines}')
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
    spec, study_dir, results = _two_lambda_study(tmp_path, lams="[0.8]")
    text = render_tables(spec, results, study_dir, write=False)
    assert "every regularised system at λ" not in text and "EAsT_Final" in text


def test_lambdas_fixed_in_advance_print_a_table_and_a_figure_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lam_choice = "each"`: no λ is chosen on validation, each has its table, and the
    figure draws each regularised system once per λ."""
    import east_ray.study.store as study_results

    spec, study_dir, results = _two_lambda_study(
        tmp_path, lam_choice='"each"', fractions="[0.25, 1.0]"
    )
    drawn: list[pd.DataFrame] = []
    real = study_results.limited_data_figure

    def spy(lines: pd.DataFrame, *args: object) -> Path:
        drawn.append(lines)
        return real(lines, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(study_results, "limited_data_figure", spy)
    text = render_tables(spec, results, study_dir)
    assert "chosen on validation" not in text
    for fraction in ("0.25", "1"):
        for lam in ("0.1", "0.8"):
            assert f"fraction {fraction}, every regularised system at λ = {lam}, fixed" in text
    systems = set(drawn[0]["system"])
    assert {"EAsT_Final, λ = 0.1", "EAsT_Final, λ = 0.8", "Baseline"} <= systems
    assert "EAsT_Final" not in systems
    assert (study_dir / "figure.png").stat().st_size > 0
    markdown = (study_dir / "tables.md").read_text()
    assert markdown.count("### ") == 4  # two fractions × two λ


def test_an_unknown_lam_choice_lists_the_known_ones(tmp_path: Path) -> None:
    from east_ray.config import SpecError

    with pytest.raises(SpecError, match=r"grid.lam_choice: .*'best'.*validation, each"):
        _two_lambda_study(tmp_path, lam_choice='"best"')
