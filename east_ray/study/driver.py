"""One study run on Ray: the data stages, the cells still to train on Tune, the results.

A cell is done when its `result.json` exists, so a rerun trains exactly the cells without
one (each resuming from its checkpoint) and, when none is left, only writes the tables.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from east_ray.config import Cell, StudySpec
from east_ray.ray_session import init_ray
from east_ray.study.data_source import data_source
from east_ray.study.results import (
    cell_dir,
    check_study_dir,
    collect_results,
    read_result,
    render_tables,
)
from east_ray.study.search import LAM_RANGE, tpe_schedule
from east_ray.study.stages import ensure_data, ensure_teachers
from east_ray.study.tune import run_tune, shared_inputs

logger = logging.getLogger(__name__)


def _to_run(
    cells: Sequence[Cell], study_dir: Path, args: argparse.Namespace
) -> tuple[list[Cell], list[str] | None]:
    """Grid: the cells without a result (schedule None). TPE: the groups still short of
    `--budget` trials and the trial schedule over them."""
    if args.search == "tpe":
        return tpe_schedule(cells, study_dir, args.budget)
    return [c for c in cells if read_result(cell_dir(study_dir, c)) is None], None


def run_study(
    spec: StudySpec, cells: Sequence[Cell], study_dir: Path, args: argparse.Namespace
) -> int:
    """Run what is missing of the study; print its tables. Exit 1 if cells are left."""
    started = time.perf_counter()
    study_dir.mkdir(parents=True, exist_ok=True)
    check_study_dir(spec, study_dir)
    init_ray(args.address)
    data_dir = ensure_data(spec, data_source(spec, args))
    teacher_lr = ensure_teachers(data_dir, cells, spec)
    pending, schedule = _to_run(cells, study_dir, args)
    if schedule is not None:
        logger.info(
            "TPE over λ in %s: %d trials to run for %d cells",
            LAM_RANGE,
            len(schedule),
            len(pending),
        )
    else:
        logger.info("%d cells already done, %d to run", len(cells) - len(pending), len(pending))
    logger.info("TensorBoard: tensorboard --logdir %s", study_dir / "cells")
    if pending:
        shared = shared_inputs(spec, pending, data_dir, study_dir, args.max_epochs)
        run_tune(
            spec,
            pending,
            shared,
            study_dir,
            retries=args.retries,
            schedule=schedule,
            max_concurrent=args.max_concurrent,
        )
    results = collect_results(study_dir, cells, teacher_lr, spec, args.search == "tpe")
    left, schedule = _to_run(cells, study_dir, args)
    missing = len(schedule) if schedule is not None else len(left)
    print(render_tables(spec, results, study_dir))
    print(
        f"results: {study_dir / 'results.parquet'} ({len(results)} rows); "
        f"{missing} cells missing; {time.perf_counter() - started:.0f} s"
    )
    return 1 if missing else 0
