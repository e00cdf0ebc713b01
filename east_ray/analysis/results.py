"""A study folder as pandas DataFrames: the paper's table with bootstrap CIs, paired tests
against the Baseline, per-class AP. For notebooks and scripts; imports no torch or Ray.

    import east_ray.analysis.results as er
    frame = er.load("results/openmic")          # results.parquet, one row per run
    er.paper_table(frame)                       # tidy: mean, ci_low, ci_high, p_value, ...
    er.by_lambda(frame)                         # the same table at each λ of the study
    er.system_intervals(frame)                  # bootstrap CI of every system's seed-mean
    er.paired_tests(frame)                      # each system − Baseline at its fraction
    er.run_intervals(frame)                     # a CI for every run (row)
    er.class_ap(frame)                          # AP per class (rows) and system (columns)
    er.compare(er.class_ap(frame), "EAsT_Final")  # per-class AP minus the Baseline's

Every function takes the frame `load` returns (or `annotate(results, study_dir)`): its
`scores_file` column says where each run's `test_scores.parquet` is (`east_ray.data.scores`;
a Teacher_LR fit's copy is under `teacher_lr/<cell id>/`). λ is chosen on validation as
the tables choose it (`tables.choose_lambda`), and the bootstrap is `east_ray.analysis.stats`'
(clips, and seeds when there are several, resampled; B = 1000 by default, seeded, so a
call gives the same numbers every time). Runs without a scores file (finished before runs
kept them) get NaN intervals and tests, and one warning per call names them.

`absent_classes` (every function but `class_ap`): how a class without a labelled positive
or negative in the test split counts in mAP and ROC-AUC, "skip" (ours, the default: left
out) or "zero" (the authors': scored 0; `east_ray.analysis.metrics`). Under "zero" the means and
`test_mAP` / `test_ROC-AUC` are ours × K_present / K (`tables.absent_as_zero`, K_present
from the stored test scores, `class_count`) and every bootstrap replicate scores the
classes it leaves without both labels 0; validation figures, so λ choice, stay ours.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from east_ray.analysis import stats, tables
from east_ray.analysis.layers import layer_of
from east_ray.analysis.metrics import check_absent_classes
from east_ray.analysis.stats import LEVEL, N_BOOT, ScoredClips
from east_ray.catalog import DATASETS, TEACHERS, find_teacher
from east_ray.config import NO_TEACHER
from east_ray.data.scores import SCORES, read_scores
from east_ray.errors import BadValueError

logger = logging.getLogger(__name__)

CELLS = "cells"
TEACHER_LR = "teacher_lr"
RESULTS = "results.parquet"
TEACHER_ORDER = tuple(n for n, row in TEACHERS.items() if row.in_paper)  # the paper's columns
_GROUP = ["system", "teacher", "fraction"]


def run_folder(study_dir: Path, cell_id: str, regularizer: str) -> Path:
    """A run's folder in a study: `cells/<id>`, or `teacher_lr/<id>` for the copies the
    study keeps of a Teacher_LR fit (which lives in the prepared dataset)."""
    return Path(study_dir) / (TEACHER_LR if regularizer == "teacher_lr" else CELLS) / cell_id


def _orders(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The systems and teachers present in a frame with `system`, in the paper's order (its
    seven systems; "-", the teacher-free systems' label, then its four teachers), then the
    frame's others alphabetically."""
    systems = set(frame["system"].dropna().astype(str))
    teachers = set(frame["teacher"].fillna(NO_TEACHER).astype(str))
    paper_teachers = (NO_TEACHER, *TEACHER_ORDER)
    others = sorted(teachers - set(paper_teachers), key=_teacher_key)
    return (
        [s for s in tables.PAPER_ORDER if s in systems] + sorted(systems - set(tables.PAPER_ORDER)),
        [t for t in paper_teachers if t in teachers] + others,
    )


def _teacher_key(teacher: str) -> tuple[str, int, str]:
    """Teachers alphabetically, a teacher's layers in its row's order."""
    row = find_teacher(teacher)
    if row is None or not row.layers:
        return (teacher, 0, teacher)
    layers = [name for name, _ in row.layers]
    return (row.base, layers.index(str(row.layer)), teacher)


def _in_paper_order(out: pd.DataFrame, like: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """`out` with `system` and `teacher` as ordered categoricals over `like`'s values
    (`_orders`), sorted by `by` in that order."""
    systems, teachers = _orders(tables.add_system(like) if "system" not in like else like)
    teacher = out["teacher"].fillna(NO_TEACHER).astype(str)
    out = out.assign(
        system=pd.Categorical(out["system"].astype(str), systems, ordered=True),
        teacher=pd.Categorical(teacher, teachers, ordered=True),
    )
    return out.sort_values(list(by), kind="stable").reset_index(drop=True)


def annotate(results: pd.DataFrame, study_dir: Path | str) -> pd.DataFrame:
    """`results` (rows of `results.parquet`) with `system` and `teacher` as ordered
    categoricals in the paper's order (`_orders`: the systems and teachers present; a
    teacher-free system's teacher is "-"), the teacher's `layer` (where it has several:
    `musicnn@taggram` → "taggram"), and `scores_file`. Group with `observed=True`:
    pandas 2 otherwise adds every (system, teacher) pair that has no run, as NaN rows."""
    frame = tables.add_system(results)
    frame["teacher"] = frame["teacher"].fillna(NO_TEACHER)
    systems, teachers = _orders(frame)
    frame["system"] = pd.Categorical(frame["system"], systems, ordered=True)
    frame["teacher"] = pd.Categorical(frame["teacher"], teachers, ordered=True)
    frame["layer"] = [layer_of(t) for t in frame["teacher"].astype(object)]
    frame["scores_file"] = [
        str(run_folder(Path(study_dir), c, r) / SCORES)
        for c, r in zip(frame["cell_id"], frame["regularizer"], strict=True)
    ]
    return frame


def load(study_dir: Path | str) -> pd.DataFrame:
    """A study's `results.parquet`, `annotate`d: one row per run and Teacher_LR fit."""
    path = Path(study_dir) / RESULTS
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no stored results; give the study's folder (<storage>/<study name>) "
            "of a study that has run"
        )
    return annotate(pd.read_parquet(path), study_dir)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `system` and `teacher` as plain columns: `tables` groups by them, and
    a categorical grouping would add every unobserved (system, teacher) pair."""
    if "scores_file" not in frame:
        raise BadValueError(
            "results: no scores_file column; pass the frame of "
            "east_ray.analysis.results.load(study_dir) or annotate(results, study_dir)"
        )
    return frame.astype({"system": object, "teacher": object})


def _metrics(frame: pd.DataFrame, metrics: Sequence[str] | None) -> tuple[str, ...]:
    """`metrics`, or the paper table's for the frame's dataset (mAP when unknown)."""
    if metrics is not None:
        return tuple(metrics)
    datasets = set(frame["dataset"].dropna()) if "dataset" in frame else set()
    if len(datasets) == 1:
        name = datasets.pop()
        return DATASETS[name].metrics if name in DATASETS else ("mAP",)
    return ("mAP",)


def _chosen(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs at the λ the tables use, teacher "-" for teacher-free systems."""
    chosen = tables.choose_lambda(_plain(frame)).reset_index(drop=True)  # rows by position
    return chosen.assign(teacher=chosen["teacher"].fillna(NO_TEACHER))


def _read(frame: pd.DataFrame) -> list[ScoredClips | None]:
    """Each row's test scores (None without a file, named in one warning), all aligned to
    one clip order: runs compared must share their test clips."""
    exists = [Path(p).is_file() for p in frame["scores_file"]]
    missing = [c for c, e in zip(frame["cell_id"], exists, strict=True) if not e]
    if missing:
        logger.warning(
            "%d runs have no %s (finished before runs kept their test scores), so no "
            "bootstrap CI or test: %s",
            len(missing),
            SCORES,
            ", ".join(missing),
        )
    read = [
        read_scores(Path(p)) if e else None
        for p, e in zip(frame["scores_file"], exists, strict=True)
    ]
    present = [c for c in read if c is not None]
    aligned = iter(stats.align(present)) if present else iter(())
    return [None if c is None else next(aligned) for c in read]


def _replicates(
    clips: Sequence[ScoredClips | None],
    n_boot: int,
    rng: np.random.Generator,
    absent_classes: str,
) -> list[dict[str, np.ndarray] | None]:
    """Every metric of each run on the same `n_boot` clip resamples."""
    first = next((c for c in clips if c is not None), None)
    if first is None:
        return [None] * len(clips)
    counts = stats.clip_counts(len(first.clip_ids), n_boot, rng)
    return [None if c is None else stats.replicates(c, counts, absent_classes) for c in clips]


def class_count(results: pd.DataFrame) -> tuple[int, int] | None:
    """(classes with a labelled positive and a labelled negative test clip, all classes)
    of the study's test split, from the first run's stored scores (every run compared is
    scored on the same test clips); None when no run has scores."""
    frame = _plain(results)
    path = next((Path(p) for p in frame["scores_file"] if Path(p).is_file()), None)
    return None if path is None else stats.class_counts(read_scores(path))


def with_class_rule(results: pd.DataFrame, absent_classes: str) -> pd.DataFrame:
    """`results` with its test figures under `absent_classes` (module doc): unchanged for
    "skip"; for "zero", mAP and ROC-AUC × K_present / K. "zero" needs a run's scores."""
    check_absent_classes(absent_classes)
    if absent_classes == "skip":
        return results
    counted = class_count(results)
    if counted is None:
        raise BadValueError(
            f"absent_classes: 'zero' needs the test split's labels, read from a run's "
            f"{SCORES}, and none of the {len(results)} runs has one; use 'skip'"
        )
    return tables.absent_as_zero(results, *counted)


def run_intervals(
    results: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
    absent_classes: str = "skip",
) -> pd.DataFrame:
    """`results` with `test_<metric>_ci_low` and `test_<metric>_ci_high` for every row:
    the clip bootstrap interval of that run alone."""
    names = _metrics(results, metrics)
    rng = np.random.default_rng(seed)
    reps = _replicates(_read(results), n_boot, rng, absent_classes)
    out = with_class_rule(results, absent_classes).copy()
    for metric in names:
        bounds = [
            stats.percentile_interval(r[metric], level) if r else (np.nan, np.nan) for r in reps
        ]
        out[f"test_{metric}_ci_low"] = [low for low, _ in bounds]
        out[f"test_{metric}_ci_high"] = [high for _, high in bounds]
    return out


def system_intervals(
    results: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    baseline: str = "Baseline",
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
    absent_classes: str = "skip",
) -> pd.DataFrame:
    """One row per (system, teacher, fraction, metric) at the chosen λ: `mean` over seeds,
    its bootstrap interval `ci_low`, `ci_high` (clips and seeds resampled), `n` runs, and
    the paired comparison with `baseline` at the same fraction: `diff` = system −
    baseline, `diff_low`, `diff_high`, `p_value` (NaN for the baseline itself). In the
    paper's order: `system`, `teacher` (teacher-free systems "-") and `metric` are ordered
    categoricals."""
    names = _metrics(results, metrics)
    chosen = _chosen(with_class_rule(results, absent_classes))
    reps = _replicates(_read(chosen), n_boot, np.random.default_rng(seed), absent_classes)
    draws: dict[tuple[object, ...], dict[str, np.ndarray] | None] = {}
    for key, group in chosen.groupby(_GROUP, sort=True):
        parts = [reps[i] for i in group.index]
        if any(p is None for p in parts):
            draws[key] = None
            continue
        # the group's own seed draws: a system's CI does not move when others join the study
        rng = np.random.default_rng([seed, zlib.crc32(repr(key).encode())])
        weights = stats.seed_counts(len(parts), n_boot, rng)
        draws[key] = {
            m: stats.seed_mean(np.stack([p[m] for p in parts if p is not None]), weights)
            for m in names
        }
    means = chosen.groupby(_GROUP, sort=True)[[f"test_{m}" for m in names]].mean()
    sizes = chosen.groupby(_GROUP, sort=True).size()
    rows = []
    for key, drawn in draws.items():
        base_key = (baseline, NO_TEACHER, key[2])
        base = draws.get(base_key) if key != base_key else None
        for m in names:
            mean = means.loc[key, f"test_{m}"]
            low, high = stats.percentile_interval(drawn[m], level) if drawn else (np.nan, np.nan)
            diff = diff_low = diff_high = p_value = np.nan
            if drawn and base:
                d = drawn[m] - base[m]
                diff = mean - means.loc[base_key, f"test_{m}"]
                diff_low, diff_high = stats.percentile_interval(d, level)
                p_value = stats.p_value(d)
            rows.append(
                (*key, m, mean, low, high, sizes.loc[key], diff, diff_low, diff_high, p_value)
            )
    columns = [*_GROUP, "metric", "mean", "ci_low", "ci_high", "n"]
    out = pd.DataFrame(rows, columns=[*columns, "diff", "diff_low", "diff_high", "p_value"])
    out = out.astype({"n": int})
    out["metric"] = pd.Categorical(out["metric"], names, ordered=True)
    return _in_paper_order(out, results, [*_GROUP, "metric"])


def paired_tests(
    results: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    baseline: str = "Baseline",
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
    absent_classes: str = "skip",
) -> pd.DataFrame:
    """Every system against `baseline` at the same fraction on the same test clips:
    `diff` (system − baseline, seed-means), its interval `ci_low`, `ci_high`, and the
    two-sided paired bootstrap `p_value` (`east_ray.analysis.stats`; uncorrected for multiple
    comparisons, which the tables' `†` is). Rows in the paper's order: `system`, `teacher`
    (teacher-free systems "-") and `metric` are ordered categoricals."""
    names = _metrics(results, metrics)
    intervals = system_intervals(
        results,
        metrics=names,
        baseline=baseline,
        n_boot=n_boot,
        seed=seed,
        level=level,
        absent_classes=absent_classes,
    )
    tests = intervals[intervals["system"] != baseline]
    tests = tests[[*_GROUP, "metric", "diff", "diff_low", "diff_high", "p_value"]]
    tests = tests.rename(columns={"diff_low": "ci_low", "diff_high": "ci_high"})
    return tests.reset_index(drop=True)


def _expected(frame: pd.DataFrame) -> pd.DataFrame:
    """Every observed system (its order) under every observed teacher (its order), as the
    paper lays its table out: a teacher-free system is repeated under each teacher."""
    systems = [s for s in frame["system"].cat.categories if s in set(frame["system"])]
    teachers = [
        t for t in frame["teacher"].cat.categories if t in set(frame["teacher"]) and t != NO_TEACHER
    ]
    pairs = [(s, t) for s in systems for t in teachers or [NO_TEACHER]]
    return pd.DataFrame(pairs, columns=["system", "teacher"])


def paper_table(
    results: pd.DataFrame,
    *,
    fraction: float = 1.0,
    metrics: Sequence[str] | None = None,
    expected: pd.DataFrame | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    absent_classes: str = "skip",
) -> pd.DataFrame:
    """The paper's table at `fraction`, tidy (`tables.paper_table`): one row per (system,
    teacher, metric) with `mean`, the bootstrap `ci_low`, `ci_high` (half-width `ci95`) and
    `p_value` against the Baseline; `expected` (system, teacher) pairs default to every
    system under every teacher of the frame. As the paper prints it, a teacher-free system
    (the Baseline) is repeated under each teacher: there, its `teacher` is the column it
    sits in. Ordered categoricals as `system_intervals`'; `tables.format_table` pivots it."""
    names = _metrics(results, metrics)
    at = results[results["fraction"] == fraction]
    intervals = system_intervals(
        at, metrics=names, n_boot=n_boot, seed=seed, absent_classes=absent_classes
    )
    pairs = _expected(results) if expected is None else expected
    frame = _plain(with_class_rule(results, absent_classes))
    plain = intervals.astype({"system": object, "teacher": object, "metric": object})
    table = tables.paper_table(frame, pairs, names, fraction, intervals=plain)
    table["metric"] = pd.Categorical(table["metric"], names, ordered=True)
    table["n"] = table["n"].astype("Int64")  # NaN where a cell has no run
    return _in_paper_order(table, results, ["system", "teacher", "metric"])


def by_lambda(
    results: pd.DataFrame,
    *,
    fraction: float = 1.0,
    metrics: Sequence[str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    absent_classes: str = "skip",
) -> pd.DataFrame:
    """`paper_table` at every λ of the regularised runs (`tables.at_lambda`: those runs at
    that λ, beside the Baseline and Teacher_LR), stacked, with the table's λ as the first
    column `at_lam`: what each λ gives, where `paper_table` shows only the λ chosen on
    validation."""
    tables_at = [
        paper_table(
            tables.at_lambda(results, lam),
            fraction=fraction,
            metrics=metrics,
            n_boot=n_boot,
            seed=seed,
            absent_classes=absent_classes,
        ).assign(at_lam=lam)
        for lam in tables.lambdas(results)
    ]
    if not tables_at:
        raise BadValueError("results: no regularised run, so no λ to tabulate; use paper_table")
    out = pd.concat(tables_at, ignore_index=True)
    return out[["at_lam", *(c for c in out.columns if c != "at_lam")]]


def class_ap(results: pd.DataFrame, *, fraction: float = 1.0) -> pd.DataFrame:
    """Average precision per class (rows: the dataset's class names) and system (columns:
    (system, teacher), teacher "-" for teacher-free systems), the mean over seeds at the
    chosen λ and `fraction`; NaN for a class without a labelled positive or negative test
    clip, and for a system with a run that has no scores. `compare` subtracts two of its
    systems (plain `ap["EAsT_Final"] - ap["Baseline"]` aligns on teachers, so gives NaN)."""
    chosen = _chosen(results)
    chosen = chosen[chosen["fraction"] == fraction].reset_index(drop=True)
    clips = _read(chosen)
    classes = next((c.classes for c in clips if c is not None), ())
    columns = {}
    order = {s: i for i, s in enumerate(results["system"].cat.categories)}
    teacher_order = {t: i for i, t in enumerate(results["teacher"].cat.categories)}
    for key, group in chosen.groupby(["system", "teacher"]):
        parts = [clips[i] for i in group.index]
        ap = [stats.class_ap(c) for c in parts if c is not None]
        columns[key] = (
            np.mean(ap, axis=0) if len(ap) == len(parts) else np.full(len(classes), np.nan)
        )
    keys = sorted(columns, key=lambda k: (order.get(k[0], len(order)), teacher_order[k[1]]))
    table = pd.DataFrame({k: columns[k] for k in keys}, index=pd.Index(classes, name="class"))
    table.columns = pd.MultiIndex.from_arrays(
        [[s for s, _ in keys], [t for _, t in keys]], names=["system", "teacher"]
    )
    return table


def compare(ap: pd.DataFrame, system: str, baseline: str = "Baseline") -> pd.DataFrame:
    """Per-class AP of `system` minus that of the teacher-free `baseline`, from a
    `class_ap` table: rows the classes, one column per teacher of `system`."""
    systems = list(dict.fromkeys(ap.columns.get_level_values("system")))
    for argument, name in (("system", system), ("baseline", baseline)):
        if name not in systems:
            raise BadValueError(
                f"{argument}: {name!r} is not a system of this class_ap table; it has {systems}"
            )
    base = ap[baseline]
    if list(base.columns) != [NO_TEACHER]:
        raise BadValueError(
            f"baseline: {baseline!r} has teachers {list(base.columns)}; compare against a "
            f"teacher-free system (teacher {NO_TEACHER!r}), e.g. 'Baseline'"
        )
    return ap[system].sub(base[NO_TEACHER], axis=0)
