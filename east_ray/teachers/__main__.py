"""`python -m east_ray.teachers`: extract a teacher for a prepared dataset, or embed one file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from east_ray.catalog.teachers import TEACHERS, get_teacher
from east_ray.cli import add_output_options, configure_logging, run_command
from east_ray.data.audio import decode, resample
from east_ray.teachers.embeddings import extract_teacher
from east_ray.teachers.registry import load_extractor


def _extract(args: argparse.Namespace) -> int:
    extract_teacher(
        Path(args.data),
        args.teacher,
        checkpoint=args.checkpoint,
        pretrained=not args.random_weights,
    )
    return 0


def _embed(args: argparse.Namespace) -> int:
    info = get_teacher(args.teacher)
    audio, rate = decode(args.audio)
    wave = resample(audio, rate, info.sample_rate)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    extractor = load_extractor(args.teacher, device, args.checkpoint, not args.random_weights)
    embedding = extractor(wave[None])[0].numpy()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, embedding)
    # the command's result: what was written where
    print(f"{out}: {args.teacher} embedding {embedding.shape[0]}x{embedding.shape[1]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m east_ray.teachers", description=__doc__)
    add_output_options(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    extract = commands.add_parser("extract", help="embed every clip of a prepared dataset")
    extract.add_argument("--data", required=True, help="a prepared dataset folder")
    embed = commands.add_parser("embed", help="embed one audio file, write (T, D) .npy")
    embed.add_argument("audio", help="an audio file (any format soundfile reads)")
    embed.add_argument("--out", required=True, help="output .npy file")
    for sub in (extract, embed):
        sub.add_argument("--teacher", required=True, choices=sorted(TEACHERS))
        sub.add_argument("--checkpoint", type=Path, help="local weights instead of a download")
        sub.add_argument(
            "--random-weights",
            action="store_true",
            help="random weights (checks the pipeline without any weights)",
        )
    extract.set_defaults(func=_extract)
    embed.set_defaults(func=_embed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args)
    outputs = [Path(args.out)] if args.command == "embed" else [Path(args.data) / "teachers"]
    return run_command(lambda: int(args.func(args)), outputs=outputs)


if __name__ == "__main__":
    sys.exit(main())
