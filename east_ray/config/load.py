"""Reading a study file: a small typed reader driven by the dataclass annotations of
`east_ray.config.spec`, validation that reports every problem at once (`SpecError`), and
`extends` / `includes` between study files.

`load_study` returns a `StudySpec` or raises `SpecError` listing *every* problem, each with
the field, the bad value and what was expected; an unknown key is an error, so a typo
never passes silently. A study file may extend another (`extends = "demo"`): its tables
are laid over the other's key by key, a value or list replaces the other's, and an empty
table (`lam_by_teacher = {}`) replaces the other's table, which clears it. A study file may
instead list other studies (`includes = ["openmic", "magnatagatune"]`); `load_parts`
returns every study a file names as one `Study`.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from east_ray.catalog import (
    DATASETS,
    REGULARIZERS,
    STAGES,
    STUDENTS,
    canonical_teacher,
    check_licence,
    get_student,
    get_teacher,
    members,
    uses_stage,
    uses_teacher,
)
from east_ray.config.spec import (
    LAM_CHOICES,
    RECIPE_CHOICES,
    Recipe,
    SpecError,
    StudySpec,
    TeacherLRRecipe,
)
from east_ray.errors import UnknownNameError, UserError

NON_COMMERCIAL_OPT_IN = "set non_commercial_weights = true at the top level of the study"

# the shipped studies: package data (the repository's `studies/` links here)
STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_RULE = "letters, digits, '_', '.' or '-' (a folder name), starting with a letter or digit"


_TYPE_NAMES = {
    float: ("a number", "numbers"),
    int: ("an integer", "integers"),
    str: ("a string", "strings"),
    bool: ("a boolean", "booleans"),
}


def _type_name(tp: Any) -> str:
    """`int` → 'an integer', `tuple[float, ...]` → 'a list of numbers'."""
    if typing.get_origin(tp) is tuple:
        return f"a list of {_TYPE_NAMES[typing.get_args(tp)[0]][1]}"
    if typing.get_origin(tp) is dict:
        values = typing.get_args(tp)[1]
        return f"a table of {_TYPE_NAMES[values][1] if values in _TYPE_NAMES else 'scalars'}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return _TYPE_NAMES[tp][0]


def _matches(value: Any, tp: Any) -> bool:
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp in (str, bool):
        return isinstance(value, tp)
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        return any(_matches(value, a) for a in typing.get_args(tp))
    return False


def _read(cls: Any, table: Any, path: str, problems: list[str]) -> Any:
    """Build dataclass `cls` from a TOML table, appending every problem found."""
    where = path or "top level"
    if not isinstance(table, dict):
        problems.append(f"{where}: got {table!r}, expected a table")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            known = ", ".join(fields)
            problems.append(f"{path + '.' if path else ''}{key}: unknown key; known keys: {known}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        dotted = f"{path}.{name}" if path else name
        if name not in table:
            no_default = f.default is dataclasses.MISSING
            if no_default and f.default_factory is dataclasses.MISSING:
                problems.append(f"{dotted}: missing, expected {_type_name(hints[name])}")
            continue
        value = table[name]
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _read(tp, value, dotted, problems)
        elif typing.get_origin(tp) is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            item = typing.get_args(tp)[0]
            if not isinstance(value, list):
                problems.append(f"{dotted}: got {value!r}, expected a list of tables")
            else:
                kwargs[name] = tuple(
                    _read(item, v, f"{dotted}[{i}]", problems) for i, v in enumerate(value)
                )
        elif typing.get_origin(tp) is tuple:
            item = typing.get_args(tp)[0]
            if not isinstance(value, list) or not all(_matches(v, item) for v in value):
                problems.append(f"{dotted}: got {value!r}, expected {_type_name(tp)}")
            else:
                kwargs[name] = tuple(item(v) for v in value)
        elif typing.get_origin(tp) is dict:
            scalar = typing.get_args(tp)[1]
            if not isinstance(value, dict) or not all(_matches(v, scalar) for v in value.values()):
                problems.append(f"{dotted}: got {value!r}, expected {_type_name(tp)}")
            else:
                kwargs[name] = dict(value)
        elif not _matches(value, tp):
            problems.append(f"{dotted}: got {value!r}, expected {_type_name(tp)}")
        else:
            kwargs[name] = float(value) if tp is float else value
    if any(v is None or (isinstance(v, tuple) and None in v) for v in kwargs.values()):
        return None
    try:
        return cls(**kwargs)
    except TypeError:  # a required field was missing: already reported above
        return None


def _one_of(field_name: str, value: str, allowed: tuple[str, ...], problems: list[str]) -> None:
    if value not in allowed:
        problems.append(f"{field_name}: got {value!r}, expected one of: {', '.join(allowed)}")


def _check_systems(spec: StudySpec, problems: list[str]) -> None:
    """Each extra system: a unique name, known recipe keys of the right type, and a recipe
    and student options that pass the study's own checks."""
    hints = typing.get_type_hints(Recipe)
    names = [x.name for x in spec.systems]
    for i, extra in enumerate(spec.systems):
        where, found = f"systems[{i}]", []
        if not extra.name.strip():
            found.append("name: empty, expected the name of its table row")
        if names.count(extra.name) > 1:
            found.append(f"name: {extra.name!r} names two systems")
        for key, value in extra.recipe.items():
            if key not in hints:
                found.append(f"recipe.{key}: unknown key; known keys: {', '.join(hints)}")
            elif not _matches(value, hints[key]):
                found.append(f"recipe.{key}: got {value!r}, expected {_type_name(hints[key])}")
        if not found:
            _check(spec.for_system(extra.name), found)
            found = [p for p in found if p.startswith(("recipe.", "student_options."))]
        problems += [f"{where}.{p}" for p in found]


def recipe_choice_problems(recipe: Recipe) -> list[str]:
    """A problem for each named option of `recipe` that is not one of RECIPE_CHOICES."""
    problems: list[str] = []
    for name, allowed in RECIPE_CHOICES.items():
        _one_of(f"recipe.{name}", getattr(recipe, name), allowed, problems)
    return problems


def _check(spec: StudySpec, problems: list[str]) -> None:
    """Semantic checks on a spec whose types are already right."""
    _check_systems(spec, problems)
    if not _NAME.fullmatch(spec.name):
        problems.append(f"name: got {spec.name!r}, expected {_NAME_RULE}")
    _one_of("dataset", spec.dataset, tuple(DATASETS), problems)
    _one_of("student", spec.student, tuple(STUDENTS), problems)
    if spec.student in STUDENTS:
        accepted = get_student(spec.student).options
        for key in spec.student_options:
            if key not in accepted:
                problems.append(
                    f"student_options.{key}: unknown option for {spec.student!r}; "
                    f"accepted options: {', '.join(accepted)}"
                )
    n_mels = spec.student_options.get("n_mels", spec.features.n_mels)
    if n_mels != spec.features.n_mels:
        problems.append(
            f"student_options.n_mels: got {n_mels!r}, but features.n_mels is "
            f"{spec.features.n_mels}; the student reads the features' mel bands, so make "
            "them equal (or drop student_options.n_mels)"
        )
    allowed_mels = STUDENTS[spec.student].n_mels if spec.student in STUDENTS else ()
    if allowed_mels and spec.features.n_mels not in allowed_mels:
        problems.append(
            f"features.n_mels: got {spec.features.n_mels}, but {spec.student} is built for "
            f"{' or '.join(map(str, allowed_mels))} mel bands; use one of those"
        )
    g = spec.grid
    if not g.regularizers:
        problems.append(f"grid.regularizers: empty, expected some of: {', '.join(REGULARIZERS)}")
    for i, reg in enumerate(g.regularizers):
        _one_of(f"grid.regularizers[{i}]", reg, tuple(REGULARIZERS), problems)
    canonical = []
    for i, teacher in enumerate(g.teachers):
        try:
            canonical.append(canonical_teacher(teacher))
            check_licence(teacher, spec.non_commercial_weights, NON_COMMERCIAL_OPT_IN)
        except UserError as exc:
            problems.append(f"grid.teachers[{i}]: {exc}")
    hinted = [r for r in g.regularizers if r in REGULARIZERS and REGULARIZERS[r].hint]
    sets = [t for t in canonical if len(members(t)) > 1]
    if hinted and sets:
        problems.append(
            f"grid.regularizers: {hinted} learn a projection onto one teacher's dimension, "
            f"but grid.teachers has the teacher sets {sets}; run them in separate studies"
        )
    if len(set(canonical)) < len(canonical):
        problems.append(
            f"grid.teachers: {list(g.teachers)} names one teacher output twice (a teacher's "
            "own layer is its bare name); list each once"
        )
    for i, stage in enumerate(g.stages):
        _one_of(f"grid.stages[{i}]", stage, STAGES, problems)
    for i, lam in enumerate(g.lams):
        if not 0.0 <= lam <= 1.0:
            problems.append(f"grid.lams[{i}]: got {lam!r}, expected a number in [0, 1]")
    _one_of("grid.lam_choice", g.lam_choice, LAM_CHOICES, problems)
    for i, frac in enumerate(g.fractions):
        if not 0.0 < frac <= 1.0:
            problems.append(f"grid.fractions[{i}]: got {frac!r}, expected a number in (0, 1]")
    for i, seed in enumerate(g.seeds):
        if seed < 0:
            problems.append(f"grid.seeds[{i}]: got {seed!r}, expected an integer >= 0")
    needs_teacher = any(uses_teacher(r) for r in g.regularizers)
    needs_stage = any(uses_stage(r) for r in g.regularizers)
    for teacher, lam in g.lam_by_teacher.items():
        if teacher not in g.teachers:
            problems.append(
                f"grid.lam_by_teacher.{teacher}: not one of grid.teachers "
                f"({', '.join(g.teachers) or 'none'})"
            )
        if not 0.0 <= lam <= 1.0:
            problems.append(
                f"grid.lam_by_teacher.{teacher}: got {lam!r}, expected a number in [0, 1]"
            )
    if g.lams and needs_teacher and g.teachers and set(g.teachers) <= set(g.lam_by_teacher):
        fixed = ", ".join(f"{t} = {g.lam_by_teacher[t]:g}" for t in g.teachers)
        problems.append(
            f"grid.lams: {list(g.lams)!r} would be ignored: every teacher has a fixed λ in "
            f"grid.lam_by_teacher ({fixed}); remove grid.lams, or those teachers from "
            "grid.lam_by_teacher (`lam_by_teacher = {}` clears the table a spec extends)"
        )
    required = [
        ("fractions", True),
        ("seeds", True),
        ("teachers", needs_teacher),
        ("lams", needs_teacher and not set(g.teachers) <= set(g.lam_by_teacher)),
        ("stages", needs_stage),
    ]
    for axis, needed in required:
        values = getattr(g, axis)
        if needed and not values:
            problems.append(
                f"grid.{axis}: empty, but the regularizers "
                f"{list(g.regularizers)} need at least one value"
            )
        if len(set(values)) != len(values):
            problems.append(f"grid.{axis}: got {list(values)!r}, expected no repeated values")
    r, f = spec.recipe, spec.features
    problems += recipe_choice_problems(r)
    positive = {
        "recipe.lr": r.lr,
        "recipe.batch_size": r.batch_size,
        "recipe.max_steps": r.max_steps,
        "recipe.kd_temperature": r.kd_temperature,
        "recipe.grad_clip": r.grad_clip,
        "features.sample_rate": f.sample_rate,
        "features.n_mels": f.n_mels,
        "features.n_fft": f.n_fft,
        "features.win_length": f.win_length,
        "features.hop_length": f.hop_length,
        "features.clip_seconds": f.clip_seconds,
        "resources.cpus_per_trial": spec.resources.cpus_per_trial,
    }
    non_negative = {
        "recipe.weight_decay": r.weight_decay,
        "recipe.plateau_patience": r.plateau_patience,
        "recipe.early_stop_patience": r.early_stop_patience,
        "recipe.mixup_alpha": r.mixup_alpha,
        "recipe.specaug_freq": r.specaug_freq,
        "recipe.specaug_time": r.specaug_time,
        "features.f_min": f.f_min,
        "resources.gpus_per_trial": spec.resources.gpus_per_trial,
    }
    unit = {
        "recipe.plateau_factor": r.plateau_factor,
        "recipe.f1_threshold": r.f1_threshold,
        "recipe.kd_weight_in_dcor_kd": r.kd_weight_in_dcor_kd,
    }
    _check_ranges(positive, non_negative, unit, problems)
    _check_teacher_lr(spec.teacher_lr, problems)
    if f.win_length > f.n_fft:
        problems.append(f"features.win_length: got {f.win_length}, expected <= n_fft ({f.n_fft})")
    if not f.f_min < f.f_max <= f.sample_rate / 2:
        problems.append(
            f"features.f_max: got {f.f_max!r}, expected in (f_min, sample_rate / 2 = "
            f"{f.sample_rate / 2:g}]"
        )
    gpus = spec.resources.gpus_per_trial
    if gpus > 1 and gpus != int(gpus):
        problems.append(
            f"resources.gpus_per_trial: got {gpus!r}, expected a fraction in [0, 1] "
            "or a whole number of GPUs"
        )


Bounds = Mapping[str, float]


def _check_ranges(
    positive: Bounds, non_negative: Bounds, unit: Bounds, problems: list[str]
) -> None:
    """Each named value > 0, >= 0, or in [0, 1] respectively."""
    for name, value in positive.items():
        if not value > 0:
            problems.append(f"{name}: got {value!r}, expected a number > 0")
    for name, value in non_negative.items():
        if not value >= 0:
            problems.append(f"{name}: got {value!r}, expected a number >= 0")
    for name, value in unit.items():
        if not 0.0 <= value <= 1.0:
            problems.append(f"{name}: got {value!r}, expected a number in [0, 1]")


def _check_teacher_lr(t: TeacherLRRecipe, problems: list[str]) -> None:
    """The `[teacher_lr]` table: known teacher names, values in range."""
    by_teacher = {f"teacher_lr.lr_by_teacher.{k}": v for k, v in t.lr_by_teacher.items()}
    for teacher in t.lr_by_teacher:
        try:
            get_teacher(teacher)
        except UnknownNameError as exc:
            problems.append(f"teacher_lr.lr_by_teacher.{teacher}: {exc}")
    positive = {
        "teacher_lr.lr": t.lr,
        **by_teacher,
        "teacher_lr.batch_size": t.batch_size,
        "teacher_lr.grad_clip": t.grad_clip,
        "teacher_lr.max_steps": t.max_steps,
    }
    non_negative = {
        "teacher_lr.plateau_patience": t.plateau_patience,
        "teacher_lr.early_stop_patience": t.early_stop_patience,
    }
    unit = {"teacher_lr.plateau_factor": t.plateau_factor}
    _check_ranges(positive, non_negative, unit, problems)


def parse_study(table: dict[str, Any], source: str = "<spec>") -> StudySpec:
    """Validate a parsed TOML table and return the spec, or raise `SpecError`."""
    problems: list[str] = []
    spec = _read(StudySpec, table, "", problems)
    if spec is not None:
        _check(spec, problems)
    if problems:
        raise SpecError(source, problems)
    assert spec is not None
    return _with_canonical_teachers(typing.cast(StudySpec, spec))


def _with_canonical_teachers(spec: StudySpec) -> StudySpec:
    """`spec` with each teacher reference as it is stored (`catalog.canonical_teacher`)."""
    g = spec.grid
    grid = dataclasses.replace(
        g,
        teachers=tuple(map(canonical_teacher, g.teachers)),
        lam_by_teacher={canonical_teacher(t): lam for t, lam in g.lam_by_teacher.items()},
    )
    return dataclasses.replace(spec, grid=grid)


def resolve_study_path(name_or_path: str) -> Path:
    """A path to a TOML file, or a study name looked up in `./studies` then the shipped
    ones."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml":
        if not candidate.is_file():
            raise FileNotFoundError(f"study file {candidate} does not exist")
        return candidate
    searched = [Path.cwd() / "studies", STUDIES_DIR]
    for folder in searched:
        path = folder / f"{name_or_path}.toml"
        if path.is_file():
            return path
    known = sorted({p.stem for d in searched if d.is_dir() for p in d.glob("*.toml")})
    raise FileNotFoundError(
        f"study {name_or_path!r} not found in {', '.join(map(str, dict.fromkeys(searched)))}; "
        f"known studies: {', '.join(known) or 'none'}"
    )


def _resolve_from(path: Path, name_or_path: str) -> Path:
    """A study named inside file `path`: a relative .toml path is taken from `path`'s
    folder, a name is looked up as on the command line."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" and not candidate.is_absolute():
        return resolve_study_path(str(path.parent / candidate))
    return resolve_study_path(name_or_path)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over` laid on top, table by table (a list or value replaces); an empty
    table replaces too, so that an extending spec can clear one (`lam_by_teacher = {}`)."""
    out = dict(base)
    for key, value in over.items():
        both_tables = isinstance(value, dict) and value and isinstance(base.get(key), dict)
        out[key] = _merged(base[key], value) if both_tables else value
    return out


def _load_table(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A study file's table; `extends = "other"` starts from study `other`'s table."""
    if path.resolve() in seen:
        chain = " → ".join(str(p) for p in (*seen, path.resolve()))
        raise SpecError(str(path), [f"extends: a cycle: {chain}"])
    try:
        with path.open("rb") as fh:
            table = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(str(path), [f"not valid TOML: {exc}"]) from exc
    base = table.pop("extends", None)
    if base is None:
        return table
    if not isinstance(base, str):
        raise SpecError(str(path), [f"extends: got {base!r}, expected a study name or path"])
    parent = _load_table(_resolve_from(path, base), (*seen, path.resolve()))
    return _merged(parent, table)


@dataclass(frozen=True)
class Study:
    """What one `python -m east_ray.study NAME` runs in one Tune run: one spec per part.

    A study file either is one part (a `StudySpec`) or lists parts by name, e.g. the whole
    paper as `includes = ["openmic", "magnatagatune"]`; each part keeps its own dataset,
    student, features, recipe and resources, and its results folder (so a part's finished
    cells count whether it ran alone or within the larger study)."""

    name: str
    parts: tuple[StudySpec, ...]


def load_study(name_or_path: str | Path) -> StudySpec:
    """Load and validate a one-part study by name (`openmic`) or path (`my/study.toml`); a
    study may extend another (`extends = "openmic"`) and change only what differs."""
    study = load_parts(name_or_path)
    if len(study.parts) > 1 or study.parts[0].name != study.name:
        raise SpecError(
            str(resolve_study_path(str(name_or_path))),
            [
                f"includes: study {study.name!r} is made of the studies "
                f"{', '.join(p.name for p in study.parts)}; name one of them here"
            ],
        )
    return study.parts[0]


def load_parts(name_or_path: str | Path) -> Study:
    """Load and validate a study by name or path: one spec, or the studies it `includes`."""
    path = resolve_study_path(str(name_or_path))
    table = _load_table(path)
    if "includes" not in table:
        spec = parse_study(table, str(path))
        return Study(spec.name, (spec,))
    includes, name = table.pop("includes"), table.pop("name", None)
    problems = [
        f"{key}: not allowed beside includes; set it in the included study" for key in table
    ]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"name: got {name!r}, expected {_NAME_RULE}")
    if not (isinstance(includes, list) and includes and all(isinstance(x, str) for x in includes)):
        problems.append(f"includes: got {includes!r}, expected a list of study names or paths")
    if problems:
        raise SpecError(str(path), problems)
    parts = tuple(load_study(_resolve_from(path, part)) for part in includes)
    names = [p.name for p in parts]
    if len(set(names)) < len(names):
        raise SpecError(
            str(path), [f"includes: the parts' names must differ, got {', '.join(names)}"]
        )
    return Study(name, parts)
