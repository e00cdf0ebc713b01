"""The study command: parse, validate, list the cells (`--dry-run`, which imports neither
torch nor Ray), show stored tables (`--tables-only`), or run the missing cells. A study of
several parts (`includes = [...]`) keeps each part's results in `<storage>/<part>`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
from collections import Counter
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING

from east_ray.cli import add_output_options, configure_logging, run_command
from east_ray.config import Cell, Study, StudySpec, expand_cells, load_parts
from east_ray.errors import BadValueError

if TYPE_CHECKING:
    from east_ray.study.data_source import DataOptions

logger = logging.getLogger(__name__)


def describe_cells(
    spec: StudySpec, cells: Sequence[Cell], done: AbstractSet[str] = frozenset()
) -> str:
    """A printable table of the cells (those in `done`, by id, marked as finished), then
    their count per regularizer and how many are done."""
    header = (
        f"{'cell id':<58} {'regularizer':<11} {'stage':<6} {'teacher':<12} "
        f"{'lam':>4} {'frac':>5} {'seed':>5}  done"
    )
    rows = [header, "-" * len(header)]
    for c in cells:
        rows.append(
            f"{c.cell_id:<58} {c.regularizer:<11} {c.stage or '-':<6} {c.teacher or '-':<12} "
            f"{c.lam:>4g} {c.fraction:>5g} {c.seed:>5}  {'yes' if c.cell_id in done else '-'}"
        )
    finished = sum(c.cell_id in done for c in cells)
    rows.append(f"{count_line(spec, cells)}; {finished} done, {len(cells) - finished} to run")
    return "\n".join(rows)


def finished_cells(storage: Path, spec: StudySpec, cells: Sequence[Cell]) -> set[str]:
    """The ids of `cells` with a result in `storage` (read-only: a result file that turns
    out damaged when the study runs is set aside then, and its cell runs again)."""
    from east_ray.analysis.results import run_folder
    from east_ray.study.store import RESULT

    return {
        c.cell_id
        for c in cells
        if (run_folder(storage / spec.name, c.cell_id, c.regularizer) / RESULT).is_file()
    }


def count_line(spec: StudySpec, cells: Sequence[Cell]) -> str:
    per_reg = Counter(c.regularizer for c in cells)
    counts = ", ".join(f"{reg}: {per_reg[reg]}" for reg in spec.grid.regularizers if per_reg[reg])
    return f"{len(cells)} cells in study {spec.name!r} ({counts})"


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
        "--estimate",
        action="store_true",
        help="with --dry-run: also estimate the grid's GPU-hours at the spec's packing (an "
        "upper bound: every cell to its step budget), from a GPU benchmark or a few "
        "calibration steps here",
    )
    parser.add_argument(
        "--bench-results",
        type=Path,
        default=Path("bench/results"),
        metavar="DIR",
        help="with --estimate: the folder of GPU benchmark results (*-gpu.json) to read "
        "throughput from (default: bench/results)",
    )
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="re-render the tables from the stored results.parquet",
    )
    parser.add_argument(
        "--absent-classes",
        choices=["skip", "zero"],
        default="skip",
        help="the tables' rule for a class without a labelled positive or negative in the "
        "test split: skip (ours: left out of the mean) or zero (the authors': scored 0 in "
        "mAP and ROC-AUC); tables only, training and model selection never change "
        "(default skip)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="prepared dataset of a one-dataset study (default: DATA_ROOT/<dataset>)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=Path("data"),
        help="folder of the prepared datasets, one per dataset name (default: data/)",
    )
    parser.add_argument(
        "--raw",
        type=Path,
        default=Path("data/raw"),
        metavar="DIR",
        help="folder of extracted releases (<DIR>/openmic-2018, <DIR>/magnatagatune), where a "
        "missing --data is prepared from (default: data/raw)",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="when neither --data nor the release under --raw is there, download the release "
        "into --raw (resumable, checksummed) before preparing it",
    )
    parser.add_argument(
        "--mirror",
        metavar="URL",
        help="with --download: base URL replacing the release's host",
    )
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
    add_output_options(parser)
    return parser


def _with_overrides(spec: StudySpec, args: argparse.Namespace) -> StudySpec:
    r = spec.resources
    resources = dataclasses.replace(
        r,
        cpus_per_trial=args.cpus_per_trial if args.cpus_per_trial is not None else r.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial if args.gpus_per_trial is not None else r.gpus_per_trial,
    )
    return dataclasses.replace(spec, resources=resources)


def _show_tables(study: Study, storage: Path, absent_classes: str) -> int:
    """`--tables-only`: print each part's stored tables; creates and rewrites nothing."""
    import pandas as pd  # here, not at the top: --dry-run stays light

    from east_ray.study.store import check_study_dir, render_tables

    paths = {spec.name: storage / spec.name / "results.parquet" for spec in study.parts}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no stored results; run the study first")
    for spec in study.parts:
        study_dir = paths[spec.name].parent
        check_study_dir(spec, study_dir, record=False)
        results = pd.read_parquet(paths[spec.name])
        print(render_tables(spec, results, study_dir, write=False, absent_classes=absent_classes))
    return 0


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    study = load_parts(args.study)
    study = dataclasses.replace(
        study, parts=tuple(_with_overrides(spec, args) for spec in study.parts)
    )
    cells = {spec.name: expand_cells(spec) for spec in study.parts}
    if args.data is not None and len({spec.dataset for spec in study.parts}) > 1:
        raise BadValueError(
            f"--data: study {study.name!r} spans the datasets "
            f"{', '.join(sorted({spec.dataset for spec in study.parts}))}, so one folder "
            "cannot hold them; give --data-root, the folder that holds one per dataset name"
        )
    if args.estimate and not args.dry_run:
        raise BadValueError("--estimate: only with --dry-run; add --dry-run")
    if args.dry_run:
        storage = Path(args.storage).resolve()
        done = {s.name: finished_cells(storage, s, cells[s.name]) for s in study.parts}
        for spec in study.parts:
            print(describe_cells(spec, cells[spec.name], done[spec.name]))
        if len(study.parts) > 1:
            finished = sum(map(len, done.values()))
            print(
                f"{sum(map(len, cells.values()))} cells in study {study.name!r}; "
                f"{finished} done in {storage}"
            )
        if args.estimate:
            from east_ray.study.estimate import estimate  # torch only when it calibrates

            todo = {
                s.name: [c for c in cells[s.name] if c.cell_id not in done[s.name]]
                for s in study.parts
            }
            data = _data_options(args)
            folders = [(s, todo[s.name], data.source(s).data) for s in study.parts]
            print(estimate(folders, args.max_epochs, args.bench_results))
        return 0
    if str(args.storage).startswith("s3://"):
        raise BadValueError(
            f"--storage: got {args.storage}; this version needs a local or NFS path"
        )
    storage = Path(args.storage).resolve()
    if args.tables_only:
        return _show_tables(study, storage, args.absent_classes)
    for spec in study.parts:
        logger.info(count_line(spec, cells[spec.name]))
    from east_ray.study.data_source import plan_data
    from east_ray.study.options import RunOptions

    # Before Ray starts and before anything is written: can this run get its data?
    rerun = shlex.join(["python", "-m", "east_ray.study", *argv, "--download"])
    data = _data_options(args)
    sources = {spec.name: data.source(spec) for spec in study.parts}
    options = RunOptions(
        storage=storage,
        sources=sources,
        plans={s.name: plan_data(s, sources[s.name], rerun) for s in study.parts},
        address=args.address,
        search=args.search,
        budget=args.budget,
        retries=args.retries,
        max_epochs=args.max_epochs,
        max_concurrent=args.max_concurrent,
        absent_classes=args.absent_classes,
    )
    from east_ray.study.driver import run_study  # torch and Ray load only when trials run

    return run_study(study, cells, options)


def _data_options(args: argparse.Namespace) -> DataOptions:
    # imported here, as the driver: --dry-run and --tables-only stay light
    from east_ray.study.data_source import DataOptions

    return DataOptions(args.data, args.data_root, args.raw, args.download, args.mirror)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    configure_logging(args)
    return run_command(lambda: run(args, argv), outputs=[args.storage])


if __name__ == "__main__":
    sys.exit(main())
