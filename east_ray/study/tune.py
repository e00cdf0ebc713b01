"""Cells as Ray Tune trials: the arrays every trial of a part shares, one trial (one cell
through the trainer, under the cell's lock), and the Tune run over the pending cells of
every part. A trial is named by its key, `<part>:<cell id>` (TPE: `<part>:<group id>`; not
"/", which Tune reads as nesting in a config key)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.logger import TBXLoggerCallback

from east_ray.config import Cell, Resources, StudySpec
from east_ray.data.parquet import LabelTable, write_json_atomic
from east_ray.data.prepared import PreparedData
from east_ray.data.spectra import COLUMN as SPECTRA_COLUMN
from east_ray.data.spectra import SPECTRA, check_spectra, needs_spectra
from east_ray.study.search import config_cell, config_key, searcher
from east_ray.study.store import RESULT, cell_dir, fits_dir, read_result
from east_ray.train.cpu_numerics import check_cpu_numerics
from east_ray.train.data import BlockStore, TeacherArrays, build_trial_data, load_teacher_arrays
from east_ray.train.result import RunResult
from east_ray.train.trainer import train
from east_ray.train.trial import TrialSpec

logger = logging.getLogger(__name__)


class _NoTuneTensorBoard(TBXLoggerCallback):
    """Tune adds its own TensorBoard logger unless the run has one; this one writes
    nothing. The trainer writes each run's curves and HParams session, and the study one
    HParams experiment (`east_ray.train.tensorboard`); Tune's logger would add an
    experiment per trial over Tune's config keys, which TensorBoard's HParams view may show
    instead of the study's, and a second copy of every curve."""

    def log_trial_start(self, trial: Trial) -> None:
        return None

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        return None

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class Shared:
    """What every trial of one part reads; put in the object store once by
    `tune.with_parameters`. `cells` are the part's pending cells (TPE: group templates)
    by id."""

    spec: StudySpec
    cells: dict[str, Cell]
    study_dir: str
    num_classes: int
    labels: LabelTable
    block_refs: list[Any]  # ObjectRefs of Arrow blocks (clip_id, logmel)
    teachers: TeacherArrays
    max_epochs: int | None
    # the training clips' STFT magnitudes (clip_id, magnitude), for mel-band jitter
    spectra_refs: list[Any] | None = None


def trial_key(part: str, ident: str) -> str:
    """The key naming a trial of `part`: a cell id, or with TPE a group id."""
    return f"{part}:{ident}"


def _part_and_id(key: str) -> tuple[str, str]:
    part, _, ident = key.partition(":")
    return part, ident


def trial_cell(config: dict[str, Any], shared: Mapping[str, Shared]) -> tuple[Shared, Cell]:
    """The part and cell a trial trains: a grid cell by key, or a group template with
    TPE's λ."""
    part, ident = _part_and_id(config_key(config))
    return shared[part], config_cell(config, shared[part].cells[ident])


@dataclasses.dataclass(frozen=True)
class TrialResources:
    """What a trial reserves: its part's `[resources]` (a class, not a closure: Tune
    pickles it with the experiment state)."""

    by_part: dict[str, Resources]

    def __call__(self, config: dict[str, Any]) -> tune.PlacementGroupFactory:
        part, _ = _part_and_id(config.get("cell_id") or config["group"])
        r = self.by_part[part]
        return tune.PlacementGroupFactory([{"CPU": r.cpus_per_trial, "GPU": r.gpus_per_trial}])


def run_trial(config: dict[str, Any], shared: Mapping[str, Shared]) -> None:
    """One Tune trial: one cell through the shared trainer, resuming from its checkpoint."""

    part, cell = trial_cell(config, shared)
    check_cpu_numerics(part.spec.recipe.cpu_numerics)  # the worker got the driver's variables
    torch.set_num_threads(max(1, int(part.spec.resources.cpus_per_trial)))
    run_dir = cell_dir(Path(part.study_dir), cell)
    if _reported_finished(run_dir):
        return  # finished in an earlier run: never train a cell twice
    run_dir.mkdir(parents=True, exist_ok=True)
    with _cell_lock(run_dir, cell):
        if not _reported_finished(run_dir):  # the holder we waited for may have finished it
            _train_cell(cell, part, run_dir)


def _reported_finished(run_dir: Path) -> bool:
    """Whether the cell has a result (another driver, or an earlier run, trained it); if
    so, report its objective, as a trained trial does: Tune requires the metric of a
    trial that reports anything, and its Optuna trial then gets its value."""
    result = read_result(run_dir)
    if result is not None:
        _report_objective(result)
    return result is not None


def _report_objective(result: RunResult) -> None:
    tune.report({"best_val_mAP": result.val["mAP"]})


@contextlib.contextmanager
def _cell_lock(run_dir: Path, cell: Cell) -> Iterator[None]:
    """Hold the cell's lock; wait while another process (a second driver on the same
    storage, or a trial orphaned by a killed driver) holds it. Closing the file on any
    exit releases it."""
    with (run_dir / "lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("cell %s is held by another process; waiting for it", cell.cell_id)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _train_cell(cell: Cell, shared: Shared, run_dir: Path) -> None:

    resources = shared.spec.resources
    data = build_trial_data(
        cell,
        shared.labels,
        BlockStore(ray.get(shared.block_refs)),
        *shared.teachers.for_cell(cell),
        spectra=None
        if shared.spectra_refs is None
        else BlockStore(ray.get(shared.spectra_refs), column=SPECTRA_COLUMN),
    )
    spec = TrialSpec.for_cell(
        shared.spec,
        cell,
        shared.num_classes,
        max_epochs=shared.max_epochs,
        gpu_fraction=resources.gpu_share,
    )
    reported = False

    def report(metrics: dict[str, float], _: Path) -> None:
        nonlocal reported
        reported = True
        tune.report(metrics)

    result = train(spec, data, run_dir, report=report)
    if not reported:  # resumed from its last epoch's checkpoint: no epoch left to report
        _report_objective(result)
    result = dataclasses.replace(
        result,
        gpu_hours=result.wall_seconds / 3600 * resources.gpus_per_trial,
        node_id=ray.get_runtime_context().get_node_id(),
        gpu_ids=",".join(str(g) for g in ray.get_gpu_ids()),
    )
    write_json_atomic(result.row(), run_dir / RESULT)


def _slots(shared: Mapping[str, Shared], max_concurrent: int | None) -> int:
    """Concurrent trials: `--max-concurrent`, else what the cluster holds right now of the
    lightest part's trials (an autoscaling cluster that starts with no workers needs
    `--max-concurrent`)."""

    if max_concurrent is not None:
        return max_concurrent

    available: dict[str, float] = ray.cluster_resources()

    def fits(r: Resources) -> int:
        if r.gpus_per_trial > 0:
            return max(1, math.floor(available.get("GPU", 0.0) / r.gpus_per_trial))
        return max(1, math.floor(available.get("CPU", 1.0) / r.cpus_per_trial))

    return max(fits(part.spec.resources) for part in shared.values())


def run_tune(
    name: str,
    shared: Mapping[str, Shared],
    pending: Mapping[str, Cell],
    tune_dir: Path,
    *,
    retries: int,
    schedule: list[str] | None = None,
    max_concurrent: int | None = None,
) -> None:
    """Run the `pending` grid cells (by trial key) of every part, or, with `schedule`, TPE
    trials per group, in one Tune run under `tune_dir`."""

    tune_dir.mkdir(parents=True, exist_ok=True)
    # the pid keeps two drivers started in the same second on one storage apart
    run_name = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    n_trials = len(schedule) if schedule is not None else len(pending)
    result_dirs = {key: Path(shared[_part_and_id(key)[0]].study_dir) for key in pending}
    search = searcher(pending, schedule, tune_dir, f"{name}-{run_name}", result_dirs)
    resources = TrialResources({part: s.spec.resources for part, s in shared.items()})
    trainable = tune.with_resources(tune.with_parameters(run_trial, shared=dict(shared)), resources)
    slots = _slots(shared, max_concurrent)
    logger.info("running %d trials, %d at a time", n_trials, min(slots, n_trials))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric="best_val_mAP",
            mode="max",
            search_alg=search,
            num_samples=n_trials,
            max_concurrent_trials=slots,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=str(tune_dir / "tune"),
            failure_config=tune.FailureConfig(max_failures=retries),
            verbose=1,
            callbacks=[_NoTuneTensorBoard()],
        ),
    )
    tuner.fit()


def shared_inputs(
    spec: StudySpec,
    cells: Sequence[Cell],
    data: PreparedData,
    study_dir: Path,
    max_epochs: int | None,
    *,
    blocks: dict[Path, list[Any]] | None = None,
) -> Shared:
    """Read the arrays every trial of a part needs, once, on the driver. `blocks` caches
    the spectrograms' object-store blocks by dataset folder, so parts on one dataset share
    one copy."""

    blocks = {} if blocks is None else blocks
    if data.root not in blocks:
        dataset = ray.data.read_parquet(str(data.root / "clips"))
        blocks[data.root] = list(
            dataset.select_columns(["clip_id", "logmel"]).materialize().to_arrow_refs()
        )
    spectra_refs = None
    if needs_spectra(spec):  # read once per dataset, as the log-mels are
        key = data.root / SPECTRA
        if key not in blocks:
            check_spectra(data.root)
            magnitudes = ray.data.read_parquet(str(key)).select_columns(["clip_id", SPECTRA_COLUMN])
            blocks[key] = list(magnitudes.materialize().to_arrow_refs())
        spectra_refs = blocks[key]
    teachers = load_teacher_arrays(
        data, cells, teacher_lr=spec.teacher_lr, fits=fits_dir(study_dir)
    )
    return Shared(
        spec,
        {c.cell_id: c for c in cells},
        str(study_dir),
        data.num_classes,
        data.labels,
        blocks[data.root],
        teachers,
        max_epochs,
        spectra_refs=spectra_refs,
    )
