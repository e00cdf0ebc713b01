"""Before the trials: the prepared dataset (the demo renders and prepares SynthMIC), every
teacher the cells use, and Teacher_LR per (teacher, fraction, seed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from east_ray.config import Cell, SpecError, StudySpec
from east_ray.data.parquet import read_meta
from east_ray.synthmic.demo import prepare_demo
from east_ray.teachers.embeddings import extract_teacher
from east_ray.train.teacher_lr import fit_teacher_lr


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
    prepare_demo(raw_dir, data_dir, spec.features)
    return data_dir


def teachers_needed(cells: Sequence[Cell]) -> list[str]:
    return sorted({c.teacher for c in cells if c.teacher})


def ensure_teachers(data_dir: Path, cells: Sequence[Cell], spec: StudySpec) -> list[dict[str, Any]]:
    """Extract every teacher the cells use; fit Teacher_LR per (teacher, fraction, seed)."""

    records = []
    for teacher in teachers_needed(cells):
        extract_teacher(data_dir, teacher)
        for fraction in spec.grid.fractions:
            for seed in spec.grid.seeds:
                records.append(
                    fit_teacher_lr(
                        data_dir,
                        teacher,
                        spec.teacher_lr,
                        fraction=fraction,
                        seed=seed,
                        threshold=spec.recipe.f1_threshold,
                    )
                )
    return records
