"""`python -m east_ray.teachers`: extract a teacher for a prepared dataset, embed one file,
or fetch a hub teacher into the Hugging Face cache (and compare its pinned revision)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from east_ray.catalog.hub import HUB_MODELS
from east_ray.catalog.teachers import TEACHERS, check_licence, get_teacher
from east_ray.cli import add_output_options, configure_logging, run_command
from east_ray.data.audio import decode, resample
from east_ray.teachers.embeddings import OPT_IN, extract_teacher
from east_ray.teachers.hub import fetch_hub_teacher
from east_ray.teachers.registry import load_extractor


def _extract(args: argparse.Namespace) -> int:
    extract_teacher(
        Path(args.data),
        args.teacher,
        checkpoint=args.checkpoint,
        pretrained=not args.random_weights,
        accept_non_commercial=args.accept_non_commercial,
    )
    return 0


def _embed(args: argparse.Namespace) -> int:
    check_licence(args.teacher, args.accept_non_commercial, OPT_IN)
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


def _fetch(args: argparse.Namespace) -> int:
    check_licence(args.teacher, args.accept_non_commercial, OPT_IN)
    folder = fetch_hub_teacher(args.teacher)
    print(f"{args.teacher}: {folder}")  # the command's result: where the model is
    return 0


def _revisions(args: argparse.Namespace) -> int:
    """Each hub row's pinned revision beside the hub's newest commit (read-only)."""
    from huggingface_hub import HfApi

    api = HfApi()
    for name, model in HUB_MODELS.items():
        newest = api.model_info(model.repo).sha
        mark = "" if newest == model.revision else "  (differs)"
        print(f"{name}: {model.repo} pinned {model.revision} newest {newest}{mark}")
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
    hub = sorted(HUB_MODELS)
    fetch = commands.add_parser(
        "fetch", help="download a hub teacher at its pinned revision into the HF cache"
    )
    fetch.add_argument("--teacher", required=True, choices=hub)
    commands.add_parser(
        "revisions", help="print each hub teacher's pinned and newest revision (needs the hub)"
    ).set_defaults(func=_revisions)
    for sub in (extract, embed, fetch):
        sub.add_argument(
            "--accept-non-commercial",
            action="store_true",
            help="use a teacher whose weights are licensed for non-commercial use only",
        )
    extract.set_defaults(func=_extract)
    embed.set_defaults(func=_embed)
    fetch.set_defaults(func=_fetch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args)
    outputs = {
        "embed": [Path(getattr(args, "out", "."))],
        "extract": [Path(getattr(args, "data", ".")) / "teachers"],
    }.get(args.command, [])
    return run_command(lambda: int(args.func(args)), outputs=outputs)


if __name__ == "__main__":
    sys.exit(main())
