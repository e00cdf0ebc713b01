"""The Optuna study a Tune run journals (east_ray.study.search), driven without Tune: the
searcher is asked for every trial and told each result as Tune would, then the journal is
read back with Optuna's API, as `optuna-dashboard <journal>` reads it."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
from optuna.storages.journal import JournalFileBackend

from east_ray.config import Cell
from east_ray.study.search import (
    config_cell,
    config_key,
    grid_distributions,
    group_id,
    searcher,
)
from east_ray.study.store import RESULT, cell_dir
from east_ray.train.result import METRIC_KEYS, RunResult

SEEDS = (1, 2, 3)


def _cell(regularizer: str, stage: str | None, lam: float, seed: int, fraction: float) -> Cell:
    teacher = None if regularizer == "none" else "musicnn"
    return Cell("synthmic", "cp_resnet", regularizer, teacher, stage, lam, fraction, seed)


def _grid() -> list[Cell]:
    """A small grid: the baseline, KD and EAsT_Final at two λ and EAsT_All at one, over
    two fractions and three seeds (30 cells)."""
    cells = []
    for fraction in (0.5, 1.0):
        for seed in SEEDS:
            cells.append(_cell("none", None, 0.0, seed, fraction))
            cells.append(_cell("kd", None, 0.5, seed, fraction))
            cells += [_cell("dcor", "final", lam, seed, fraction) for lam in (0.5, 0.8)]
            cells.append(_cell("dcor", "all", 0.8, seed, fraction))
    return cells


def _val(cell: Cell) -> float:
    """A plausible best validation mAP: the system and λ matter, the seed a little."""
    gain = {"none": 0.0, "kd": 0.01, "dcor": 0.03}[cell.regularizer]
    return 0.40 + gain + 0.02 * cell.lam + 0.05 * cell.fraction + 0.002 * cell.seed


def _test(cell: Cell) -> dict[str, float]:
    return {name: round(_val(cell) - 0.01 * (i + 1), 6) for i, name in enumerate(METRIC_KEYS)}


def _write_result(run_dir: Path, cell: Cell) -> None:
    run = RunResult(
        cell=cell,
        epochs=4,
        steps=40,
        best_epoch=3,
        stopped="max_steps",
        train_clips=160,
        val={**{name: _val(cell) for name in METRIC_KEYS}, "loss": 0.3},
        test=_test(cell),
        wall_seconds=1.0,
        device="cpu",
    )
    run_dir.mkdir(parents=True)
    (run_dir / RESULT).write_text(json.dumps(run.row()))


def _run(
    pending: Mapping[str, Cell],
    schedule: list[str] | None,
    tmp_path: Path,
    result_dirs: Mapping[str, Path],
) -> optuna.Study:
    """Ask the searcher for every trial, train each (write its result.json) and tell the
    searcher as Tune does; the journal's study, loaded afresh."""
    search = searcher(pending, schedule, tmp_path, "tiny-run-1", result_dirs)
    for number in range(len(pending) if schedule is None else len(schedule)):
        trial_id = f"trial{number}"
        config = search.suggest(trial_id)
        assert config is not None
        key = config_key(config)
        cell = config_cell(config, pending[key])
        _write_result(cell_dir(result_dirs[key], cell), cell)
        search.on_trial_result(trial_id, {"best_val_mAP": _val(cell), "training_iteration": 1})
        search.on_trial_complete(trial_id, {"best_val_mAP": _val(cell)})
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    return optuna.load_study(storage=storage, study_name="tiny-run-1")


def test_grid_trials_are_the_pending_cells_with_their_axes_and_test_metrics(
    tmp_path: Path,
) -> None:
    cells = _grid()
    # two parts in one run: the same baseline cell is a trial of each
    pending = {f"a:{c.cell_id}": c for c in cells} | {f"b:{cells[0].cell_id}": cells[0]}
    dirs = {"a": tmp_path / "a", "b": tmp_path / "b"}
    result_dirs = {key: dirs[key.partition(":")[0]] for key in pending}
    study = _run(pending, None, tmp_path, result_dirs)

    assert study.metric_names == ["val_mAP"]
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = study.trials
    # each pending cell is exactly one trial, in the pending order
    assert [t.user_attrs["trial_key"] for t in trials] == list(pending)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for trial, (key, cell) in zip(trials, pending.items(), strict=True):
        system = {"none": "Baseline", "kd": "KD", "dcor": f"EAsT_{str(cell.stage).title()}"}
        params = {"system": system[cell.regularizer], "fraction": cell.fraction, "seed": cell.seed}
        attrs = {"regularizer": cell.regularizer, "dataset": "synthmic", "student": "cp_resnet"}
        if cell.teacher is not None:  # the baseline has no teacher, stage or λ
            params["lam"] = cell.lam
            attrs["teacher"] = "musicnn"  # one teacher in the grid: an attribute
        if cell.stage is not None:
            attrs["stage"] = cell.stage
        assert trial.params == params
        tests = {f"test_{name}": value for name, value in _test(cell).items()}
        assert trial.user_attrs == {"trial_key": key, "cell_id": cell.cell_id, **attrs, **tests}
        assert trial.value == pytest.approx(_val(cell))
        assert trial.intermediate_values == {1: pytest.approx(_val(cell))}
    # the axes range over the grid's values, so the plots compare cells
    distributions = {
        "system": CategoricalDistribution(["Baseline", "KD", "EAsT_Final", "EAsT_All"]),
        "lam": FloatDistribution(0.5, 0.8),
        "fraction": FloatDistribution(0.5, 1.0),
        "seed": CategoricalDistribution(list(SEEDS)),
    }
    assert all(t.distributions == {p: distributions[p] for p in t.params} for t in trials)
    # the dashboard's importance (PED-ANOVA, conditional parameters included)
    with warnings.catch_warnings():  # the dashboard silences it too: target is negated
        warnings.filterwarnings("ignore", "PedAnovaImportanceEvaluator computes")
        importance = get_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(), target=lambda t: -float(t.value or 0)
        )
    assert set(importance) == set(distributions)


def test_tpe_trials_carry_their_groups_axes_and_test_metrics(tmp_path: Path) -> None:
    cells = [c for c in _grid() if c.fraction == 1.0 and c.seed == 1 and c.lam != 0.5]
    templates = {}
    for cell in cells:
        template = cell if cell.teacher is None else dataclasses.replace(cell, lam=math.nan)
        templates[f"a:{group_id(cell)}"] = template
    baseline, final, all_ = templates
    schedule = [baseline, final, all_, final, all_]
    study = _run(templates, schedule, tmp_path, dict.fromkeys(templates, tmp_path / "a"))

    assert study.metric_names == ["val_mAP"]
    trials = study.trials
    assert [t.user_attrs["trial_key"] for t in trials] == schedule
    for trial, key in zip(trials, schedule, strict=True):
        template = templates[key]
        axes = {
            "trial_key": key,
            "regularizer": template.regularizer,
            "fraction": 1.0,
            "seed": 1,
            "dataset": "synthmic",
            "student": "cp_resnet",
        }
        if template.teacher is None:
            assert trial.params == {}
            cell = template
            axes["system"] = "Baseline"
        else:
            ((name, lam),) = trial.params.items()
            assert name == f"lam[{key}]" and 0.05 <= lam <= 0.95
            cell = dataclasses.replace(template, lam=lam)
            axes |= {"system": f"EAsT_{str(template.stage).title()}", "teacher": "musicnn"}
            axes["lam"] = lam
            axes["stage"] = str(template.stage)
        tests = {f"test_{name}": value for name, value in _test(cell).items()}
        assert trial.user_attrs == {**axes, "cell_id": cell.cell_id, **tests}
        assert trial.value == pytest.approx(_val(cell))


def test_an_axis_is_a_parameter_where_the_run_holds_more_than_one_of_its_values() -> None:
    cells = [c for c in _grid() if c.fraction == 1.0]  # one fraction, one teacher
    other_dataset = dataclasses.replace(cells[0], dataset="magnatagatune")
    distributions = grid_distributions([*cells, other_dataset])
    assert set(distributions) == {"system", "lam", "seed", "dataset"}
    assert distributions["dataset"] == CategoricalDistribution(["synthmic", "magnatagatune"])
