"""What Optuna searches: the grid of pending cells (`GridSampler`), or λ per cell group
with TPE (`--search tpe`), both journalled next to the results."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend
from ray.tune.search.optuna import OptunaSearch

from east_ray.config import Cell
from east_ray.study.results import finished

LAM_RANGE = (0.05, 0.95)


def group_id(cell: Cell) -> str:
    """A cell with its λ left open ("lamnan"): the unit `--search tpe` tunes λ for."""
    if cell.teacher is None:
        return cell.cell_id
    return dataclasses.replace(cell, lam=math.nan).cell_id


@dataclasses.dataclass(frozen=True)
class GroupSpace:
    """Optuna define-by-run space for `--search tpe`: trial n trains group `schedule[n]`,
    with one λ parameter per group so TPE models each group's λ separately. (A class, not
    a closure: Tune pickles the searcher with its experiment state.)"""

    schedule: tuple[str, ...]
    open_lam: frozenset[str]

    def __call__(self, trial: Any) -> dict[str, Any]:
        group = self.schedule[trial.number % len(self.schedule)]
        if group in self.open_lam:
            trial.suggest_float(f"lam[{group}]", *LAM_RANGE)
        return {"group": group}


def searcher(
    pending: Mapping[str, Cell], schedule: list[str] | None, study_dir: Path, study_name: str
) -> Any:
    """Optuna over the pending grid cells, or TPE over λ for the scheduled groups; both by
    trial key (`pending`: key → cell or group template)."""

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(study_dir / "optuna.journal")))
    common: dict[str, Any] = {
        "metric": "best_val_mAP",
        "mode": "max",
        "storage": storage,
        "study_name": study_name,
    }
    if schedule is None:
        ids = list(pending)
        return OptunaSearch(
            space={"cell_id": optuna.distributions.CategoricalDistribution(ids)},
            sampler=optuna.samplers.GridSampler({"cell_id": ids}, seed=0),
            **common,
        )
    open_lam = {key for key, c in pending.items() if c.teacher is not None}
    space = GroupSpace(tuple(schedule), frozenset(open_lam))
    sampler = optuna.samplers.TPESampler(seed=0, multivariate=True, group=True, n_startup_trials=4)
    return OptunaSearch(space=space, sampler=sampler, **common)


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
