"""A study's stored results: one `result.json` per finished cell (beside its
`test_scores.parquet`), copies of the Teacher_LR fits' test scores, `results.parquet`, the
tables and figure rendered from them, and the `spec.json` that ties a results folder to
the recipe, student and features it was made with."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from east_ray.analysis.layers import by_layer
from east_ray.analysis.results import (
    RESULTS,
    annotate,
    class_count,
    run_folder,
    system_intervals,
    with_class_rule,
)
from east_ray.analysis.stats import N_BOOT
from east_ray.analysis.tables import (
    at_lambda,
    beside_note,
    beside_paper,
    ci_note,
    classes_note,
    compared_cells,
    comparisons,
    expected_pairs,
    flat_columns,
    format_beside_paper,
    format_table,
    lambda_systems,
    lambdas,
    lambdas_per_teacher,
    limited_data_figure,
    paper_reference,
    paper_table,
)
from east_ray.catalog import get_dataset
from east_ray.config import RUNTIME_OPTIONS, Cell, Grid, Recipe, SpecError, StudySpec
from east_ray.data.parquet import (
    copy_atomic,
    move_aside,
    write_atomic,
    write_json_atomic,
    write_table_atomic,
    write_text_atomic,
)
from east_ray.data.scores import SCORES
from east_ray.train.result import RunResult, TeacherLRFit

logger = logging.getLogger(__name__)


RESULT = "result.json"


def cell_dir(study_dir: Path, cell: Cell) -> Path:
    return run_folder(study_dir, cell.cell_id, cell.regularizer)


def read_result(run_dir: Path) -> RunResult | None:
    """The cell's `result.json`, or None when it has none. One that cannot be read, or is
    not this cell's, is moved aside (`_result.json.corrupt-<time>`) with a warning: the cell
    then runs again and resumes from its checkpoint, which re-evaluates a finished run."""
    path = run_dir / RESULT
    try:
        result = RunResult.from_row(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problem = f"not valid JSON ({exc})"
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"not a run result ({type(exc).__name__}: {exc})"
    else:
        if result.cell.cell_id == run_dir.name:
            return result
        problem = f"not a result of cell {run_dir.name}"
    aside = move_aside(path)
    logger.warning("%s: %s; moved to %s, the cell runs again", path, problem, aside.name)
    return None


def finished(study_dir: Path) -> list[RunResult]:
    """Every readable result.json under the study's cells folder."""
    runs = sorted(p.parent for p in (study_dir / "cells").glob(f"*/{RESULT}"))
    return [result for result in map(read_result, runs) if result is not None]


def collect_results(
    study_dir: Path,
    cells: Sequence[Cell],
    teacher_lr: Sequence[TeacherLRFit],
    spec: StudySpec,
    tpe: bool = False,
) -> pd.DataFrame:
    """One row per finished run (grid: of `cells`; tpe: all) plus one per Teacher_LR fit,
    written atomically; each fit's test scores are copied into the study folder
    (`teacher_lr/<row's cell id>/`), so the folder holds every run's scores."""
    import pyarrow as pa

    wanted = {c.cell_id for c in cells}
    rows = [r.row() for r in finished(study_dir) if tpe or r.cell.cell_id in wanted]
    for fit in teacher_lr:
        folder = run_folder(study_dir, fit.cell_id, "teacher_lr")
        copy_atomic(Path(fit.test_scores), folder / SCORES)
        rows.append(fit.row(spec.dataset))
    frame = pd.DataFrame(rows)
    if not frame.empty:
        write_table_atomic(pa.Table.from_pandas(frame, preserve_index=False), study_dir / RESULTS)
    return frame


def fits_dir(study_dir: Path) -> Path:
    """Where a study keeps its Teacher_LR fits (`east_ray.train.teacher_lr`): in its own
    folder, not the prepared dataset, which a study only reads."""
    return Path(study_dir) / "teacher_lr_fits"


# The authors released λ for EAsT_Final and EAsT_KD only; the paper studies use it for
# every regularised system (README "Method differences").
ASSUMED_LAMBDA = "λ released for EAsT_Final and EAsT_KD, assumed the same for KD, Cos-Diff, All"


def lambda_rule(grid: Grid, published: bool = False) -> str:
    """How the tables' λ was chosen, for their titles; `published`: the dataset is one of
    the paper's, so a fixed λ is the authors' and partly assumed (`ASSUMED_LAMBDA`)."""
    fixed = {t: grid.lam_by_teacher[t] for t in grid.teachers if t in grid.lam_by_teacher}
    free = [t for t in grid.teachers if t not in fixed]
    rules = []
    if fixed:
        rules.append("λ fixed per teacher: " + ", ".join(f"{t} {x:g}" for t, x in fixed.items()))
    if free:
        listed = ", ".join(f"{x:g}" for x in grid.lams)
        rule = (
            f"λ = {listed}" if len(grid.lams) == 1 else f"λ chosen on validation mAP from {listed}"
        )
        rules.append(rule + (f" for {', '.join(free)}" if fixed else ""))
    fixed_only = not free or len(grid.lams) == 1
    if published and rules and fixed_only:
        rules.append(ASSUMED_LAMBDA)
    return "; ".join(rules) or "no teacher"


def _beside_paper(spec: StudySpec, tidy: pd.DataFrame) -> tuple[str, pd.DataFrame | None, str]:
    """A title, every published cell beside ours (None: the paper published nothing for
    the dataset) and what its marks mean."""
    reference = paper_reference(spec.dataset)
    if reference.empty:
        return f"{spec.dataset}: no published numbers to set beside these", None, ""
    baselines = ("Baseline", *(x.name for x in spec.systems))
    compared = beside_paper(tidy, reference, baselines)
    title = (
        f"beside the paper: ours / the paper's (ours − paper, mark); "
        f"{compared_cells(compared)} of the paper's {len(reference)} {spec.dataset} cells "
        f'compared, its Baseline beside each of our baselines; "—": not published, '
        f'"missing": not run (east_ray/analysis/reference.py: {reference["source"].iloc[0]})'
    )
    return title, format_beside_paper(compared), beside_note(compared)


def _classes_line(results: pd.DataFrame, metrics: tuple[str, ...], absent_classes: str) -> str:
    """How many classes the figures average (`tables.classes_note`), from stored scores."""
    counted = class_count(results)
    if counted is None:
        return "classes: unknown (no run kept its test scores)"
    return classes_note(metrics, *counted, absent_classes)


def render_tables(
    spec: StudySpec,
    results: pd.DataFrame,
    study_dir: Path,
    *,
    write: bool = True,
    absent_classes: str = "skip",
) -> str:
    """The tables as terminal text, CIs and tests from the runs' test scores in
    `study_dir`, classes without both test labels treated by `absent_classes` ("skip":
    ours, "zero": the authors', `east_ray.analysis.metrics`); with `write`, also (re)write
    tables.md, tables.tex and figure.png there (each atomically)."""
    metrics = get_dataset(spec.dataset).metrics
    annotated = annotate(results, study_dir)
    intervals = system_intervals(annotated, metrics=metrics, absent_classes=absent_classes)
    # plain columns: `tables` groups by them, a categorical grouping adds unobserved pairs
    results = with_class_rule(annotated, absent_classes).astype(
        {"system": object, "teacher": object}
    )
    classes = _classes_line(annotated, metrics, absent_classes)
    teachers = spec.grid.teachers if spec.grid.teachers else ("-",)
    expected = expected_pairs(
        spec.grid.regularizers,
        spec.grid.stages,
        teachers,
        tuple(x.name for x in spec.systems),
    )
    parts: list[str] = []
    markdown: list[str] = []
    latex: list[str] = []

    def add(title: str, table: pd.DataFrame, note: str | None = None) -> None:
        """One table in the three outputs, its title above and `note` under it."""
        tail = [] if note is None else [note]
        parts.extend([title, flat_columns(table).to_string(), *tail, ""])
        markdown.extend([f"### {title}", "", flat_columns(table).to_markdown(), ""])
        markdown.extend(x for t in tail for x in (t, ""))
        latex.extend([f"% {title}", table.to_latex(), *(f"% {t}" for t in tail), ""])

    # each λ's own table where a teacher has several: the chosen λ hides the others
    several = lambdas(results) if lambdas_per_teacher(results) > 1 else []
    each = bool(several) and spec.grid.lam_choice == "each"
    at = {
        lam: (
            at_lambda(results, lam),
            system_intervals(
                at_lambda(annotated, lam), metrics=metrics, absent_classes=absent_classes
            ),
        )
        for lam in several
    }
    published = not paper_reference(spec.dataset).empty
    rule = lambda_rule(spec.grid, published)
    for fraction in sorted(spec.grid.fractions, reverse=True):
        head = f"{spec.name}: test {' / '.join(metrics)} at training fraction {fraction:g}"
        tidies = []
        if not each:
            tidy = paper_table(results, expected, metrics, fraction, intervals)
            add(
                f"{head} ({rule}; {ci_note(N_BOOT, comparisons(tidy))})",
                format_table(tidy),
                classes,
            )
            tidies.append(tidy)
            layered = by_layer(tidy)
            if not layered.empty:
                add(f"{head}, by layer of each teacher ({rule})", layered, classes)
        for lam, (results_at, intervals_at) in at.items():
            tidy = paper_table(results_at, expected, metrics, fraction, intervals_at)
            note = ci_note(N_BOOT, comparisons(tidy))
            title = f"{head}, every regularised system at λ = {lam:g}" + each * ", fixed in advance"
            add(f"{title} ({note})", format_table(tidy), classes if each else None)
            tidies += [tidy] if each else []
        # beside the paper after each table; without published numbers one line says so
        for tidy in (tidies if published else tidies[:1]) if fraction == 1.0 else []:
            note, beside, marks = _beside_paper(spec, tidy)
            if beside is None:
                parts += [note, ""]
                markdown += [note, ""]
            else:
                parts += [note, beside.to_string(), marks, ""]
                markdown += [note, "", beside.to_markdown(), "", marks, ""]
    if not write:
        return "\n".join(parts)
    write_text_atomic("\n".join(markdown), study_dir / "tables.md")
    write_text_atomic("\n".join(latex), study_dir / "tables.tex")
    if len(spec.grid.fractions) > 1:
        figure = study_dir / "figure.png"
        if each:  # a line per (system, λ)
            lines = lambda_systems(results)
            bands = system_intervals(
                lambda_systems(annotated), metrics=metrics, absent_classes=absent_classes
            )
        else:
            lines, bands = results, intervals
        write_atomic(figure, lambda tmp: limited_data_figure(lines, metrics[0], Path(tmp), bands))
        parts.append(f"figure: {figure}")
    parts.append(f"tables: {study_dir / 'tables.md'}, {study_dir / 'tables.tex'}")
    return "\n".join(parts)


def _result_defining(spec: StudySpec) -> dict[str, Any]:
    """The parts of a spec that change what a cell's result means (not the grid, the
    resources, the name or the recipe's runtime options); extra systems by name."""
    content = dataclasses.asdict(spec)
    for key in ("grid", "resources", "name", "non_commercial_weights"):
        content.pop(key)
    for recipe in (content["recipe"], *(x["recipe"] for x in content["systems"])):
        for option in RUNTIME_OPTIONS:
            recipe.pop(option, None)
    content["systems"] = {x.pop("name"): x for x in content["systems"]}
    return content


def check_study_dir(spec: StudySpec, study_dir: Path, record: bool = True) -> None:
    """Refuse a results folder written under another recipe, student or features, or with
    another definition of an extra system of the same name (new ones join); with `record`,
    `spec.json` is written when missing or when systems were added."""
    path = study_dir / "spec.json"
    current = json.loads(json.dumps(_result_defining(spec)))
    if path.is_file():
        stored = json.loads(path.read_text())
        # a recipe field added after the folder was written: its runs used the default
        defaults = {
            k: v for k, v in dataclasses.asdict(Recipe()).items() if k not in RUNTIME_OPTIONS
        }
        stored["recipe"] = {**defaults, **stored.get("recipe", {})}
        old, new = stored.pop("systems", {}), current.pop("systems")
        changed = {
            key: (stored.get(key), current.get(key))
            for key in sorted(set(stored) | set(current))
            if stored.get(key) != current.get(key)
        }
        changed |= {
            f"systems.{n}": (old[n], new[n])
            for n in sorted(old.keys() & new.keys())
            if old[n] != new[n]
        }
        if changed:
            raise SpecError(
                str(path),
                [
                    f"{key}: the results in {study_dir} were made with {was!r}, the spec now "
                    f"says {now!r}"
                    for key, (was, now) in changed.items()
                ]
                + [f"use another --storage folder, or remove {study_dir} to start over"],
            )
        current["systems"] = {**old, **new}
        if new.keys() <= old.keys():
            return
    if record:
        write_json_atomic(current, path)
