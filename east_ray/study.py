"""`python -m east_ray.study NAME`: a whole EAsT study on Ray Tune + Optuna, then its tables.

The one module that knows Ray Tune. Steps:
1. load and validate `studies/NAME.toml`, expand the canonical cells, print their count;
2. make sure the data exists: the demo renders SynthMIC and prepares it; every study
   extracts its teachers (idempotent) and fits Teacher_LR per (teacher, fraction, seed);
3. read the spectrograms once with Ray Data into the object store (shared zero-copy by
   every trial on a node) and hand labels and teacher arrays to the trials with
   `tune.with_parameters`;
4. run the cells that have no result yet on Ray Tune: `OptunaSearch` with a
   `GridSampler` over the cell ids (journal storage next to the results), each trial the
   shared trainer under `tune.with_resources`, `max_concurrent_trials` sized to the
   cluster, failed trials retried;
5. write `results.parquet` (one row per run plus the Teacher_LR rows) and render the
   paper's tables (terminal, Markdown, LaTeX) and the limited-data figure (PNG).

Resuming is by cell, not by Tune experiment: each cell trains in
`<storage>/<study>/cells/<cell_id>/`, checkpointing every epoch, and writes `result.json`
when done. Running the command again (after Ctrl-C, a killed driver, a lost node, or an
edited spec) runs exactly the cells without a result, resuming each from its last
checkpoint; when nothing is left it only prints the tables. That is why the runner never
needs `Tuner.restore`, and why added cells simply join the next run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from east_ray.cli import run_command
from east_ray.config import Cell, SpecError, StudySpec, expand_cells, load_study
from east_ray.data.parquet import (
    LabelTable,
    move_aside,
    read_labels,
    read_meta,
    write_atomic,
    write_json_atomic,
    write_table_atomic,
    write_text_atomic,
)
from east_ray.ray_session import init_ray
from east_ray.tables import (
    TABLE_METRICS,
    expected_pairs,
    format_table,
    limited_data_figure,
    paper_table,
)

RESULT = "result.json"

logger = logging.getLogger(__name__)


def describe_cells(spec: StudySpec, cells: Sequence[Cell]) -> str:
    """A printable table of the cells, then their count per regularizer."""
    header = (
        f"{'cell id':<58} {'regularizer':<11} {'stage':<6} {'teacher':<12} "
        f"{'lam':>4} {'frac':>5} {'seed':>5}"
    )
    rows = [header, "-" * len(header)]
    for c in cells:
        rows.append(
            f"{c.cell_id:<58} {c.regularizer:<11} {c.stage or '-':<6} {c.teacher or '-':<12} "
            f"{c.lam:>4g} {c.fraction:>5g} {c.seed:>5}"
        )
    rows.append(count_line(spec, cells))
    return "\n".join(rows)


def count_line(spec: StudySpec, cells: Sequence[Cell]) -> str:
    per_reg = Counter(c.regularizer for c in cells)
    counts = ", ".join(f"{reg}: {per_reg[reg]}" for reg in spec.grid.regularizers if per_reg[reg])
    return f"{len(cells)} cells in study {spec.name!r} ({counts})"


# ---------------------------------------------------------------------------------------
# Data: make sure the prepared dataset, its teachers and the Teacher_LR fits exist.


def ensure_data(spec: StudySpec, data_dir: Path, raw_dir: Path) -> Path:
    """The prepared dataset folder; the demo builds it (SynthMIC → Parquet) if absent."""
    if (data_dir / "meta.json").is_file():
        meta = read_meta(data_dir)
        if meta.get("features") != dataclasses.asdict(spec.features):
            raise SpecError(
                str(data_dir / "meta.json"),
                [
                    f"features: the dataset was prepared with {meta.get('features')}, the study "
                    f"asks for {dataclasses.asdict(spec.features)}; prepare it again into "
                    "another --data folder"
                ],
            )
        return data_dir
    if spec.dataset != "synthmic":
        raise FileNotFoundError(
            f"{data_dir}: no prepared dataset; download and prepare it first, e.g. "
            f"`python -m east_ray.data download {spec.dataset} --out data/raw` then "
            f"`python -m east_ray.data prepare {spec.dataset} --root <release> --out {data_dir}`"
        )
    from east_ray.data.openmic import read_openmic
    from east_ray.data.prepare import prepare
    from east_ray.synthmic import synthesize

    if not (raw_dir / "synthmic.json").is_file():
        synthesize(raw_dir)
    prepare(read_openmic(raw_dir, dataset="synthmic"), spec.features, data_dir)
    return data_dir


def teachers_needed(cells: Sequence[Cell]) -> list[str]:
    return sorted({c.teacher for c in cells if c.teacher})


def ensure_teachers(data_dir: Path, cells: Sequence[Cell], spec: StudySpec) -> list[dict[str, Any]]:
    """Extract every teacher the cells use; fit Teacher_LR per (teacher, fraction, seed)."""
    from east_ray.teachers.embeddings import extract_teacher
    from east_ray.teachers.teacher_lr import fit_teacher_lr

    records = []
    for teacher in teachers_needed(cells):
        extract_teacher(data_dir, teacher)
        for fraction in spec.grid.fractions:
            for seed in spec.grid.seeds:
                records.append(
                    fit_teacher_lr(
                        data_dir,
                        teacher,
                        fraction=fraction,
                        seed=seed,
                        threshold=spec.recipe.f1_threshold,
                    )
                )
    return records


# ---------------------------------------------------------------------------------------
# Ray Tune.


@dataclasses.dataclass(frozen=True)
class Shared:
    """What every trial reads; put in the object store once by `tune.with_parameters`."""

    spec: StudySpec
    cells: dict[str, Cell]
    study_dir: str
    num_classes: int
    labels: LabelTable
    block_refs: list[Any]  # ObjectRefs of Arrow blocks (clip_id, logmel)
    teacher_seqs: dict[str, np.ndarray]
    teacher_logits: dict[tuple[str, float, int], np.ndarray]
    max_epochs: int | None


def cell_dir(study_dir: Path, cell: Cell) -> Path:
    return study_dir / "cells" / cell.cell_id


LAM_RANGE = (0.05, 0.95)


def group_id(cell: Cell) -> str:
    """A cell with its λ left open ("lamnan"): the unit `--search tpe` tunes λ for."""
    if cell.teacher is None:
        return cell.cell_id
    return dataclasses.replace(cell, lam=math.nan).cell_id


def trial_cell(config: dict[str, Any], cells: dict[str, Cell]) -> Cell:
    """The cell a trial trains: a grid cell by id, or a group template with TPE's λ."""
    if "cell_id" in config:
        return cells[config["cell_id"]]
    template = cells[config["group"]]
    lam = float(config.get(f"lam[{config['group']}]", template.lam))
    return dataclasses.replace(template, lam=lam)


def run_trial(config: dict[str, Any], shared: Shared) -> None:
    """One Tune trial: one cell through the shared trainer, resuming from its checkpoint."""
    import torch

    cell = trial_cell(config, shared.cells)
    torch.set_num_threads(max(1, int(shared.spec.resources.cpus_per_trial)))
    run_dir = cell_dir(Path(shared.study_dir), cell)
    if read_result(run_dir) is not None:
        return  # finished in an earlier run: never train a cell twice
    run_dir.mkdir(parents=True, exist_ok=True)
    with _cell_lock(run_dir, cell):
        if read_result(run_dir) is None:  # the holder we waited for may have finished it
            _train_cell(cell, shared, run_dir)


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
    import ray
    from ray import tune

    from east_ray.data.loader import (
        BlockStore,
        build_trial_data,
        needs_teacher_logits,
        needs_teacher_seq,
    )
    from east_ray.trainer import TrialSpec, train

    resources = shared.spec.resources
    teacher = cell.teacher or ""
    data = build_trial_data(
        cell,
        shared.labels,
        BlockStore(ray.get(shared.block_refs)),
        shared.teacher_seqs[teacher] if needs_teacher_seq(cell) else None,
        shared.teacher_logits[(teacher, cell.fraction, cell.seed)]
        if needs_teacher_logits(cell)
        else None,
    )
    gpu_fraction = resources.gpus_per_trial if 0 < resources.gpus_per_trial < 1 else 1.0
    spec = TrialSpec(
        cell,
        shared.spec.recipe,
        shared.spec.features,
        shared.num_classes,
        dict(shared.spec.student_options),
        max_epochs=shared.max_epochs,
        gpu_fraction=gpu_fraction,
    )
    result = train(spec, data, run_dir, report=lambda metrics, _: tune.report(metrics))
    result["gpu_hours"] = result["wall_seconds"] / 3600 * resources.gpus_per_trial
    result["node_id"] = ray.get_runtime_context().get_node_id()
    result["gpu_ids"] = ",".join(str(g) for g in ray.get_gpu_ids())
    write_json_atomic(result, run_dir / RESULT)


def _slots(spec: StudySpec, max_concurrent: int | None) -> int:
    """Concurrent trials: `--max-concurrent`, else what the cluster holds right now (an
    autoscaling cluster that starts with no workers needs `--max-concurrent`)."""
    import ray

    if max_concurrent is not None:
        return max_concurrent

    available: dict[str, float] = ray.cluster_resources()
    r = spec.resources
    if r.gpus_per_trial > 0:
        return max(1, math.floor(available.get("GPU", 0.0) / r.gpus_per_trial))
    return max(1, math.floor(available.get("CPU", 1.0) / r.cpus_per_trial))


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


def _searcher(
    pending: list[Cell], schedule: list[str] | None, study_dir: Path, study_name: str
) -> Any:
    """Optuna over the pending grid cells, or TPE over λ for the scheduled groups."""
    import optuna
    from optuna.storages.journal import JournalFileBackend
    from ray.tune.search.optuna import OptunaSearch

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(study_dir / "optuna.journal")))
    common: dict[str, Any] = {
        "metric": "best_val_mAP",
        "mode": "max",
        "storage": storage,
        "study_name": study_name,
    }
    if schedule is None:
        ids = [c.cell_id for c in pending]
        return OptunaSearch(
            space={"cell_id": optuna.distributions.CategoricalDistribution(ids)},
            sampler=optuna.samplers.GridSampler({"cell_id": ids}, seed=0),
            **common,
        )
    open_lam = {group_id(c) for c in pending if c.teacher is not None}
    space = GroupSpace(tuple(schedule), frozenset(open_lam))
    sampler = optuna.samplers.TPESampler(seed=0, multivariate=True, group=True, n_startup_trials=4)
    return OptunaSearch(space=space, sampler=sampler, **common)


def run_tune(
    spec: StudySpec,
    pending: list[Cell],
    shared: Shared,
    study_dir: Path,
    *,
    retries: int,
    schedule: list[str] | None = None,
    max_concurrent: int | None = None,
) -> None:
    """Run `pending` grid cells (or, with `schedule`, TPE trials per group) on Ray Tune."""
    from ray import tune

    # the pid keeps two drivers started in the same second on one storage apart
    run_name = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    n_trials = len(schedule) if schedule is not None else len(pending)
    search = _searcher(pending, schedule, study_dir, f"{spec.name}-{run_name}")
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, shared=shared),
        {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial},
    )
    slots = _slots(spec, max_concurrent)
    print(f"running {n_trials} trials, {min(slots, n_trials)} at a time", flush=True)
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
            storage_path=str(study_dir / "tune"),
            failure_config=tune.FailureConfig(max_failures=retries),
            verbose=1,
        ),
    )
    tuner.fit()


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """The cell's `result.json`, or None when it has none. One that cannot be read, or is
    not this cell's, is moved aside (`_result.json.corrupt-<time>`) with a warning: the cell
    then runs again and resumes from its checkpoint, which re-evaluates a finished run."""
    path = run_dir / RESULT
    try:
        row = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problem = f"not valid JSON ({exc})"
    else:
        if isinstance(row, dict) and row.get("cell_id") == run_dir.name:
            return row
        problem = f"not a result of cell {run_dir.name}"
    aside = move_aside(path)
    logger.warning("%s: %s; moved to %s, the cell runs again", path, problem, aside.name)
    return None


def finished(study_dir: Path) -> list[dict[str, Any]]:
    """Every readable result.json under the study's cells folder."""
    runs = sorted(p.parent for p in (study_dir / "cells").glob(f"*/{RESULT}"))
    return [row for row in map(read_result, runs) if row is not None]


def _cell_of(row: dict[str, Any]) -> Cell:
    return Cell(*(row[f.name] for f in dataclasses.fields(Cell)))


def tpe_schedule(
    cells: Sequence[Cell], study_dir: Path, budget: int
) -> tuple[list[Cell], list[str]]:
    """Group templates still short of `budget` trials (baselines: 1), interleaved."""
    done = Counter(group_id(_cell_of(r)) for r in finished(study_dir))
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


def shared_inputs(
    spec: StudySpec, cells: Sequence[Cell], data_dir: Path, study_dir: Path, max_epochs: int | None
) -> Shared:
    """Read the arrays every trial needs, once, on the driver."""
    import ray

    from east_ray.data.loader import needs_teacher_logits, needs_teacher_seq
    from east_ray.teachers.stored import load_embeddings
    from east_ray.teachers.teacher_lr import load_teacher_logits

    labels = read_labels(data_dir)
    dataset = ray.data.read_parquet(str(data_dir / "clips")).select_columns(["clip_id", "logmel"])
    block_refs = list(dataset.materialize().to_arrow_refs())
    seqs = {
        t: load_embeddings(data_dir, t, labels.clip_ids)
        for t in sorted({c.teacher for c in cells if c.teacher and needs_teacher_seq(c)})
    }
    logits = {
        (c.teacher, c.fraction, c.seed): load_teacher_logits(
            data_dir, c.teacher, c.fraction, c.seed, labels.clip_ids
        )
        for c in cells
        if c.teacher and needs_teacher_logits(c)
    }
    return Shared(
        spec,
        {c.cell_id: c for c in cells},
        str(study_dir),
        len(read_meta(data_dir)["classes"]),
        labels,
        block_refs,
        seqs,
        logits,
        max_epochs,
    )


# ---------------------------------------------------------------------------------------
# Results and tables.


def collect_results(
    study_dir: Path,
    cells: Sequence[Cell],
    teacher_lr: Sequence[dict[str, Any]],
    spec: StudySpec,
    tpe: bool = False,
) -> pd.DataFrame:
    """One row per finished run (grid: of `cells`; tpe: all) plus one per Teacher_LR fit,
    written atomically."""
    import pyarrow as pa

    wanted = {c.cell_id for c in cells}
    rows = [r for r in finished(study_dir) if tpe or r["cell_id"] in wanted]
    for rec in teacher_lr:
        row = {
            "cell_id": f"teacher_lr-{rec['teacher']}-frac{rec['fraction']:g}-seed{rec['seed']}",
            "dataset": spec.dataset,
            "student": "linear",
            "regularizer": "teacher_lr",
            "teacher": rec["teacher"],
            "stage": None,
            "lam": 0.0,
            "fraction": rec["fraction"],
            "seed": rec["seed"],
            "epochs": rec["epochs"],
            "best_epoch": rec["best_epoch"],
            "train_clips": rec["train_clips"],
        }
        for split in ("valid", "test"):
            prefix = "val" if split == "valid" else "test"
            row.update({f"{prefix}_{k}": v for k, v in rec[split].items() if k != "n_classes"})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        write_table_atomic(
            pa.Table.from_pandas(frame, preserve_index=False), study_dir / "results.parquet"
        )
    return frame


def render_tables(spec: StudySpec, results: pd.DataFrame, study_dir: Path | None) -> str:
    """The tables as terminal text; with `study_dir`, also (re)write tables.md, tables.tex
    and figure.png there (each atomically)."""
    metrics = TABLE_METRICS[spec.dataset]
    teachers = spec.grid.teachers if spec.grid.teachers else ("-",)
    expected = expected_pairs(spec.grid.regularizers, spec.grid.stages, teachers)
    parts, markdown, latex = [], [], []
    for fraction in sorted(spec.grid.fractions, reverse=True):
        table = format_table(paper_table(results, expected, metrics, fraction))
        title = (
            f"{spec.name}: test {' / '.join(metrics)} at training fraction {fraction:g} "
            "(λ chosen on validation; mean ± 95% CI over seeds)"
        )
        parts += [title, table.to_string(), ""]
        markdown += [f"### {title}", "", table.to_markdown(), ""]
        latex += [f"% {title}", table.to_latex(), ""]
    if study_dir is None:
        return "\n".join(parts)
    write_text_atomic("\n".join(markdown), study_dir / "tables.md")
    write_text_atomic("\n".join(latex), study_dir / "tables.tex")
    if len(spec.grid.fractions) > 1:
        figure = study_dir / "figure.png"
        write_atomic(figure, lambda tmp: limited_data_figure(results, metrics[0], Path(tmp)))
        parts.append(f"figure: {figure}")
    parts.append(f"tables: {study_dir / 'tables.md'}, {study_dir / 'tables.tex'}")
    return "\n".join(parts)


def _result_defining(spec: StudySpec) -> dict[str, Any]:
    """The parts of a spec that change what a cell's result means (not the grid/resources)."""
    content = dataclasses.asdict(spec)
    for key in ("grid", "resources", "name"):
        content.pop(key)
    return content


def check_study_dir(spec: StudySpec, study_dir: Path, record: bool = True) -> None:
    """Refuse a results folder written under another recipe, student or features; with
    `record`, a folder without a `spec.json` gets one."""
    path = study_dir / "spec.json"
    current = json.loads(json.dumps(_result_defining(spec)))
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored != current:
            changed = sorted(
                k for k in set(stored) | set(current) if stored.get(k) != current.get(k)
            )
            raise SpecError(
                str(path),
                [
                    f"{key}: the results in {study_dir} were made with {stored.get(key)!r}, the "
                    f"spec now says {current.get(key)!r}"
                    for key in changed
                ]
                + [f"use another --storage folder, or remove {study_dir} to start over"],
            )
        return
    if record:
        write_json_atomic(current, path)


# ---------------------------------------------------------------------------------------
# Command line.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m east_ray.study",
        description="Run an EAsT study: every canonical cell of the grid in a spec "
        "(studies/NAME.toml) is one training trial on Ray Tune; then print the tables.",
    )
    parser.add_argument("study", help="study name (studies/NAME.toml) or path to a .toml spec")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the spec, print the canonical cells and their count, exit",
    )
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="re-render the tables from the stored results.parquet",
    )
    parser.add_argument("--data", type=Path, help="prepared dataset (default: data/<dataset>)")
    parser.add_argument(
        "--storage",
        type=Path,
        default=Path("results"),
        help="results folder, local or shared (NFS) (default: results/)",
    )
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS or local)")
    parser.add_argument("--cpus-per-trial", type=float, help="override resources.cpus_per_trial")
    parser.add_argument("--gpus-per-trial", type=float, help="override resources.gpus_per_trial")
    parser.add_argument("--max-epochs", type=int, help="cap every trial's epochs (smoke runs)")
    parser.add_argument(
        "--max-concurrent",
        type=int,
        help="concurrent trials (default: what the cluster holds at start; "
        "set it on an autoscaling cluster so pending trials scale it up)",
    )
    parser.add_argument(
        "--search",
        choices=["grid", "tpe"],
        default="grid",
        help="grid: every cell; tpe: tune λ per cell with TPE (default grid)",
    )
    parser.add_argument(
        "--budget",
        type=int,
        default=8,
        help="with --search tpe: trials (λ values) per cell (default 8)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="times a failed trial is retried from its checkpoint (default 2)",
    )
    return parser


def _with_overrides(spec: StudySpec, args: argparse.Namespace) -> StudySpec:
    r = spec.resources
    resources = dataclasses.replace(
        r,
        cpus_per_trial=args.cpus_per_trial if args.cpus_per_trial is not None else r.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial if args.gpus_per_trial is not None else r.gpus_per_trial,
    )
    return dataclasses.replace(spec, resources=resources)


def run(args: argparse.Namespace) -> int:
    spec = _with_overrides(load_study(args.study), args)
    cells = expand_cells(spec)
    if args.dry_run:
        print(describe_cells(spec, cells))
        return 0
    print(count_line(spec, cells), flush=True)
    study_dir = Path(args.storage).resolve() / spec.name
    if str(args.storage).startswith("s3://"):
        raise ValueError("--storage: got an s3:// URL; this version needs a local or NFS path")
    if args.tables_only:  # read-only: prints, creates and rewrites nothing
        path = study_dir / "results.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no stored results; run the study first")
        check_study_dir(spec, study_dir, record=False)
        print(render_tables(spec, pd.read_parquet(path), None))
        return 0
    study_dir.mkdir(parents=True, exist_ok=True)
    check_study_dir(spec, study_dir)
    data_dir = (args.data or Path("data") / spec.dataset).resolve()
    started = time.perf_counter()
    init_ray(args.address)
    data_dir = ensure_data(spec, data_dir, Path("data/raw") / spec.dataset)
    teacher_lr = ensure_teachers(data_dir, cells, spec)
    tpe = args.search == "tpe"
    if tpe:
        pending, schedule = tpe_schedule(cells, study_dir, args.budget)
        print(
            f"TPE over λ in {LAM_RANGE}: {len(schedule)} trials to run for {len(pending)} cells",
            flush=True,
        )
    else:
        pending = [c for c in cells if read_result(cell_dir(study_dir, c)) is None]
        schedule = None
        print(f"{len(cells) - len(pending)} cells already done, {len(pending)} to run", flush=True)
    print(f"TensorBoard: tensorboard --logdir {study_dir / 'cells'}", flush=True)
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
    results = collect_results(study_dir, cells, teacher_lr, spec, tpe)
    if tpe:
        missing = tpe_schedule(cells, study_dir, args.budget)[1]
    else:
        missing = [c.cell_id for c in cells if read_result(cell_dir(study_dir, c)) is None]
    print(render_tables(spec, results, study_dir))
    print(
        f"results: {study_dir / 'results.parquet'} ({len(results)} rows); "
        f"{len(missing)} cells missing; {time.perf_counter() - started:.0f} s"
    )
    return 1 if missing else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: run(args), outputs=[args.storage])


if __name__ == "__main__":
    sys.exit(main())
