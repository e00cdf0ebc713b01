"""`python -m east_ray.train`: train one cell of a study outside Ray Tune (for debugging)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from east_ray.cli import add_output_options, configure_logging, run_command
from east_ray.config import expand_cells, load_study
from east_ray.data.prepared import PreparedData
from east_ray.errors import UnknownNameError
from east_ray.train.cpu_numerics import use_cpu_numerics
from east_ray.train.data import load_trial_data
from east_ray.train.trainer import train
from east_ray.train.trial import TrialSpec


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m east_ray.train", description=__doc__)
    parser.add_argument("--study", required=True, help="study name or .toml path")
    parser.add_argument("--cell", required=True, help="a cell id (see `east_ray.study --dry-run`)")
    parser.add_argument("--data", required=True, help="the prepared dataset folder")
    parser.add_argument("--out", default="runs", help="run folder parent (default: runs/)")
    parser.add_argument("--max-epochs", type=int, help="stop after this many epochs")
    add_output_options(parser)
    args = parser.parse_args(argv)
    configure_logging(args)
    return run_command(lambda: _train(args), outputs=[Path(args.out)])


def _train(args: argparse.Namespace) -> int:
    spec = load_study(args.study)
    use_cpu_numerics(spec.recipe.cpu_numerics)
    cells = {c.cell_id: c for c in expand_cells(spec)}
    if args.cell not in cells:
        near = [c for c in cells if c.startswith(args.cell.split("-")[0])][:5]
        raise UnknownNameError(
            f"--cell: {args.cell!r} is not a cell of study {spec.name!r}; "
            f"e.g. {', '.join(near or list(cells)[:5])}"
        )
    cell = cells[args.cell]
    prepared = PreparedData.open(Path(args.data))
    trial = TrialSpec.for_cell(spec, cell, prepared.num_classes, max_epochs=args.max_epochs)
    data = load_trial_data(
        prepared,
        cell,
        spectra=trial.recipe.mel_jitter != "off",
        teacher_lr=spec.teacher_lr,
    )
    result = train(
        trial,
        data,
        Path(args.out) / spec.name / cell.cell_id,
        report=lambda m, _: print(json.dumps(m), flush=True),
    )
    print(json.dumps(result.row(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
