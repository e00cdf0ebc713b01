"""`python -m east_ray.study NAME`: load a study spec, expand its grid, run it.

This is the one module that will know Ray Tune. Today it validates the spec and expands
the canonical cells (`--dry-run`); scheduling the cells on Ray Tune arrives with the
study-runner issue, and until then a run without `--dry-run` says so and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence

from east_ray.config import Cell, SpecError, StudySpec, expand_cells, load_study


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
    per_reg = Counter(c.regularizer for c in cells)
    counts = ", ".join(f"{reg}: {per_reg[reg]}" for reg in spec.grid.regularizers if per_reg[reg])
    rows.append(f"{len(cells)} cells in study {spec.name!r} ({counts})")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m east_ray.study",
        description="Run an EAsT study: every canonical cell of the grid in a spec "
        "(studies/NAME.toml) is one training trial.",
    )
    parser.add_argument("study", help="study name (studies/NAME.toml) or path to a .toml spec")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the spec, print the canonical cells and their count, and exit",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = load_study(args.study)
    except (SpecError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cells = expand_cells(spec)
    print(describe_cells(spec, cells))
    if args.dry_run:
        return 0
    print(
        "error: running the cells on Ray Tune is not built yet (study-runner issue); "
        "use --dry-run to inspect the grid",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
