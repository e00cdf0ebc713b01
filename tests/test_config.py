"""Study specs: the shipped files load, bad specs are reported in full, cells collapse."""

import copy
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from east_ray import config
from east_ray.config import (
    STUDENT_OPTIONS,
    STUDIES_DIR,
    SpecError,
    StudySpec,
    expand_cells,
    load_study,
    parse_study,
)
from east_ray.study import cli as study

SHIPPED = sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))


def _table(name: str = "openmic") -> dict[str, Any]:
    with (STUDIES_DIR / f"{name}.toml").open("rb") as fh:
        return tomllib.load(fh)


def _problems(table: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_study(table, "test.toml")
    return info.value.problems


def test_the_three_studies_ship_and_load() -> None:
    assert SHIPPED == ["demo", "magnatagatune", "openmic"]
    for name in SHIPPED:
        spec = load_study(name)
        assert isinstance(spec, StudySpec) and spec.name == name


def test_paper_recipes() -> None:
    openmic, mtat = load_study("openmic"), load_study("magnatagatune")
    assert (openmic.features.sample_rate, openmic.features.n_mels) == (32000, 128)
    assert (mtat.features.sample_rate, mtat.features.n_mels) == (16000, 96)
    assert openmic.features.hop_seconds == pytest.approx(0.01)
    assert (openmic.recipe.plateau_patience, openmic.recipe.early_stop_patience) == (8, 15)
    assert (mtat.recipe.plateau_patience, mtat.recipe.early_stop_patience) == (5, 12)
    assert openmic.recipe.mixup_alpha == 0.3 and mtat.recipe.mixup_alpha == 0.0
    assert openmic.recipe.lr == mtat.recipe.lr == 1e-4
    assert openmic.recipe.alignment == mtat.recipe.alignment == "authors"


def test_every_problem_is_reported_at_once_with_field_value_and_allowed() -> None:
    table = _table()
    table["grid"]["teachers"] = ["vggish", "wav2vec"]
    table["grid"]["lams"] = [0.8, 1.5]
    table["grid"]["fractions"] = [0.0, 1.0]
    table["grid"]["stages"] = []
    table["recipe"]["learning_rate"] = 0.1  # typo of lr
    table["student"] = "resnet"
    problems = _problems(table)
    assert len(problems) == 6, problems
    text = "\n".join(problems)
    assert "grid.teachers[1]: got 'wav2vec', expected one of: vggish, openl3" in text
    assert "grid.lams[1]: got 1.5, expected a number in [0, 1]" in text
    assert "grid.fractions[0]: got 0.0, expected a number in (0, 1]" in text
    assert "grid.stages: empty" in text
    assert "recipe.learning_rate: unknown key; known keys: lr," in text
    assert "student: got 'resnet', expected one of: cp_resnet, mobile_fcn" in text


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.update(colour="red"), "colour: unknown key; known keys: name, dataset"),
        (lambda t: t["grid"].update(regularizers=[]), "grid.regularizers: empty"),
        (
            lambda t: t["grid"].update(regularizers=["dcor", "l2"]),
            "grid.regularizers[1]: got 'l2', expected one of: none, kd, cos_diff, dcor, dcor_kd",
        ),
        (
            lambda t: t["grid"].update(lams="0.8"),
            "grid.lams: got '0.8', expected a list of numbers",
        ),
        (lambda t: t["grid"].update(seeds=[1, 1]), "grid.seeds: got [1, 1], expected no repeated"),
        (lambda t: t.pop("features"), "features: missing, expected a table"),
        (lambda t: t["features"].pop("n_mels"), "features.n_mels: missing, expected an integer"),
        (
            lambda t: t["recipe"].update(batch_size=16.5),
            "recipe.batch_size: got 16.5, expected an integer",
        ),
        (lambda t: t["recipe"].update(batch_size=True), "recipe.batch_size: got True"),
        (
            lambda t: t["recipe"].update(alignment="hops"),
            "recipe.alignment: got 'hops', expected one of: authors, time",
        ),
        (
            lambda t: t["resources"].update(gpus_per_trial=1.5),
            "resources.gpus_per_trial: got 1.5, expected a fraction in [0, 1] or a whole number",
        ),
        (
            lambda t: t["features"].update(f_max=20000.0),
            "features.f_max: got 20000.0, expected in (f_min, sample_rate / 2 = 16000]",
        ),
        (
            lambda t: t["student_options"].update(depth=26),
            "student_options.depth: unknown option for 'cp_resnet'; accepted options: rho",
        ),
        (lambda t: t.update(dataset="gtzan"), "dataset: got 'gtzan', expected one of: openmic"),
        (
            lambda t: t.update(student="mobile_fcn", student_options={"n_mels": 96}),
            "student_options.n_mels: got 96, but features.n_mels is 128",
        ),
    ],
)
def test_each_kind_of_bad_spec_has_a_clear_message(edit: Any, message: str) -> None:
    table = copy.deepcopy(_table())
    edit(table)
    assert any(message in p for p in _problems(table)), _problems(table)


def test_the_names_a_spec_may_use_are_the_registries_names() -> None:
    from east_ray.models import STUDENTS, student_options
    from east_ray.teachers import TEACHERS

    assert {name: student_options(name) for name in STUDENTS} == STUDENT_OPTIONS
    assert set(config.TEACHERS) == set(TEACHERS)


def test_a_dry_run_imports_neither_torch_nor_ray() -> None:
    probe = (
        "import sys\n"
        "from east_ray.study.cli import main\n"
        "assert main(['openmic', '--dry-run']) == 0\n"
        "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[-1] == "[]"


def test_baseline_only_study_needs_no_teacher_axes() -> None:
    table = _table()
    table["grid"] = {"regularizers": ["none"], "fractions": [0.1, 1.0], "seeds": [1, 2, 3]}
    cells = expand_cells(parse_study(table))
    assert len(cells) == 6 and {c.teacher for c in cells} == {None}


def test_bad_toml_and_missing_study_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_study(bad)
    with pytest.raises(FileNotFoundError, match="known studies: demo, magnatagatune, openmic"):
        load_study("no_such_study")


def _hand_count(teachers: int, stages: int, lams: int) -> int:
    """Cells per (fraction, seed): one baseline, kd per teacher × λ, the rest also × stage."""
    return 1 + teachers * lams + 3 * teachers * stages * lams


@pytest.mark.parametrize(
    ("name", "per_fraction_seed", "fractions_seeds"),
    [
        ("openmic", _hand_count(4, 2, 2), 1),
        ("magnatagatune", _hand_count(4, 2, 1), 1),
        ("demo", _hand_count(2, 2, 2), 2),
    ],
)
def test_dry_run_counts_match_hand_count(
    name: str, per_fraction_seed: int, fractions_seeds: int, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = per_fraction_seed * fractions_seeds
    assert (name, expected) in {("openmic", 57), ("magnatagatune", 29), ("demo", 58)}
    assert study.main([name, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{expected} cells in study {name!r}" in out
    assert len(expand_cells(load_study(name))) == expected


def test_cells_collapse_and_ids_are_stable_and_unique() -> None:
    table = _table("demo")
    table["grid"]["lams"] = [0.0, 0.5]  # λ = 0 is the baseline whatever the regularizer
    spec = parse_study(table)
    cells = expand_cells(spec)
    baselines = [c for c in cells if c.regularizer == "none"]
    assert len(baselines) == 2  # once per fraction (one seed), not per teacher × λ × stage
    assert all(c.teacher is None and c.stage is None and c.lam == 0 for c in baselines)
    assert all(c.stage is None for c in cells if c.regularizer == "kd")
    ids = [c.cell_id for c in cells]
    assert len(set(ids)) == len(ids)
    again = [c.cell_id for c in expand_cells(parse_study(copy.deepcopy(table)))]
    assert ids == again
    assert ids[0].startswith("none-frac0.5-seed1223-")


def test_dry_run_cli_reports_spec_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (STUDIES_DIR / "demo.toml").read_text()
    assert "lams = [0.5, 0.8]" in text
    path = tmp_path / "broken.toml"
    path.write_text(text.replace("lams = [0.5, 0.8]", "lams = [2.0]"))
    assert study.main([str(path), "--dry-run"]) == 2
    assert "grid.lams[0]: got 2.0, expected a number in [0, 1]" in capsys.readouterr().err
