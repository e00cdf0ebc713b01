"""Result frame → paper tables: λ on validation only, CIs, missing cells kept, figure."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from east_ray.analysis.tables import (
    choose_lambda,
    ci95,
    ci_note,
    comparisons,
    expected_pairs,
    flat_columns,
    format_table,
    holm,
    limited_data_figure,
    paper_table,
    system_name,
)
from east_ray.errors import UnknownNameError


def _row(
    reg: str,
    teacher: str | None,
    stage: str | None,
    lam: float,
    seed: int,
    val: float,
    test: float,
    fraction: float = 1.0,
) -> dict[str, object]:
    return {
        "regularizer": reg,
        "teacher": teacher,
        "stage": stage,
        "lam": lam,
        "fraction": fraction,
        "seed": seed,
        "val_mAP": val,
        "test_mAP": test,
        "val_F1": val,
        "test_F1": test - 0.1,
    }


def _results() -> pd.DataFrame:
    rows = []
    for seed, noise in zip((1, 2, 3), (0.0, 0.01, -0.01), strict=True):
        rows.append(_row("none", None, None, 0.0, seed, 0.50 + noise, 0.40 + noise))
        rows.append(_row("teacher_lr", "vggish", None, 0.0, seed, 0.55, 0.45 + noise))
        # λ=0.8 is better on validation, λ=0.5 better on test: the table must take 0.8
        rows.append(_row("dcor", "vggish", "final", 0.8, seed, 0.60 + noise, 0.41 + noise))
        rows.append(_row("dcor", "vggish", "final", 0.5, seed, 0.52 + noise, 0.70 + noise))
        rows.append(
            _row("dcor", "vggish", "final", 0.8, seed, 0.58 + noise, 0.38 + noise, fraction=0.1)
        )
    return pd.DataFrame(rows)


def test_system_names_follow_the_paper() -> None:
    assert [
        system_name(r, s)
        for r, s in [
            ("none", None),
            ("teacher_lr", None),
            ("kd", None),
            ("cos_diff", "final"),
            ("dcor", "final"),
            ("dcor", "all"),
            ("dcor_kd", "final"),
        ]
    ] == ["Baseline", "Teacher_LR", "KD", "EAsT_Cos-Diff", "EAsT_Final", "EAsT_All", "EAsT_KD"]
    assert system_name("dcor_kd", "all") == "EAsT_KD (all)"
    with pytest.raises(UnknownNameError, match="regularizer: got 'l2', expected one of: none, kd"):
        system_name("l2", None)


def test_lambda_is_chosen_on_validation_never_on_test() -> None:
    chosen = choose_lambda(_results())
    east = chosen[(chosen["system"] == "EAsT_Final") & (chosen["fraction"] == 1.0)]
    assert set(east["lam"]) == {0.8} and len(east) == 3


def test_ci95_is_the_student_t_interval() -> None:
    values = pd.Series([0.40, 0.41, 0.39, 0.43])
    expected = stats.t.ppf(0.975, 3) * values.std(ddof=1) / np.sqrt(4)
    assert ci95(values) == pytest.approx(expected)
    assert np.isnan(ci95(pd.Series([0.4])))


def test_paper_table_keeps_missing_cells_and_repeats_baseline() -> None:
    expected = expected_pairs(("none", "kd", "dcor"), ("final",), ("vggish", "openl3"))
    table = paper_table(_results(), expected, ("mAP", "F1"))
    assert len(table) == len(expected) * 2  # every expected pair, for both metrics
    kd = table[(table["system"] == "KD") & (table["teacher"] == "vggish")]
    assert kd["mean"].isna().all()  # never ran: shown as missing, not dropped
    base = table[(table["system"] == "Baseline") & (table["metric"] == "mAP")]
    assert list(base["teacher"]) == ["vggish", "openl3"]
    assert base["mean"].tolist() == pytest.approx([0.40, 0.40])
    east = table[
        (table["system"] == "EAsT_Final")
        & (table["teacher"] == "vggish")
        & (table["metric"] == "mAP")
    ].iloc[0]
    assert east["mean"] == pytest.approx(0.41) and east["n"] == 3 and east["lam"] == 0.8
    wide = format_table(table)
    assert list(wide.index) == ["Baseline", "Teacher_LR", "KD", "EAsT_Final"]
    assert wide.loc["KD", ("VGGish", "mAP")] == "missing"
    assert re.fullmatch(r"0\.410 \[0\.\d{3}, 0\.\d{3}\]", wide.loc["EAsT_Final", ("VGGish", "mAP")])
    assert list(wide.columns)[:2] == [("VGGish", "mAP"), ("VGGish", "F1")]
    flat = flat_columns(wide)  # one header row for Markdown and the terminal
    assert list(flat.columns)[:3] == ["VGGish · mAP", "VGGish · F1", "OpenL3 · mAP"]
    assert "| VGGish · mAP" in flat.to_markdown() and "('" not in flat.to_markdown()
    assert "EAsT_Final" in wide.to_markdown() and "tabular" in wide.to_latex()


def test_bootstrap_intervals_replace_the_student_t_ci_and_mark_significance() -> None:
    expected = expected_pairs(("none", "dcor"), ("final",), ("vggish", "openl3"))
    intervals = pd.DataFrame(
        [
            ("Baseline", "-", 1.0, "mAP", 0.38, 0.42, np.nan),
            ("Teacher_LR", "vggish", 1.0, "mAP", 0.40, 0.50, 0.30),
            ("EAsT_Final", "vggish", 1.0, "mAP", 0.40, 0.44, 0.01),
        ],
        columns=["system", "teacher", "fraction", "metric", "ci_low", "ci_high", "p_value"],
    )
    table = paper_table(_results(), expected, ("mAP",), intervals=intervals)
    final = table[(table["system"] == "EAsT_Final") & (table["teacher"] == "vggish")].iloc[0]
    assert (final["ci_low"], final["ci_high"]) == (0.40, 0.44)
    assert final["ci95"] == pytest.approx(0.02) and final["p_value"] == 0.01
    base = table[table["system"] == "Baseline"]  # the teacher-free row under each teacher
    assert base["ci_low"].tolist() == [0.38, 0.38] and base["p_value"].isna().all()
    wide = format_table(table)
    assert wide.loc["EAsT_Final", ("VGGish", "mAP")] == "0.410 [0.400, 0.440]†"  # as it is
    assert wide.loc["Teacher_LR", ("VGGish", "mAP")] == "0.450 [0.400, 0.500]"
    assert wide.loc["Baseline", ("OpenL3", "mAP")] == "0.400 [0.380, 0.420]"
    assert comparisons(table) == 2  # Teacher_LR and EAsT_Final under VGGish
    note = ci_note(1000, comparisons(table))
    assert "B = 1000" in note and "p < 0.05 after Holm's correction over the 2 comparisons" in note


def test_holm_adjusts_each_column_of_tests_as_the_step_down_rule_says() -> None:
    p = pd.Series([0.01, np.nan, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): × 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04,
    # then non-decreasing: 0.02, 0.03, 0.06, 0.06
    expected = [0.03, np.nan, 0.06, 0.06, 0.02]
    np.testing.assert_allclose(holm(p).to_numpy(), expected)
    assert holm(pd.Series([np.nan, np.nan])).isna().all()
    assert holm(pd.Series([0.3, 0.6])).tolist() == [0.6, 0.6]  # capped at 1 where needed


def test_the_mark_is_holm_corrected_within_a_column() -> None:
    """Two systems at p = 0.03 and 0.04 against one Baseline: each below 0.05 alone, but
    after Holm's correction over the column's two tests neither (0.06, 0.06) is marked."""
    expected = expected_pairs(("none", "dcor"), ("final", "all"), ("vggish",))
    intervals = pd.DataFrame(
        [
            ("Baseline", "-", 1.0, "mAP", 0.38, 0.42, np.nan),
            ("EAsT_Final", "vggish", 1.0, "mAP", 0.40, 0.44, 0.03),
            ("EAsT_All", "vggish", 1.0, "mAP", 0.40, 0.44, 0.04),
        ],
        columns=["system", "teacher", "fraction", "metric", "ci_low", "ci_high", "p_value"],
    )
    results = pd.concat(
        [_results(), pd.DataFrame([_row("dcor", "vggish", "all", 0.8, 0, 0.5, 0.42)])]
    )
    table = paper_table(results, expected, ("mAP",), intervals=intervals)
    final = table[(table["system"] == "EAsT_Final") & (table["teacher"] == "vggish")].iloc[0]
    assert final["p_value"] == 0.03 and final["p_holm"] == pytest.approx(0.06)
    wide = format_table(table)
    assert not wide.loc["EAsT_Final", ("VGGish", "mAP")].endswith("†")
    assert not wide.loc["EAsT_All", ("VGGish", "mAP")].endswith("†")


def test_an_extra_system_is_its_own_row_repeated_under_every_teacher() -> None:
    authors = "Baseline (authors' config)"
    results = _results().assign(extra_system="")
    extra = pd.DataFrame(
        [
            {
                **_row("none", None, None, 0.0, seed, 0.5, 0.30 + 0.01 * seed),
                "extra_system": authors,
            }
            for seed in (1, 2, 3)
        ]
    )
    expected = expected_pairs(("none", "dcor"), ("final",), ("vggish", "openl3"), (authors,))
    table = paper_table(pd.concat([results, extra], ignore_index=True), expected, ("mAP",))
    wide = format_table(table)
    assert list(wide.index) == ["Baseline", authors, "Teacher_LR", "EAsT_Final"]
    row = table[table["system"] == authors]
    assert list(row["teacher"]) == ["vggish", "openl3"]
    assert row["mean"].tolist() == pytest.approx([0.32, 0.32])
    base = table[table["system"] == "Baseline"]  # our baseline is not mixed with theirs
    assert base["mean"].tolist() == pytest.approx([0.40, 0.40])


def test_limited_data_figure_is_a_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    shown: list[list[str]] = []
    real = plt.Axes.set_xticks

    def record(ax: plt.Axes, ticks: list[float], labels: list[str]) -> object:
        shown.append(list(labels))
        return real(ax, ticks, labels)

    monkeypatch.setattr(plt.Axes, "set_xticks", record)
    path = limited_data_figure(_results(), "mAP", tmp_path / "fig.png")
    assert shown == [["10 %", "100 %"]]  # fractions as percentages, not 10⁻¹
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_the_figures_band_is_the_bootstrap_interval_when_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the study's bootstrap intervals the band is their bounds (asymmetric, as a
    percentile interval may be); without, the mean ± the Student-t half-width over seeds."""
    import matplotlib.pyplot as plt

    bands: dict[str, tuple[list[float], list[float]]] = {}
    real = plt.Axes.fill_between

    def record(ax: plt.Axes, x: pd.Series, y1: pd.Series, y2: pd.Series, **kw: object) -> object:
        bands[ax.get_lines()[-1].get_label()] = (list(y1), list(y2))
        return real(ax, x, y1, y2, **kw)

    monkeypatch.setattr(plt.Axes, "fill_between", record)
    intervals = pd.DataFrame(
        {
            "system": ["EAsT_Final", "EAsT_Final"],
            "teacher": ["vggish", "vggish"],
            "fraction": [0.1, 1.0],
            "metric": ["mAP", "mAP"],
            "ci_low": [0.30, 0.35],
            "ci_high": [0.45, 0.47],
            "p_value": [0.5, 0.01],
        }
    )
    limited_data_figure(_results(), "mAP", tmp_path / "bootstrap.png", intervals)
    assert bands["EAsT_Final"] == ([0.30, 0.35], [0.45, 0.47])
    bands.clear()
    limited_data_figure(_results(), "mAP", tmp_path / "t.png")
    low, high = map(np.array, bands["EAsT_Final"])
    means = np.array([0.38, 0.41])  # λ 0.8 (best on validation) at 10 % and 100 %
    half = stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3)  # seeds at the mean and ± 0.01: sd 0.01
    assert low == pytest.approx(means - half) and high == pytest.approx(means + half)


def test_our_cells_beside_the_published_ones() -> None:
    from east_ray.analysis.tables import (
        beside_note,
        beside_paper,
        compared_cells,
        format_beside_paper,
        paper_reference,
    )

    reference = paper_reference("openmic")
    assert paper_reference("synthmic").empty
    expected = expected_pairs(("none", "dcor"), ("final",), ("vggish", "openl3"))
    compared = beside_paper(paper_table(_results(), expected, ("mAP", "F1")), reference)
    base = compared[(compared["system"] == "Baseline") & (compared["metric"] == "mAP")]
    assert len(base) == 1 and base["teacher"].item() == "-"  # once, not per teacher column
    assert base["ours"].item() == pytest.approx(0.40) and base["seeds"].item() == 3
    assert base["diff"].item() == pytest.approx(0.40 - 0.819)
    # three seeds: the interval holds the seeds' spread, so "*" says we differ
    assert base["beyond_ci"].item() == 1 and base["mark"].item() == "*"
    final = compared[(compared["system"] == "EAsT_Final") & (compared["teacher"] == "vggish")]
    assert set(final["metric"]) == {"mAP", "F1"}
    assert compared_cells(compared) == 6  # Baseline, Teacher_LR and EAsT_Final (VGGish) ran
    wide = format_beside_paper(compared)
    assert wide.index[0] == ("Baseline", "-")
    assert wide.loc[("EAsT_Final", "vggish"), "mAP"].startswith("0.410 / 0.842 (-0.432*")
    assert wide.loc[("KD", "passt"), "mAP"] == "missing / 0.851"  # published, not run here
    assert "Our figures set beside a published one: 6 with 3 seeds." in beside_note(compared)


def test_one_seed_gets_the_weaker_mark_and_an_unpublished_cell_a_dash() -> None:
    from east_ray.analysis.tables import beside_paper, format_beside_paper, paper_reference

    one = _results()[lambda f: f["seed"] == 1]
    intervals = pd.DataFrame(  # test clips only: one seed's bootstrap interval
        [
            ("Baseline", "-", 1.0, "mAP", 0.39, 0.41, np.nan),
            ("EAsT_Final", "vggish", 1.0, "mAP", 0.30, 0.90, 0.5),
        ],
        columns=["system", "teacher", "fraction", "metric", "ci_low", "ci_high", "p_value"],
    )
    expected = expected_pairs(("none", "dcor"), ("final", "all"), ("vggish",))
    table = paper_table(one, expected, ("mAP",), intervals=intervals)
    compared = beside_paper(table, paper_reference("openmic"))
    assert set(compared["metric"]) == {"mAP"}  # the published F1 is not asked for here
    wide = format_beside_paper(compared)["mAP"]
    assert wide[("Baseline", "-")] == "0.400 / 0.819 (-0.419°)"
    assert wide[("EAsT_Final", "vggish")] == "0.410 / 0.842 (-0.432)"  # inside the interval
    assert wide[("EAsT_All", "vggish")] == "missing / 0.836"
    assert (compared["seeds"] <= 1).all()
