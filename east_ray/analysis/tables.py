"""Results → the paper's tables and limited-data figure, as DataFrame → DataFrame functions.

A result frame has one row per finished run (`results.parquet`): the cell's axes
(`regularizer`, `teacher`, `stage`, `lam`, `fraction`, `seed`), `val_<metric>` and
`test_<metric>`. Teacher_LR fits appear as rows with `regularizer = "teacher_lr"`.

- `add_system` names each row's system as the paper does (Baseline, Teacher_LR, KD,
  EAsT_Cos-Diff, EAsT_Final, EAsT_All, EAsT_KD; other stage choices get a suffix).
- `at_lambda` keeps the regularised runs at one λ (and every run without one), for a
  table per λ where a teacher has several (`lambdas_per_teacher`).
- `choose_lambda` keeps, per (system, teacher, fraction), the λ with the best mean
  *validation* mAP over seeds; test numbers never choose anything. Where λ was fixed in
  advance (`grid.lam_choice = "each"`), `lambda_systems` makes each λ a system of its own.
- `summarise` gives mean and 95% confidence half-width (Student t) over seeds.
- `paper_table` joins against the expected (system, teacher) pairs, so a missing cell is
  a NaN row, not a dropped one; `format_table` pivots it to the paper's layout. Given
  `intervals` (bootstrap CIs and paired tests from the runs' test scores,
  `east_ray.analysis.results.system_intervals`), its CI is the bootstrap one, printed as
  [low, high] since a bootstrap interval need not be symmetric, and `format_table` marks
  a system that differs significantly from the Baseline with `†` (`ci_note`).
- The mark is corrected for multiple comparisons, by Holm's step-down method within each
  (teacher, metric) column: a column of the paper's table tests 7 or 8 systems against one
  Baseline, and uncorrected the chance of at least one false † in a column where nothing
  differs would be up to 1 − 0.95⁸ ≈ 34 %. Holm keeps it at 5 % without assuming the
  tests independent (they share the Baseline and the clips) and rejects whatever
  Bonferroni rejects. The uncorrected `p_value` stays in the tidy table and in
  `east_ray.analysis.results.paired_tests`.
- `beside_paper` sets a `paper_table` beside every published cell (`east_ray.analysis.reference`),
  `format_beside_paper` prints it and `beside_note` says what its marks mean.
- `absent_as_zero` rescales test mAP and ROC-AUC to the authors' rule for classes without
  both labels (`east_ray.analysis.metrics`); `classes_note` says how many classes a figure averages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from east_ray.analysis.metrics import ZEROED
from east_ray.analysis.reference import REFERENCE, SOURCE
from east_ray.analysis.stats import SIGNIFICANCE
from east_ray.catalog import members, teacher_display, uses_stage, uses_teacher
from east_ray.config import PAPER_SYSTEMS, system_name

# the paper's systems in its tables' row order
PAPER_ORDER = tuple(PAPER_SYSTEMS.values())


def add_system(results: pd.DataFrame) -> pd.DataFrame:
    """`results` with a `system` column (an extra system's rows are named by it)."""
    out = results.copy()
    extra = out["extra_system"] if "extra_system" in out else pd.Series("", index=out.index)
    out["system"] = [
        e if isinstance(e, str) and e else system_name(r, s)
        for r, s, e in zip(out["regularizer"], out["stage"], extra.fillna(""), strict=True)
    ]
    return out


def _uses_lambda(results: pd.DataFrame) -> pd.Series:
    """Which rows' systems weigh a regularizer by λ (not the Baseline, not Teacher_LR)."""
    return results["regularizer"].map(uses_teacher).astype(bool)


def lambdas(results: pd.DataFrame) -> list[float]:
    """The λ values of the regularised runs, ascending."""
    return sorted(set(results.loc[_uses_lambda(results), "lam"].astype(float)))


def lambdas_per_teacher(results: pd.DataFrame) -> int:
    """The most λ values any teacher's regularised runs have (0: none has a regularised
    run); above 1, a table per λ shows what the chosen-λ table hides."""
    regularised = results[_uses_lambda(results)]
    return int(regularised.groupby("teacher")["lam"].nunique().max()) if len(regularised) else 0


def at_lambda(results: pd.DataFrame, lam: float) -> pd.DataFrame:
    """The runs of a table at λ = `lam`: the regularised runs at that λ, and every run of a
    system without λ (the Baseline, Teacher_LR)."""
    uses = _uses_lambda(results)
    return results[~uses | np.isclose(results["lam"], lam)]


def lambda_systems(results: pd.DataFrame) -> pd.DataFrame:
    """`results` with each regularised run's λ in its system's name ("KD, λ = 0.3"), so
    that every (system, λ) is a system of its own: a line per λ in `limited_data_figure`
    where λ was fixed in advance and none is chosen."""
    frame = add_system(results) if "system" not in results else results
    names = [
        f"{system}, λ = {lam:g}" if uses else system
        for system, lam, uses in zip(
            frame["system"].astype(str), frame["lam"], _uses_lambda(frame), strict=True
        )
    ]
    return frame.assign(system=names)


def choose_lambda(results: pd.DataFrame, metric: str = "mAP") -> pd.DataFrame:
    """Rows at the λ with the best mean validation `metric` per (system, teacher, fraction)."""
    frame = add_system(results) if "system" not in results else results.copy()
    keys = ["system", "teacher", "fraction"]
    frame["_teacher"] = frame["teacher"].fillna("")
    means = (
        frame.groupby(["system", "_teacher", "fraction", "lam"], dropna=False)[f"val_{metric}"]
        .mean()
        .reset_index()
    )
    best = means.loc[means.groupby(["system", "_teacher", "fraction"])[f"val_{metric}"].idxmax()]
    chosen = frame.merge(
        best[["system", "_teacher", "fraction", "lam"]],
        on=["system", "_teacher", "fraction", "lam"],
    )
    return chosen.drop(columns="_teacher").sort_values(
        [*keys, "seed"], na_position="first", ignore_index=True
    )


def ci95(values: pd.Series) -> float:
    """Half-width of the 95% Student-t confidence interval of the mean (NaN for n < 2)."""
    v = values.dropna().to_numpy(dtype=float)
    if len(v) < 2:
        return float("nan")
    return float(student_t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def summarise(results: pd.DataFrame, metrics: tuple[str, ...], split: str = "test") -> pd.DataFrame:
    """Mean, CI and seed count per (system, teacher, fraction) and metric; tidy."""
    frame = add_system(results) if "system" not in results else results
    frame = frame.assign(teacher=frame["teacher"].fillna("-"))
    rows = []
    for (system, teacher, fraction), group in frame.groupby(["system", "teacher", "fraction"]):
        for metric in metrics:
            column = group[f"{split}_{metric}"]
            rows.append(
                {
                    "system": system,
                    "teacher": teacher,
                    "fraction": fraction,
                    "metric": metric,
                    "mean": float(column.mean()),
                    "ci95": ci95(column),
                    "n": int(column.notna().sum()),
                    "lam": float(group["lam"].iloc[0]),
                }
            )
    return pd.DataFrame(
        rows, columns=["system", "teacher", "fraction", "metric", "mean", "ci95", "n", "lam"]
    )


def expected_pairs(
    regularizers: tuple[str, ...],
    stages: tuple[str, ...],
    teachers: tuple[str, ...],
    extra: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Every (system, teacher) the study should fill, in table order: the baseline, the
    `extra` (teacher-free) systems, then the paper's systems in the paper's order, then
    other stage choices."""
    systems = ["Teacher_LR"] + [
        system_name(reg, stage)
        for reg in regularizers
        if reg != "none"
        for stage in (stages if uses_stage(reg) else (None,))
    ]
    rank = {s: i for i, s in enumerate(PAPER_ORDER)}
    systems.sort(key=lambda s: rank.get(s, len(rank)))  # stable: others keep grid order
    rows = [
        (s, t)
        for s in dict.fromkeys(["Baseline", *extra, *systems])
        for t in teachers
        if not (s == "Teacher_LR" and len(members(t)) > 1)  # probes are fitted per member
    ]
    return pd.DataFrame(rows, columns=["system", "teacher"])


INTERVAL_KEYS = ["system", "teacher", "fraction", "metric"]


def with_intervals(summary: pd.DataFrame, intervals: pd.DataFrame | None) -> pd.DataFrame:
    """A `summarise` frame with `ci_low`, `ci_high` and `p_value`: from `intervals` (one
    row per `INTERVAL_KEYS`, teacher "-" for teacher-free systems), with `ci95` then the
    half-width of that interval; without them, mean ∓ the Student-t `ci95` and no test."""
    if intervals is None:
        return summary.assign(
            ci_low=summary["mean"] - summary["ci95"],
            ci_high=summary["mean"] + summary["ci95"],
            p_value=np.nan,
        )
    out = summary.drop(columns="ci95").merge(
        intervals[[*INTERVAL_KEYS, "ci_low", "ci_high", "p_value"]],
        on=INTERVAL_KEYS,
        how="left",
    )
    out.insert(out.columns.get_loc("mean") + 1, "ci95", (out["ci_high"] - out["ci_low"]) / 2)
    return out


def paper_table(
    results: pd.DataFrame,
    expected: pd.DataFrame,
    metrics: tuple[str, ...],
    fraction: float = 1.0,
    intervals: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Tidy table at `fraction`: one row per expected (system, teacher, metric), with the
    CI as `ci_low`, `ci_high` and half-width `ci95`, `p_value` (`with_intervals`) and
    `p_holm`, Holm-adjusted over the tests of its (teacher, metric) column.

    λ is chosen on validation; the baseline (no teacher) is repeated under each teacher.
    Missing runs are NaN rows.
    """
    chosen = choose_lambda(results)
    summary = with_intervals(summarise(chosen[chosen["fraction"] == fraction], metrics), intervals)
    free = summary["teacher"] == "-"  # baselines: repeated under every teacher
    grid = expected.merge(pd.DataFrame({"metric": metrics}), how="cross")
    with_teacher = grid.merge(summary[~free], on=["system", "teacher", "metric"], how="left")
    is_free = with_teacher["system"].isin(set(summary.loc[free, "system"]))
    free_rows = with_teacher.loc[is_free, ["system", "teacher", "metric"]].merge(
        summary[free].drop(columns="teacher"), on=["system", "metric"], how="left"
    )
    table = pd.concat([with_teacher[~is_free], free_rows], ignore_index=True)
    table["fraction"] = fraction
    # Order: the expected systems' order, then the spec's teacher order, then the metrics.
    ranks = {
        "system": {s: i for i, s in enumerate(dict.fromkeys(expected["system"]))},
        "teacher": {t: i for i, t in enumerate(dict.fromkeys(expected["teacher"]))},
        "metric": {m: i for i, m in enumerate(metrics)},
    }
    keys = []
    for column, rank in ranks.items():
        table[f"_{column}"] = [rank.get(v, len(rank)) for v in table[column]]
        keys += [f"_{column}", column]
    # One family per column: its systems, each tested against the same Baseline.
    table["p_holm"] = table.groupby(["teacher", "metric"])["p_value"].transform(holm)
    return table.sort_values(keys).drop(columns=[f"_{c}" for c in ranks]).reset_index(drop=True)


def percent(fraction: float) -> str:
    """`0.05` → `5 %`."""
    return f"{100 * fraction:g} %"


def flat_columns(wide: pd.DataFrame) -> pd.DataFrame:
    """A `format_table` with one header row, "VGGish · mAP", for Markdown and terminals;
    rows of several levels (`layers.by_layer`) are joined the same way."""
    flat = wide.copy()
    flat.columns = [f"{teacher} · {metric}" for teacher, metric in wide.columns]
    if isinstance(wide.index, pd.MultiIndex):
        flat.index = pd.Index(
            [" · ".join(map(str, key)) for key in wide.index], name=" · ".join(wide.index.names)
        )
    return flat


def holm(p_values: pd.Series) -> pd.Series:
    """Holm's step-down adjusted p-values of one family of tests (NaN: no test, left out
    of the family): the k-th smallest of m is multiplied by m − k + 1, then made
    non-decreasing and capped at 1."""
    tested = p_values.dropna().sort_values(kind="stable")
    m = len(tested)
    scaled = (m - np.arange(m)) * tested.to_numpy(dtype=float)
    adjusted = np.minimum(1.0, np.maximum.accumulate(scaled)) if m else scaled
    return pd.Series(adjusted, index=tested.index, dtype=float).reindex(p_values.index)


def comparisons(table: pd.DataFrame) -> int:
    """The largest number of tests against the Baseline in one column of a `paper_table`
    (a (teacher, metric) column at its fraction): the family `p_holm` corrects over."""
    if "p_value" not in table or table["p_value"].isna().all():
        return 0
    return int(table.groupby(["teacher", "metric"])["p_value"].count().max())


def ci_note(n_boot: int, tests: int | None = None) -> str:
    """What `format_table`'s "[low, high]" and "†" mean when the CIs are bootstrap ones;
    `tests`: how many comparisons a column holds (`comparisons`)."""
    family = f"over the {tests} comparisons of its column" if tests else "over its column"
    return (
        f"mean [95% percentile bootstrap CI], test clips and seeds resampled, B = {n_boot}; "
        f"† differs from the Baseline at this fraction, paired bootstrap on the same test "
        f"clips, two-sided p < {SIGNIFICANCE:g} after Holm's correction {family}"
    )


def format_cell(row: pd.Series) -> str:
    """A `paper_table` row as a table cell: "0.842 [0.838, 0.846]†" (`format_table`)."""
    if pd.isna(row["mean"]):
        return "missing"
    mark = "†" if row["p_holm"] < SIGNIFICANCE else ""
    if pd.isna(row["ci_low"]) or pd.isna(row["ci_high"]):
        return f"{row['mean']:.3f}{mark}"
    return f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]{mark}"


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Pivot a `paper_table` to rows = systems, columns = (teacher, metric), "0.842 [0.838,
    0.846]" (the interval as it is: a bootstrap one need not be symmetric), with a trailing
    "†" where the Holm-adjusted `p_holm` < `SIGNIFICANCE` (`ci_note`); "—" where no run is
    expected (Teacher_LR under a teacher set)."""
    text = table.assign(
        value=table.apply(format_cell, axis=1), teacher=table["teacher"].map(teacher_display)
    )
    wide = text.pivot(index="system", columns=["teacher", "metric"], values="value")
    systems = list(dict.fromkeys(text["system"]))
    columns = list(dict.fromkeys(zip(text["teacher"], text["metric"], strict=True)))
    return wide.loc[systems, columns].fillna("—")


def paper_reference(dataset: str) -> pd.DataFrame:
    """The published cells of `dataset` (`reference.REFERENCE`), tidy, with their source."""
    rows = [r[1:] for r in REFERENCE if r[0] == dataset]
    reference = pd.DataFrame(rows, columns=["system", "teacher", "metric", "paper"])
    return reference.assign(source=SOURCE)


PAPER_BASELINE = "Baseline"  # the paper's teacher-free row (teacher "-")


def beside_paper(
    table: pd.DataFrame, reference: pd.DataFrame, baselines: tuple[str, ...] = (PAPER_BASELINE,)
) -> pd.DataFrame:
    """A `paper_table` beside the published cells (`paper_reference`) of its metrics: one
    row per cell of either, ours "missing" (NaN) where we have no run and the paper's NaN
    where it published none. Columns: `system`, `teacher`, `metric`, `ours`, `ci95`,
    `ci_low`, `ci_high`, `seeds` (runs in our mean), `paper_system` (the published row set
    beside ours), `paper`, `source`, `diff` (ours − paper), `beyond_ci` (the paper's value
    outside our interval; NaN without one) and `mark` (`beside_note`).

    Each of our teacher-free `baselines` appears once, teacher "-", beside the paper's
    Baseline: we do not know whether the paper ran our baseline or the authors' released
    configuration. Order: the baselines, then the paper's systems, then others."""
    reference = reference[reference["metric"].isin(set(table["metric"]))]
    ours = table.rename(columns={"mean": "ours", "n": "seeds"})
    free = ours["system"].isin(baselines)
    ours = pd.concat(
        [ours[free].drop_duplicates(["system", "metric"]).assign(teacher="-"), ours[~free]]
    )
    ours["paper_system"] = ours["system"].where(~free, PAPER_BASELINE)
    columns = ["system", "teacher", "metric", "ours", "ci95", "ci_low", "ci_high", "seeds"]
    out = ours[[*columns, "paper_system"]].merge(
        reference.rename(columns={"system": "paper_system"}),
        on=["paper_system", "teacher", "metric"],
        how="outer",
        sort=False,
    )
    out["system"] = out["system"].fillna(out["paper_system"])
    out["paper_system"] = out["paper_system"].where(out["paper"].notna())
    out["seeds"] = out["seeds"].fillna(0).astype(int)
    out["diff"] = out["ours"] - out["paper"]
    outside = (out["paper"] < out["ci_low"]) | (out["paper"] > out["ci_high"])
    no_ci = out["ci_low"].isna() | out["ci_high"].isna() | out["paper"].isna()
    out["beyond_ci"] = np.where(no_ci, np.nan, outside)
    out["mark"] = np.where(out["beyond_ci"] == 1, np.where(out["seeds"] >= 2, "*", "°"), "")
    orders = {
        "system": [*baselines, *PAPER_ORDER, *table["system"]],
        "teacher": ["-", *table["teacher"], *reference["teacher"]],
        "metric": [*table["metric"], *reference["metric"]],
    }
    ranks = {c: {v: i for i, v in enumerate(dict.fromkeys(o))} for c, o in orders.items()}
    order = np.lexsort([out[c].map(ranks[c]).to_numpy() for c in reversed(orders)])
    return out.iloc[order].reset_index(drop=True)


def compared_cells(compared: pd.DataFrame) -> int:
    """How many published cells of a `beside_paper` frame have ours beside them (the
    paper's Baseline counted once however many of our baselines sit beside it)."""
    both = compared.dropna(subset=["ours", "paper"])
    return len(both.drop_duplicates(["paper_system", "teacher", "metric"]))


def beside_note(compared: pd.DataFrame) -> str:
    """What `format_beside_paper`'s marks mean, with the seed counts of our cells."""
    both = compared["ours"].notna() & compared["paper"].notna()
    ran = compared.loc[both, "seeds"].value_counts().sort_index()
    seeds = ", ".join(f"{k} with {n} seed{'s' * (n != 1)}" for n, k in ran.items())
    return (
        "* the paper's value lies outside our 95% bootstrap interval, which resamples the "
        "test clips and our seeds (>= 2): a difference beyond test-set sampling and "
        "seed-to-seed training variation. ° outside an interval from one seed, which "
        "resamples the test clips only: the paper's number shares that test set and the "
        "interval leaves out training variance, so ° is no evidence that we differ from the "
        "paper (that needs >= 3 seeds per cell). No mark: inside, or no interval. "
        f"Our figures set beside a published one: {seeds or 'none'}."
    )


def format_beside_paper(compared: pd.DataFrame) -> pd.DataFrame:
    """A `beside_paper` frame as rows (system, teacher) × metric columns:
    "ours / paper (ours − paper mark)", "missing" for a cell we have not run, "—" for one
    the paper did not publish."""

    def cell(row: pd.Series) -> str:
        ours = "missing" if pd.isna(row["ours"]) else f"{row['ours']:.3f}"
        paper = "—" if pd.isna(row["paper"]) else f"{row['paper']:.3f}"
        diff = "" if pd.isna(row["diff"]) else f" ({row['diff']:+.3f}{row['mark']})"
        return f"{ours} / {paper}{diff}"

    text = compared.assign(value=compared.apply(cell, axis=1))
    wide = text.pivot_table(
        index=["system", "teacher"], columns="metric", values="value", aggfunc="first", sort=False
    )
    return wide[list(dict.fromkeys(compared["metric"]))]


def absent_as_zero(results: pd.DataFrame, present: int, total: int) -> pd.DataFrame:
    """`results` with test mAP and ROC-AUC under the authors' rule for classes without
    both labels (scored 0: ours × `present` / `total` on one test split,
    `east_ray.analysis.metrics`); validation figures stay ours, so λ choice and model
    selection do not move."""
    if not 0 < present <= total:
        raise ValueError(
            f"present, total: got {present} of {total} classes, expected 0 < present <= total"
        )
    columns = [f"test_{m}" for m in ZEROED if f"test_{m}" in results]
    return results.assign(**{c: results[c] * present / total for c in columns})


def classes_note(metrics: tuple[str, ...], present: int, total: int, absent_classes: str) -> str:
    """How many classes each of a table's `metrics` averages under `absent_classes`."""
    zeroed = [m for m in metrics if m in ZEROED]
    absent = total - present
    if absent == 0:
        return (
            f"classes: every figure averages all {total} (each has a labelled positive and "
            "a labelled negative in the test split)"
        )
    why = f"{absent} have no labelled positive or no labelled negative in the test split"
    if absent_classes == "zero" and zeroed:
        kept = [m for m in metrics if m not in ZEROED]
        rest = f"; {'/'.join(kept)} over those {present} (ours)" if kept else ""
        return (
            f"classes: {present} of {total} have both labels in the test split; "
            f"{'/'.join(zeroed)} averaged over all {total}, the {absent} others scored 0 "
            f"(the authors' rule){rest}"
        )
    return (
        f"classes: {'/'.join(metrics)} averaged over {present} of {total} classes ({why}; "
        "left out, our rule: --absent-classes zero scores them 0 in mAP and ROC-AUC, as the "
        "authors' code does)"
    )


def limited_data_figure(
    results: pd.DataFrame, metric: str, path: Path, intervals: pd.DataFrame | None = None
) -> Path:
    """Test `metric` vs training fraction per system (one panel per teacher), as PNG; the
    band is `intervals`' bootstrap interval (`with_intervals`), else the Student-t one over
    seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = with_intervals(summarise(choose_lambda(results), (metric,)), intervals)
    band = "95% CI over seeds, Student-t" if intervals is None else "95% bootstrap CI"
    baseline = summary[summary["system"] == "Baseline"]
    teachers = sorted(t for t in summary["teacher"].unique() if t != "-") or ["-"]
    rank = {s: i for i, s in enumerate(PAPER_ORDER)}  # the paper's order; "KD, λ = 0.3" as KD

    def order(system: str) -> tuple[int, str]:
        return rank.get(system.partition(", λ = ")[0], len(rank)), system

    fig, axes = plt.subplots(
        1, len(teachers), figsize=(4.5 * len(teachers) + 1.8, 3.6), sharey=True, squeeze=False
    )
    for ax, teacher in zip(axes[0], teachers, strict=True):
        panel = pd.concat([baseline, summary[summary["teacher"] == teacher]])
        for system in sorted(panel["system"].unique(), key=order):
            group = panel[panel["system"] == system]
            rows = group.sort_values("fraction")
            (line,) = ax.plot(rows["fraction"], rows["mean"], marker="o", label=system)
            ax.fill_between(
                rows["fraction"],
                rows["ci_low"].fillna(rows["mean"]),
                rows["ci_high"].fillna(rows["mean"]),
                color=line.get_color(),
                alpha=0.1,
                linewidth=0,
            )
        fractions = sorted(panel["fraction"].unique())
        ax.set_xscale("log")
        ax.set_xticks(fractions, [percent(f) for f in fractions])
        ax.minorticks_off()
        ax.set_title(f"teacher: {teacher_display(teacher)}")
        ax.set_xlabel(f"training data (band: {band})")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test {metric}")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")  # path may be a temporary name
    plt.close(fig)
    return path
