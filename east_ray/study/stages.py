"""Before the trials: the prepared dataset (downloaded and prepared when missing; the demo
renders and prepares SynthMIC), every teacher the cells use, and Teacher_LR per (teacher,
fraction, seed). Each stage logs one line saying what it does, or that it is done."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from east_ray.catalog import get_dataset, members
from east_ray.config import Cell, StudySpec
from east_ray.data.download import download_release
from east_ray.data.prepare import prepare_release
from east_ray.data.prepared import PreparedData
from east_ray.data.spectra import needs_spectra
from east_ray.data.spectra_prepare import prepare_spectra
from east_ray.study.data_source import DataPlan, DataSource
from east_ray.synthmic.demo import prepare_demo
from east_ray.teachers.embeddings import extract_teachers
from east_ray.train.result import TeacherLRFit
from east_ray.train.teacher_lr import fit_teacher_lr

logger = logging.getLogger(__name__)


def ensure_data(spec: StudySpec, source: DataSource, plan: DataPlan) -> PreparedData:
    """The prepared dataset folder `source.data`, made first if missing as `plan` (made by
    `plan_data` before Ray started) says: the release found under `source.raw` (or
    downloaded there, with `source.download`) is prepared with the study's features, the
    demo's SynthMIC rendered and prepared; then, when the recipe jitters the mel bands, the
    training clips' STFT magnitudes (`spectra/`, unless there); returns it opened. Ray
    must be started: the preparation runs its shards as Ray Data tasks across the cluster."""
    data = _ensure_prepared(spec, source, plan)
    if needs_spectra(spec):
        logger.info("data: recipe.mel_jitter needs %s/spectra (made unless there)", data)
        prepare_spectra(data)
    return PreparedData.open(data)


def _ensure_prepared(spec: StudySpec, source: DataSource, plan: DataPlan) -> Path:
    if plan.prepared:
        logger.info("data: %s is prepared; skipping download and prepare", source.data)
        return source.data
    if get_dataset(spec.dataset).local:
        rendered = source.raw / spec.dataset
        logger.info(
            "data: rendering %s into %s (unless there) and preparing it into %s",
            spec.dataset,
            rendered,
            source.data,
        )
        prepare_demo(rendered, source.data, spec.features)
        return source.data
    release = plan.release
    if release is None:
        logger.info("data: no %s release under %s; downloading it", spec.dataset, source.raw)
        release = download_release(spec.dataset, source.raw, source.mirror)
    else:
        logger.info("data: release %s is there; skipping download", release)
    logger.info(
        "data: preparing %s into %s with the study's [features] (Ray Data tasks)",
        release,
        source.data,
    )
    prepare_release(spec.dataset, release, spec.features, source.data)
    return source.data


def teachers_needed(cells: Sequence[Cell]) -> list[str]:
    """Every teacher the cells learn from, each member of a set on its own."""
    return sorted({t for c in cells if c.teacher for t in members(c.teacher)})


def ensure_teachers(
    data: PreparedData, cells: Sequence[Cell], spec: StudySpec, fits: Path
) -> list[TeacherLRFit]:
    """Extract every teacher the cells use (into the prepared dataset, once); fit
    Teacher_LR per (teacher, fraction, seed) into `fits`, the study's own folder."""

    records = []
    teachers = teachers_needed(cells)
    # a teacher's layers from one pass per shard
    extract_teachers(data.root, teachers, accept_non_commercial=spec.non_commercial_weights)
    for teacher in teachers:
        for fraction in spec.grid.fractions:
            for seed in spec.grid.seeds:
                records.append(
                    fit_teacher_lr(
                        data,
                        teacher,
                        spec.teacher_lr,
                        fraction=fraction,
                        seed=seed,
                        threshold=spec.recipe.f1_threshold,
                        fits=fits,
                    )
                )
    return records
