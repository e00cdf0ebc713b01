"""What Optuna searches, journalled next to the results for `optuna-dashboard <journal>`.

- The grid: every pending cell is enqueued, in order, as one trial whose parameters are the
  cell's axes (`GRID_PARAMS`: `system`, `teacher` and `lam` where the system has a teacher,
  `fraction`, `seed`, `dataset`, `student`) that take more than one value in the run, and
  whose user attributes are the rest (`trial_key`, `cell_id`, `regularizer`, `stage`, and
  any constant axis: a parameter with one value has no importance and an empty contour).
  The define-by-run `CellSpace` suggests each parameter over the values the grid holds and
  an enqueued trial takes its cell's values, so the dashboard's importance, slice, contour
  and parallel-coordinate plots compare the cells along their axes.
- `--search tpe`: λ per cell group (`GroupSpace`), the cell's axes as user attributes.

Both name the objective `val_mAP` (the best epoch's validation mAP) and, as each trial
finishes, add its cell's test metrics (`test_mAP`, `test_ROC-AUC`, ...; its `result.json`)
as user attributes (`StudySearch`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.storages.journal import JournalFileBackend
from ray.tune.search.optuna import OptunaSearch

from east_ray.config import Cell
from east_ray.study.store import cell_dir, finished, read_result
from east_ray.train.result import METRIC_KEYS

LAM_RANGE = (0.05, 0.95)
OBJECTIVE = "val_mAP"
# the user attribute naming the trial key a trial trains
KEY_ATTR = "trial_key"
# a grid trial's parameters, where they apply and vary; its other axes are user attributes
GRID_PARAMS = ("system", "teacher", "lam", "fraction", "seed", "dataset", "student")
_FLOAT_PARAMS = ("lam", "fraction")


def group_id(cell: Cell) -> str:
    """A cell with its λ left open ("lamnan"): the unit `--search tpe` tunes λ for."""
    if cell.teacher is None:
        return cell.cell_id
    return dataclasses.replace(cell, lam=math.nan).cell_id


def cell_axes(cell: Cell) -> dict[str, Any]:
    """The axes that apply to `cell` by name, as its trial shows them (the baseline has no
    teacher, stage or λ)."""
    axes = {
        "system": cell.system,
        "regularizer": cell.regularizer,
        "stage": cell.stage,
        "teacher": cell.teacher,
        "lam": None if cell.teacher is None else cell.lam,
        "fraction": cell.fraction,
        "seed": cell.seed,
        "dataset": cell.dataset,
        "student": cell.student,
    }
    return {name: value for name, value in axes.items() if value is not None}


def grid_distributions(cells: Iterable[Cell]) -> dict[str, BaseDistribution]:
    """Each grid parameter that takes more than one value in `cells`, over those values: λ
    and the fraction as floats from the least to the greatest, the others as categories in
    the grid's order."""
    values: dict[str, dict[Any, None]] = {}
    for cell in cells:
        for name, value in cell_axes(cell).items():
            if name in GRID_PARAMS:
                values.setdefault(name, {})[value] = None
    return {
        name: FloatDistribution(min(held), max(held))
        if name in _FLOAT_PARAMS
        else CategoricalDistribution(list(held))
        for name, held in values.items()
        if len(held) > 1
    }


def config_key(config: Mapping[str, Any]) -> str:
    """The trial key of the cell (grid) or group (TPE) a Tune config trains."""
    return str(config["cell_id"] if "cell_id" in config else config["group"])


def config_cell(config: Mapping[str, Any], template: Cell) -> Cell:
    """The cell a Tune config trains, given its key's cell: a grid cell as it is, a group
    template with TPE's λ."""
    if "group" not in config:
        return template
    lam = float(config.get(f"lam[{config['group']}]", template.lam))
    return dataclasses.replace(template, lam=lam)


@dataclasses.dataclass(frozen=True)
class CellSpace:
    """Optuna define-by-run space of the grid: a trial enqueued by `searcher` names its cell
    in its `trial_key` user attribute and suggests those of the cell's axes that are
    parameters (`distributions`), taking the enqueued values. (A class, not a closure: Tune
    pickles the searcher.)"""

    cells: Mapping[str, Cell]
    distributions: Mapping[str, BaseDistribution]

    def __call__(self, trial: Any) -> dict[str, Any]:
        key = trial.user_attrs[KEY_ATTR]
        for name in cell_axes(self.cells[key]):
            distribution = self.distributions.get(name)
            if isinstance(distribution, FloatDistribution):
                trial.suggest_float(name, distribution.low, distribution.high)
            elif isinstance(distribution, CategoricalDistribution):
                trial.suggest_categorical(name, distribution.choices)
        return {"cell_id": key}


@dataclasses.dataclass(frozen=True)
class GroupSpace:
    """Optuna define-by-run space for `--search tpe`: trial n trains group `schedule[n]`
    (`templates`: by group key), with one λ parameter per group so TPE models each group's
    λ separately; the cell's axes are user attributes, λ too (one axis across groups for
    the dashboard's parallel coordinates)."""

    schedule: tuple[str, ...]
    templates: Mapping[str, Cell]

    def __call__(self, trial: Any) -> dict[str, Any]:
        group = self.schedule[trial.number % len(self.schedule)]
        cell = self.templates[group]
        if cell.teacher is not None:
            cell = dataclasses.replace(cell, lam=trial.suggest_float(f"lam[{group}]", *LAM_RANGE))
        for name, value in {KEY_ATTR: group, "cell_id": cell.cell_id, **cell_axes(cell)}.items():
            trial.set_user_attr(name, value)
        return {"group": group}


class StudySearch(OptunaSearch):
    """`OptunaSearch` that, before it tells Optuna a trial's objective, adds the test
    metrics of the cell the trial trained (its `result.json`, under `result_dirs[key]`) as
    user attributes."""

    def __init__(
        self, cells: Mapping[str, Cell], result_dirs: Mapping[str, Path], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._cells = dict(cells)
        self._result_dirs = dict(result_dirs)
        self._trained: dict[str, tuple[str, Cell]] = {}  # by Tune trial id, until complete

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config: dict[str, Any] | None = super().suggest(trial_id)
        if config is not None:
            key = config_key(config)
            self._trained[trial_id] = key, config_cell(config, self._cells[key])
        return config

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        trained = self._trained.pop(trial_id, None)
        if trained is not None:
            key, cell = trained
            run = read_result(cell_dir(self._result_dirs[key], cell))
            if run is not None:
                # OptunaSearch keeps each Tune trial's Optuna trial here (Ray 2.60)
                optuna_trial = self._ot_trials[trial_id]
                for name in METRIC_KEYS:
                    optuna_trial.set_user_attr(f"test_{name}", run.test[name])
        super().on_trial_complete(trial_id, result, error)


def searcher(
    pending: Mapping[str, Cell],
    schedule: list[str] | None,
    study_dir: Path,
    study_name: str,
    result_dirs: Mapping[str, Path],
) -> StudySearch:
    """A new Optuna study `study_name` in `study_dir`'s journal over the pending grid cells,
    or TPE over λ for the scheduled groups; both by trial key (`pending`: key → cell or
    group template; `result_dirs`: key → its part's results folder)."""

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(study_dir / "optuna.journal")))
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([OBJECTIVE])
    space: CellSpace | GroupSpace
    sampler: optuna.samplers.BaseSampler
    if schedule is None:
        distributions = grid_distributions(pending.values())
        for key, cell in pending.items():
            axes = {KEY_ATTR: key, "cell_id": cell.cell_id, **cell_axes(cell)}
            study.enqueue_trial(
                {name: value for name, value in axes.items() if name in distributions},
                user_attrs={
                    name: value for name, value in axes.items() if name not in distributions
                },
            )
        space = CellSpace(dict(pending), distributions)
        sampler = optuna.samplers.RandomSampler(seed=0)  # never asked: every value is enqueued
    else:
        space = GroupSpace(tuple(schedule), dict(pending))
        sampler = optuna.samplers.TPESampler(
            seed=0, multivariate=True, group=True, n_startup_trials=4
        )
    return StudySearch(
        pending,
        result_dirs,
        space=space,
        sampler=sampler,
        metric="best_val_mAP",
        mode="max",
        storage=storage,
        study_name=study_name,
    )


def tpe_schedule(
    cells: Sequence[Cell], study_dir: Path, budget: int
) -> tuple[list[Cell], list[str]]:
    """Group templates still short of `budget` trials (baselines: 1), interleaved."""
    done = Counter(group_id(r.cell) for r in finished(study_dir))
    templates = {
        group_id(c): (c if c.teacher is None else dataclasses.replace(c, lam=math.nan))
        for c in cells
    }
    remaining = {g: (1 if t.teacher is None else budget) - done[g] for g, t in templates.items()}
    schedule = []
    for round_ in range(max([0, *remaining.values()])):
        schedule += [g for g, n in remaining.items() if n > round_]
    pending = [templates[g] for g, n in remaining.items() if n > 0]
    return pending, schedule
