"""`python -m east_ray.data`: download a release, prepare Parquet, and the training clips'
STFT magnitudes that mel-band jitter needs (`spectra`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from east_ray.catalog import DATASETS, get_dataset
from east_ray.cli import add_output_options, configure_logging, run_command
from east_ray.config import load_study
from east_ray.data import download
from east_ray.data.datasets import ReadOptions
from east_ray.data.prepare import MIN_FRACTION, SHARD_SIZE, prepare_release
from east_ray.data.spectra_prepare import prepare_spectra
from east_ray.data.valid_split import AUTHORS_CLIPS, CACHE, RULES
from east_ray.errors import BadValueError


def _prepare(args: argparse.Namespace) -> int:
    dataset = get_dataset(args.dataset)
    spec = load_study(args.study or dataset.default_study)
    if spec.dataset != args.dataset:
        raise BadValueError(
            f"--study {args.study}: its dataset is {spec.dataset!r}, not {args.dataset!r}; "
            f"name a study of {args.dataset}"
        )
    prepare_release(
        args.dataset,
        Path(args.root),
        spec.features,
        Path(args.out),
        ReadOptions(args.split_scheme, args.valid_split, args.valid_list),
        shard_size=args.shard_size,
        min_fraction=args.min_fraction,
    )
    return 0


def _spectra(args: argparse.Namespace) -> int:
    prepare_spectra(Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m east_ray.data", description=__doc__)
    add_output_options(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser(
        "prepare",
        help="release folder → sharded Parquet log-mels + meta.json (Ray Data)",
        description="Decode every clip of a release, compute the study's log-mel features and "
        "write sharded Parquet with meta.json. Idempotent and resumable.",
    )
    prep.add_argument("dataset", choices=sorted(DATASETS))
    prep.add_argument("--root", required=True, help="the release folder (as extracted)")
    prep.add_argument("--out", required=True, help="output folder of the prepared dataset")
    prep.add_argument("--study", help="study whose [features] to use (default: per dataset)")
    prep.add_argument(
        "--split-scheme",
        default=None,
        choices=sorted({s for row in DATASETS.values() for s in row.split_schemes}),
        help="the release's split variant, for MagnaTagATune won (the paper's, the default) "
        "or pons",
    )
    prep.add_argument(
        "--valid-split",
        choices=RULES,
        default=None,
        help="how OpenMIC's validation clips are taken from split01_train: 'authors' (the "
        f"default) uses the authors' committed list of {AUTHORS_CLIPS:,} clips, downloaded "
        f"once (md5-checked) to ROOT/{CACHE.as_posix()} or read from --valid-list; 'seeded' "
        "holds out a seeded 15%% (not the authors' clips; SynthMIC's only rule)",
    )
    prep.add_argument(
        "--valid-list",
        type=Path,
        default=None,
        metavar="FILE",
        help="a copy of the authors' openmic_valid.json (or any list of training keys: JSON "
        "lines with sample_key, a JSON array, or one key per line) to use instead of the download",
    )
    prep.add_argument("--shard-size", type=int, default=SHARD_SIZE, help="clips per Parquet shard")
    prep.add_argument(
        "--min-fraction",
        type=float,
        default=MIN_FRACTION,
        help="skip clips shorter than this fraction of the clip length",
    )
    prep.set_defaults(func=_prepare)
    spectra = commands.add_parser(
        "spectra",
        help="a prepared dataset's training clips → their STFT magnitudes (mel-band jitter)",
        description="Decode the training clips of a prepared dataset again (from the release "
        "it was prepared from) and write their float16 STFT magnitudes under DATA/spectra, "
        'which recipe.mel_jitter = "authors" computes each step\'s log-mels from (4x the '
        "clips' log-mel bytes at 128 mels). Idempotent and resumable.",
    )
    spectra.add_argument(
        "--data", dest="out", metavar="DATA", required=True, help="the prepared dataset folder"
    )
    spectra.set_defaults(func=_spectra)
    download.add_cli(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args)
    return run_command(lambda: int(args.func(args)), outputs=[Path(args.out)])


if __name__ == "__main__":
    sys.exit(main())
