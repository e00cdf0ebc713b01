"""`python -m east_ray.synthmic --out DIR`: render the SynthMIC demo set."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from east_ray.cli import add_output_options, configure_logging, run_command
from east_ray.synthmic import synthesize
from east_ray.synthmic._pipeline import DEFAULT_CLIPS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m east_ray.synthmic",
        description="Render the SynthMIC demo set (OpenMIC-2018 layout): synthesised 10 s "
        "clips of music21 corpus scores with exact instrument labels.",
    )
    parser.add_argument("--out", default="data/raw/synthmic", metavar="DIR", help="output folder")
    parser.add_argument(
        "--clips",
        type=int,
        default=DEFAULT_CLIPS,
        help=f"number of 10 s clips (default {DEFAULT_CLIPS})",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--soundfont", default=None, help="General-MIDI .sf2 (default: pretty_midi's TimGM6mb)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="render processes (default: CPU count)"
    )
    add_output_options(parser)
    return parser


def _render(args: argparse.Namespace) -> int:
    summary = synthesize(
        Path(args.out),
        n_clips=args.clips,
        seed=args.seed,
        soundfont=None if args.soundfont is None else Path(args.soundfont),
        workers=args.workers,
    )
    state = "already complete" if summary.reused else f"written in {summary.seconds:.1f} s"
    print(
        f"SynthMIC {summary.out}: {summary.n_clips} clips from {summary.n_scores} scores "
        f"({summary.n_train} train / {summary.n_test} test), {state}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args)
    return run_command(lambda: _render(args), outputs=[Path(args.out)])


if __name__ == "__main__":
    sys.exit(main())
