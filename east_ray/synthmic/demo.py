"""The demo's dataset: SynthMIC rendered (once) and prepared as the study's Parquet."""

from __future__ import annotations

from pathlib import Path

from east_ray.config import Features
from east_ray.data.prepare import prepare_release
from east_ray.synthmic._manifest import MANIFEST
from east_ray.synthmic._pipeline import synthesize


def prepare_demo(raw_dir: Path, data_dir: Path, features: Features) -> None:
    """Render SynthMIC into `raw_dir` unless it is there, then prepare it into `data_dir`
    with `features` (idempotent and resumable, like any `prepare`)."""
    if not (raw_dir / MANIFEST).is_file():
        synthesize(raw_dir)
    prepare_release("synthmic", raw_dir, features, data_dir)
