"""Study specs: the shipped files load, bad specs are reported in full, cells collapse."""

import copy
import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from east_ray import config
from east_ray.catalog import STUDENTS, uses_stage
from east_ray.config import (
    STUDIES_DIR,
    SpecError,
    StudySpec,
    TeacherLRRecipe,
    expand_cells,
    load_study,
    parse_study,
)
from east_ray.study import __main__ as study

SHIPPED = sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))


def _table(name: str = "openmic") -> dict[str, Any]:
    with (STUDIES_DIR / f"{name}.toml").open("rb") as fh:
        return tomllib.load(fh)


def _problems(table: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_study(table, "test.toml")
    return info.value.problems


def test_the_shipped_studies_load() -> None:
    assert SHIPPED == [
        "demo",
        "demo_distances",
        "demo_layers",
        "demo_teacher_set",
        "distances",
        "magnatagatune",
        "magnatagatune_limited",
        "modern_teachers",
        "openmic",
        "openmic_limited",
        "paper",
    ]
    for name in SHIPPED:
        study = config.load_parts(name)
        assert study.name == name and all(isinstance(p, StudySpec) for p in study.parts)
    paper = config.load_parts("paper")
    assert paper.parts == (load_study("openmic"), load_study("magnatagatune"))


def test_a_study_of_studies_takes_its_parts_as_they_load_alone(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.toml").write_text('extends = "openmic"\nname = "mine"\n')
    both = tmp_path / "both.toml"
    both.write_text('name = "both"\nincludes = ["sub/mine.toml", "magnatagatune"]\n')
    study = config.load_parts(both)  # a relative path is taken from the including file
    assert [p.name for p in study.parts] == ["mine", "magnatagatune"]
    assert study.parts[0] == dataclasses.replace(load_study("openmic"), name="mine")
    with pytest.raises(SpecError, match=r"study 'both' is made of the studies mine, magnatagatune"):
        load_study(both)

    both.write_text('name = "both/x"\nincludes = ["openmic", "openmic"]\nseeds = [1]\n')
    with pytest.raises(SpecError) as info:
        config.load_parts(both)
    assert info.value.problems == [
        "seeds: not allowed beside includes; set it in the included study",
        "name: got 'both/x', expected letters, digits, '_', '.' or '-' (a folder name), "
        "starting with a letter or digit",
    ]
    both.write_text('name = "both"\nincludes = ["openmic", "openmic"]\n')
    with pytest.raises(
        SpecError, match="includes: the parts' names must differ, got openmic, openmic"
    ):
        config.load_parts(both)
    both.write_text('name = "both"\nincludes = "openmic"\n')
    with pytest.raises(SpecError, match="includes: got 'openmic', expected a list of study names"):
        config.load_parts(both)


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


def test_teacher_lr_recipes_are_the_authors() -> None:
    openmic, mtat, demo = (load_study(n).teacher_lr for n in ("openmic", "magnatagatune", "demo"))
    assert demo == TeacherLRRecipe() == dataclasses.replace(openmic, lr_by_teacher={})
    assert (demo.lr, demo.batch_size, demo.grad_clip, demo.max_steps) == (0.1, 16, 1.0, 80_000)
    assert (demo.plateau_factor, demo.plateau_patience, demo.early_stop_patience) == (0.1, 1, 3)
    lrs = {t: (openmic.lr_for(t), mtat.lr_for(t)) for t in ("vggish", "openl3", "passt", "panns")}
    assert lrs == {
        "vggish": (0.2, 0.1),
        "openl3": (0.1, 0.1),
        "passt": (0.1, 0.2),
        "panns": (0.1, 0.1),
    }


def test_the_recipe_options_default_to_the_authors_and_list_the_default_first() -> None:
    authors = {
        "specaug_on": "log_power",
        "mixup_partner": "training_set",
        "precision": "fp32",
        "kd_mask": "labelled",
        "alignment": "authors",
        "last_batch": "keep",
        "partial_epoch": "skip",
        "early_stop": "loss",
    }
    # the one default that is not the authors': their per-clip mel jitter needs extra
    # preparation and 4x the training clips' bytes (east_ray.data.meljitter)
    ours = {"mel_jitter": "off"}
    # how fast, not what: compiled where it pays (CUDA); each CPU's own kernels
    runtime = {"compile": "auto", "cpu_numerics": "native"}
    assert tuple(runtime) == config.RUNTIME_OPTIONS
    recipe = config.Recipe()
    defaults = {**authors, **ours, **runtime}
    assert {name: getattr(recipe, name) for name in config.RECIPE_CHOICES} == defaults
    assert {name: choices[0] for name, choices in config.RECIPE_CHOICES.items()} == defaults
    table = _table()
    table["recipe"].update(
        specaug_on="mixed_input", mixup_partner="batch", precision="bf16", compile="off"
    )
    spec = parse_study(table, "test.toml")
    assert (spec.recipe.specaug_on, spec.recipe.mixup_partner) == ("mixed_input", "batch")
    assert (spec.recipe.precision, spec.recipe.kd_mask) == ("bf16", "labelled")
    assert spec.recipe.compile == "off"


def test_every_problem_is_reported_at_once_with_field_value_and_allowed() -> None:
    table = _table()
    table["grid"].pop("lam_by_teacher")  # choose λ among `lams` instead
    table["grid"]["teachers"] = ["vggish", "wav2vec"]
    table["grid"]["lams"] = [0.8, 1.5]
    table["grid"]["fractions"] = [0.0, 1.0]
    table["grid"]["stages"] = []
    table["recipe"]["learning_rate"] = 0.1  # typo of lr
    table["student"] = "resnet"
    problems = _problems(table)
    assert len(problems) == 6, problems
    text = "\n".join(problems)
    assert (
        "grid.teachers[1]: unknown teacher 'wav2vec'; known teachers: ast, clap_music, dasheng"
        in text
    )
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
        (
            lambda t: (
                t.update(student="mobile_fcn", student_options={}),
                t["features"].update(n_mels=64),
            ),
            "features.n_mels: got 64, but mobile_fcn is built for 96 or 128 mel bands",
        ),
        (lambda t: t.update(name="a/b"), "name: got 'a/b', expected letters, digits"),
        (
            lambda t: t["teacher_lr"]["lr_by_teacher"].update(wav2vec=0.2),
            "teacher_lr.lr_by_teacher.wav2vec: unknown teacher 'wav2vec'; known teachers",
        ),
        (
            lambda t: t["teacher_lr"]["lr_by_teacher"].update(vggish=0.0),
            "teacher_lr.lr_by_teacher.vggish: got 0.0, expected a number > 0",
        ),
        (
            lambda t: t["teacher_lr"].update(lr_by_teacher={"vggish": "fast"}),
            "teacher_lr.lr_by_teacher: got {'vggish': 'fast'}, expected a table of numbers",
        ),
        (
            lambda t: t["teacher_lr"].update(lr=-0.1),
            "teacher_lr.lr: got -0.1, expected a number > 0",
        ),
        (
            lambda t: t["teacher_lr"].update(max_steps=0),
            "teacher_lr.max_steps: got 0, expected a number > 0",
        ),
        (
            lambda t: t["teacher_lr"].update(grad_clip=0),
            "teacher_lr.grad_clip: got 0.0, expected a number > 0",
        ),
        (
            lambda t: t["teacher_lr"].update(early_stop_patience=-1),
            "teacher_lr.early_stop_patience: got -1, expected a number >= 0",
        ),
        (
            lambda t: t["teacher_lr"].update(plateau_factor=2.0),
            "teacher_lr.plateau_factor: got 2.0, expected a number in [0, 1]",
        ),
        (
            lambda t: t["teacher_lr"].update(momentum=0.9),
            "teacher_lr.momentum: unknown key; known keys: lr, lr_by_teacher, batch_size",
        ),
        (
            lambda t: t["recipe"].update(specaug_on="after"),
            "recipe.specaug_on: got 'after', expected one of: log_power, mixed_input",
        ),
        (
            lambda t: t["recipe"].update(mixup_partner="epoch"),
            "recipe.mixup_partner: got 'epoch', expected one of: training_set, batch",
        ),
        (
            lambda t: t["recipe"].update(precision="fp16"),
            "recipe.precision: got 'fp16', expected one of: fp32, tf32, bf16",
        ),
        (
            lambda t: t["recipe"].update(compile=True),
            "recipe.compile: got True, expected a string",
        ),
        (
            lambda t: t["recipe"].update(compile="max-autotune"),
            "recipe.compile: got 'max-autotune', expected one of: auto, off, default, "
            "reduce-overhead",
        ),
        (
            lambda t: t["recipe"].update(kd_mask=True),
            "recipe.kd_mask: got True, expected a string",
        ),
        (
            lambda t: t["recipe"].update(kd_mask="labeled"),
            "recipe.kd_mask: got 'labeled', expected one of: labelled, all",
        ),
    ],
)
def test_each_kind_of_bad_spec_has_a_clear_message(edit: Any, message: str) -> None:
    table = copy.deepcopy(_table())
    edit(table)
    assert any(message in p for p in _problems(table)), _problems(table)


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_each_student_row_lists_the_options_its_class_takes(student: str) -> None:
    """A spec is checked against the row, the student built by the class: they agree."""
    import inspect

    from east_ray.models import student_class

    params = inspect.signature(student_class(student)).parameters
    assert tuple(p for p in params if p != "num_classes") == STUDENTS[student].options


@pytest.mark.parametrize("student", sorted(n for n, row in STUDENTS.items() if row.n_mels))
def test_the_mel_bands_a_spec_allows_are_those_the_student_builds_with(student: str) -> None:
    from east_ray.models import build_student

    for n_mels in range(16, 257, 16):
        try:
            build_student(student, 5, n_mels=n_mels)
        except ValueError:
            assert n_mels not in STUDENTS[student].n_mels
        else:
            assert n_mels in STUDENTS[student].n_mels


def test_a_dry_run_imports_neither_torch_nor_ray() -> None:
    probe = (
        "import sys\n"
        "from east_ray.study.__main__ import main\n"
        "assert main(['openmic', '--dry-run']) == 0\n"
        "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[-1] == "[]"


def test_lambda_per_teacher_expands_to_that_teachers_cells_only() -> None:
    spec = load_study("openmic")
    assert spec.grid.lams == ()
    lams = {(c.teacher, c.lam) for c in expand_cells(spec) if c.teacher}
    assert lams == {("vggish", 0.8), ("openl3", 0.8), ("passt", 0.9), ("panns", 0.9)}
    table = _table()
    table["grid"]["lam_by_teacher"] = {"vggish": 0.8}
    table["grid"]["lams"] = [0.5, 0.7]  # the other teachers choose among these
    cells = expand_cells(parse_study(table))
    by_teacher = {t: sorted({c.lam for c in cells if c.teacher == t}) for t in ("vggish", "passt")}
    assert by_teacher == {"vggish": [0.8], "passt": [0.5, 0.7]}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {"lam_by_teacher": {"wav2vec": 0.5}},
            "grid.lam_by_teacher.wav2vec: not one of grid.teachers",
        ),
        ({"lam_by_teacher": {"passt": 1.5}}, "grid.lam_by_teacher.passt: got 1.5"),
        (
            {"lam_by_teacher": {"vggish": 0.8}},  # passt, openl3, panns have no λ then
            "grid.lams: empty, but the regularizers",
        ),
    ],
)
def test_bad_lambda_per_teacher_is_reported(edit: dict[str, Any], message: str) -> None:
    table = _table()
    table["grid"].pop("lam_by_teacher")
    table["grid"].update(edit)
    assert any(message in p for p in _problems(table)), _problems(table)


def test_an_extra_system_is_a_baseline_with_its_own_student_and_recipe() -> None:
    from east_ray.train.trial import TrialSpec

    spec = load_study("openmic")
    cells = expand_cells(spec)
    (authors,) = [c for c in cells if c.extra_system]
    assert (authors.regularizer, authors.teacher, authors.lam) == ("none", None, 0.0)
    assert authors.cell_id.startswith("baseline_authors_config-none-frac1-seed1223-")
    trial = TrialSpec.for_cell(spec, authors, 20)
    assert trial.student_options == {"rho": 3, "base_channels": 128}
    assert trial.recipe.early_stop_patience == 20
    assert trial.recipe.plateau_patience == spec.recipe.plateau_patience
    ours = TrialSpec.for_cell(
        spec, next(c for c in cells if c.regularizer == "none" and not c.extra_system), 20
    )
    assert ours.student_options["rho"] == 7 and ours.recipe.early_stop_patience == 15
    # adding a system leaves every grid cell's id as it was
    without = dataclasses.replace(spec, systems=())
    assert [c.cell_id for c in expand_cells(without)] == [
        c.cell_id for c in cells if not c.extra_system
    ]


@pytest.mark.parametrize(
    ("system", "message"),
    [
        ({"name": "B", "recipe": {"patience": 3}}, "systems[0].recipe.patience: unknown key"),
        (
            {"name": "B", "recipe": {"lr": "fast"}},
            "systems[0].recipe.lr: got 'fast', expected a number",
        ),
        (
            {"name": "B", "recipe": {"lr": -1.0}},
            "systems[0].recipe.lr: got -1.0, expected a number > 0",
        ),
        (
            {"name": "B", "student_options": {"depth": 3}},
            "systems[0].student_options.depth: unknown option",
        ),
        ({"name": " "}, "systems[0].name: empty"),
        ({"recipe": {}}, "systems[0].name: missing"),
    ],
)
def test_bad_extra_systems_are_reported(system: dict[str, Any], message: str) -> None:
    table = _table()
    table["systems"] = [system]
    assert any(message in p for p in _problems(table)), _problems(table)


def test_the_tables_say_which_rule_chose_lambda() -> None:
    from east_ray.study.store import lambda_rule

    assert lambda_rule(load_study("openmic").grid) == (
        "λ fixed per teacher: vggish 0.8, openl3 0.8, passt 0.9, panns 0.9"
    )
    assert lambda_rule(load_study("magnatagatune").grid) == "λ = 0.6"
    grid = load_study("openmic").grid
    free = dataclasses.replace(grid, lam_by_teacher={}, lams=(0.5, 0.8))
    assert lambda_rule(free) == "λ chosen on validation mAP from 0.5, 0.8"
    mixed = dataclasses.replace(free, lam_by_teacher={"vggish": 0.8})
    assert lambda_rule(mixed) == (
        "λ fixed per teacher: vggish 0.8; λ chosen on validation mAP from 0.5, 0.8 "
        "for openl3, passt, panns"
    )
    # a paper dataset's fixed λ is the authors', released for two systems only
    assert lambda_rule(load_study("magnatagatune").grid, published=True) == (
        "λ = 0.6; λ released for EAsT_Final and EAsT_KD, assumed the same for KD, Cos-Diff, All"
    )
    assert "assumed" not in lambda_rule(free, published=True)  # chosen, not assumed


def test_baseline_only_study_needs_no_teacher_axes() -> None:
    table = _table()
    table["grid"] = {"regularizers": ["none"], "fractions": [0.1, 1.0], "seeds": [1, 2, 3]}
    table.pop("systems")
    cells = expand_cells(parse_study(table))
    assert len(cells) == 6 and {c.teacher for c in cells} == {None}


def test_a_study_extends_another_and_changes_only_what_it_says() -> None:
    base, limited = load_study("openmic"), load_study("openmic_limited")
    assert limited.name == "openmic_limited"
    assert limited.grid.fractions == (0.05, 0.1, 0.25, 0.5, 1.0)
    assert limited.grid.stages == ("final",)
    assert limited.grid.lam_by_teacher == base.grid.lam_by_teacher  # kept from the base
    assert limited.grid.teachers == base.grid.teachers
    for kept in ("recipe", "features", "student_options", "systems", "resources"):
        assert getattr(limited, kept) == getattr(base, kept), kept


def _fixed_lambda_parent(tmp_path: Path) -> Path:
    """A spec that fixes musicnn's λ at 0.8 (as the paper fixes λ per teacher)."""
    parent = tmp_path / "parent.toml"
    parent.write_text(
        'extends = "demo"\nname = "parent"\n[grid]\nlams = []\nlam_by_teacher = { musicnn = 0.8 }\n'
    )
    assert load_study(parent).grid.lam_by_teacher == {"musicnn": 0.8}
    return parent


def test_an_extending_spec_clears_a_table_with_an_empty_one(tmp_path: Path) -> None:
    """`lam_by_teacher = {}` clears the parent's `musicnn = 0.8`, so the child's λ apply."""
    child = tmp_path / "child.toml"
    child.write_text(
        f'extends = "{_fixed_lambda_parent(tmp_path)}"\nname = "child"\n[grid]\n'
        "lams = [0.1, 0.3]\nlam_by_teacher = {}\n"
    )
    spec = load_study(child)
    assert spec.grid.lam_by_teacher == {} and spec.grid.lams == (0.1, 0.3)
    assert {c.lam for c in expand_cells(spec) if c.teacher} == {0.1, 0.3}


def test_lams_that_every_teacher_overrides_are_an_error_naming_both(tmp_path: Path) -> None:
    """The surprise the clearing rule removes: a child that sets `lams` but keeps the
    parent's fixed λ for every teacher would train none of its `lams`."""
    child = tmp_path / "child.toml"
    child.write_text(
        f'extends = "{_fixed_lambda_parent(tmp_path)}"\nname = "child"\n[grid]\nlams = [0.1, 0.3]\n'
    )
    with pytest.raises(SpecError) as caught:
        load_study(child)
    (problem,) = caught.value.problems
    assert problem.startswith("grid.lams: [0.1, 0.3] would be ignored")
    assert "grid.lam_by_teacher (musicnn = 0.8)" in problem and "lam_by_teacher = {}" in problem


def test_extends_errors_name_the_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(f'extends = "{b}"\nname = "a"\n')
    b.write_text(f'extends = "{a}"\nname = "b"\n')
    with pytest.raises(SpecError, match="extends: a cycle"):
        load_study(a)
    b.write_text("extends = 3\n")
    with pytest.raises(SpecError, match="extends: got 3, expected a study name or path"):
        load_study(b)


def test_bad_toml_and_missing_study_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_study(bad)
    with pytest.raises(FileNotFoundError, match="known studies: demo, demo_distances, demo_layers"):
        load_study("no_such_study")


def _hand_count(teachers: int, stages: int, lams: int) -> int:
    """Cells per (fraction, seed): one baseline, kd per teacher × λ, the rest also × stage."""
    return 1 + teachers * lams + 3 * teachers * stages * lams


def _demo_hand_count() -> tuple[str, int, int]:
    """The demo's cells counted by hand from its axes, whatever values they hold (its size
    is a budget choice, see studies/demo.toml): one baseline, then per teacher, λ and
    regularizer one cell, or one per stage where the regularizer has stages."""
    spec = load_study("demo")
    g = spec.grid
    per = 1 + len(spec.systems)
    for teacher in g.teachers:
        for reg in g.regularizers:
            if reg != "none":
                per += len(g.lams_of(teacher)) * (len(g.stages) if uses_stage(reg) else 1)
    return "demo", per, len(g.fractions) * len(g.seeds)


@pytest.mark.parametrize(
    ("name", "per_fraction_seed", "fractions_seeds"),
    [
        ("openmic", _hand_count(4, 2, 1) + 1, 1),  # the authors' λ; + their baseline
        ("magnatagatune", _hand_count(4, 2, 1) + 1, 1),
        _demo_hand_count(),
    ],
)
def test_dry_run_counts_match_hand_count(
    name: str, per_fraction_seed: int, fractions_seeds: int, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = per_fraction_seed * fractions_seeds
    if name != "demo":
        assert (name, expected) in {("openmic", 30), ("magnatagatune", 30)}
    assert study.main([name, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{expected} cells in study {name!r}" in out
    assert len(expand_cells(load_study(name))) == expected


def test_the_demo_answers_the_papers_two_questions_over_seeds() -> None:
    """Issue 27: the demo trains Baseline, KD and EAsT_Final for a teacher (Teacher_LR
    comes with it) at a limited and the full training fraction over at least three seeds,
    at two λ fixed in advance (the authors' 0.8 and a lower one), each in its own table,
    with runs of equal length (no early stopping)."""
    spec = load_study("demo")
    cells = expand_cells(spec)
    rows = [("none", None), ("kd", None), ("dcor", "final")]
    g = spec.grid
    assert min(g.fractions) < 1.0 and max(g.fractions) == 1.0

    def seeds(
        teacher: str | None, row: tuple[str, str | None], lam: float, fraction: float
    ) -> set[int]:
        return {
            c.seed
            for c in cells
            if (c.regularizer, c.stage) == row
            and c.teacher == (teacher if row[0] != "none" else None)
            and (row[0] == "none" or c.lam == lam)
            and c.fraction == fraction
        }

    shown = [
        t
        for t in g.teachers
        if len(g.lams_of(t)) == 2
        and 0.8 in g.lams_of(t)
        and min(g.lams_of(t)) < 0.8
        and all(
            len(seeds(t, row, lam, f)) >= 3
            for row in rows
            for lam in g.lams_of(t)
            for f in g.fractions
        )
    ]
    assert shown, f"no teacher of {g.teachers} has the three systems at two λ over 3 seeds"
    assert g.lam_choice == "each" and spec.recipe.early_stop == "off"


def test_cells_collapse_and_ids_are_stable_and_unique() -> None:
    table = _table("demo")
    table["grid"] = {
        "teachers": ["musicnn", "handcrafted"],
        "regularizers": ["none", "kd", "cos_diff", "dcor", "dcor_kd"],
        "stages": ["final", "all"],
        "lams": [0.0, 0.5],  # λ = 0 is the baseline whatever the regularizer
        "fractions": [0.5, 1.0],
        "seeds": [1223],
    }
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
    path = tmp_path / "broken.toml"
    path.write_text(f'extends = "{STUDIES_DIR / "demo.toml"}"\n[grid]\nlams = [2.0]\n')
    assert study.main([str(path), "--dry-run"]) == 2
    assert "grid.lams[0]: got 2.0, expected a number in [0, 1]" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("gpus", "share", "packed"),
    [
        (0.0, 1.0, 1),
        (0.25, 0.25, 4),
        (1 / 3, 1 / 3, 3),
        (0.5, 0.5, 2),
        (1.0, 1.0, 1),
        (2.0, 1.0, 1),
    ],
)
def test_resources_know_their_gpu_share_and_packing(gpus: float, share: float, packed: int) -> None:
    resources = config.Resources(cpus_per_trial=1.0, gpus_per_trial=gpus)
    assert resources.gpu_share == pytest.approx(share) and resources.trials_per_gpu == packed
