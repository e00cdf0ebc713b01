"""One study run on Ray: the data stages, the cells still to train on Tune, the results.

A cell is done when its `result.json` exists, so a rerun trains exactly the cells without
one (each resuming from its checkpoint) and, when none is left, only writes the tables.
Every part of a study keeps its own results folder, `<storage>/<part>`; the Tune run and
its Optuna journal live in `<storage>/<study>`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from east_ray.analysis.results import run_folder
from east_ray.config import Cell, Study, StudySpec
from east_ray.ray_session import init_ray
from east_ray.study.options import RunOptions
from east_ray.study.search import LAM_RANGE, tpe_schedule
from east_ray.study.stages import ensure_data, ensure_teachers
from east_ray.study.store import (
    cell_dir,
    check_study_dir,
    collect_results,
    fits_dir,
    read_result,
    render_tables,
)
from east_ray.study.tune import Shared, run_tune, shared_inputs, trial_key
from east_ray.train.cpu_numerics import use_cpu_numerics
from east_ray.train.result import TeacherLRFit
from east_ray.train.tensorboard import (
    cell_hparams,
    final_metrics,
    session_hparams,
    write_experiment,
    write_fit_session,
)

logger = logging.getLogger(__name__)


def _to_run(
    spec: StudySpec, cells: Sequence[Cell], study_dir: Path, options: RunOptions
) -> tuple[dict[str, Cell], list[str] | None]:
    """By trial key: grid: the cells without a result (schedule None); TPE: the groups
    still short of `--budget` trials and the trial schedule over them."""
    if options.tpe:
        templates, schedule = tpe_schedule(cells, study_dir, options.budget)
        pending = {trial_key(spec.name, c.cell_id): c for c in templates}
        return pending, [trial_key(spec.name, g) for g in schedule]
    todo = [c for c in cells if read_result(cell_dir(study_dir, c)) is None]
    return {trial_key(spec.name, c.cell_id): c for c in todo}, None


def _interleaved(schedules: Sequence[list[str]]) -> list[str]:
    """One trial of each part in turn, so a cluster mixes the parts' trials."""
    return [key for row in itertools.zip_longest(*schedules) for key in row if key is not None]


def write_hparams_view(
    study_dir: Path, cells: Sequence[Cell], teacher_lr: Sequence[TeacherLRFit], spec: StudySpec
) -> None:
    """TensorBoard's HParams view of the study (`east_ray.train.tensorboard`): the
    experiment summary over every cell and fit, and each Teacher_LR fit's session (each
    cell's is written by the trainer when it finishes)."""
    sessions = [cell_hparams(cell) for cell in cells]
    for fit in teacher_lr:
        hparams = session_hparams(
            system="Teacher_LR",
            teacher=fit.teacher,
            lam=0.0,
            fraction=fit.fraction,
            seed=fit.seed,
            dataset=spec.dataset,
            student=None,
        )
        metrics = final_metrics(fit.test, fit.valid["mAP"])
        write_fit_session(run_folder(study_dir, fit.cell_id, "teacher_lr") / "tb", hparams, metrics)
        sessions.append(hparams)
    write_experiment(study_dir, sessions)


def _cpu_numerics(parts: Sequence[StudySpec]) -> str:
    """One choice for the whole run (the variables are per process): "portable" if any
    part asks for it."""
    choices = {spec.recipe.cpu_numerics for spec in parts}
    if len(choices) > 1:
        logger.warning("parts ask for recipe.cpu_numerics %s; running all portable", choices)
    return "portable" if "portable" in choices else "native"


def run_study(study: Study, cells: Mapping[str, Sequence[Cell]], options: RunOptions) -> int:
    """Run what is missing of every part in one Tune run; print each part's tables. Exit 1
    if cells are left."""
    started = time.perf_counter()
    storage = options.storage
    parts = {spec.name: spec for spec in study.parts}
    study_dirs = {name: storage / name for name in parts}
    env = use_cpu_numerics(_cpu_numerics(study.parts))
    for name, spec in parts.items():
        study_dirs[name].mkdir(parents=True, exist_ok=True)
        check_study_dir(spec, study_dirs[name])
    init_ray(options.address, env=env)
    prepared, teacher_lr = {}, {}
    for name, spec in parts.items():
        prepared[name] = ensure_data(spec, options.sources[name], options.plans[name])
        teacher_lr[name] = ensure_teachers(
            prepared[name], cells[name], spec, fits_dir(study_dirs[name])
        )
        write_hparams_view(study_dirs[name], cells[name], teacher_lr[name], spec)
    to_run = {
        name: _to_run(spec, cells[name], study_dirs[name], options) for name, spec in parts.items()
    }
    pending = {key: c for part_pending, _ in to_run.values() for key, c in part_pending.items()}
    schedule = None
    if options.tpe:
        schedule = _interleaved([s for _, s in to_run.values() if s is not None])
        logger.info(
            "TPE over λ in %s: %d trials to run for %d cells",
            LAM_RANGE,
            len(schedule),
            len(pending),
        )
    else:
        total = sum(map(len, cells.values()))
        logger.info("%d cells already done, %d to run", total - len(pending), len(pending))
    for name in parts:
        logger.info("TensorBoard: tensorboard --logdir %s", study_dirs[name])
    if pending:
        blocks: dict[Path, list[Any]] = {}
        shared: dict[str, Shared] = {}
        for name, (part_pending, _) in to_run.items():
            if part_pending:
                shared[name] = shared_inputs(
                    parts[name],
                    list(part_pending.values()),
                    prepared[name],
                    study_dirs[name],
                    options.max_epochs,
                    blocks=blocks,
                )
        run_tune(
            study.name,
            shared,
            pending,
            storage / study.name,
            retries=options.retries,
            schedule=schedule,
            max_concurrent=options.max_concurrent,
        )
    missing = 0
    for name, spec in parts.items():
        results = collect_results(
            study_dirs[name], cells[name], teacher_lr[name], spec, options.tpe
        )
        left, part_schedule = _to_run(spec, cells[name], study_dirs[name], options)
        part_missing = len(part_schedule) if part_schedule is not None else len(left)
        missing += part_missing
        print(render_tables(spec, results, study_dirs[name], absent_classes=options.absent_classes))
        print(
            f"results: {study_dirs[name] / 'results.parquet'} ({len(results)} rows); "
            f"{part_missing} cells missing"
        )
    print(f"study {study.name!r}: {missing} cells missing; {time.perf_counter() - started:.0f} s")
    return 1 if missing else 0
