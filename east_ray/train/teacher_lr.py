"""Teacher_LR: a linear classifier on the time-mean teacher embedding (DESIGN §1).

One `Linear(D, C)` on `mean_t embedding`, masked BCE, plain SGD without weight decay,
gradients clipped to a norm, ReduceLROnPlateau and early stopping on the validation loss,
at most `max_steps` optimiser steps; the epoch with the best validation mAP is kept. The
recipe is the study spec's `[teacher_lr]` table (`config.TeacherLRRecipe`, defaults the
authors'). It is a row of the paper's table and the KD teacher, so it is fitted per
(dataset, teacher, training subset, seed) on the same subset the students see, and its
logits for every clip are stored, under `fits` (the study's `teacher_lr_fits/`; by
default `<data>/teacher_lr/`, for use outside a study), keyed by the recipe as applied
(`<r>`, 8 hex digits of its hash), so fits made with other recipes are kept beside it:

    <fits>/<teacher>/frac<f>-seed<s>-<r>.parquet              clip_id, logits float32[C]
    <fits>/<teacher>/frac<f>-seed<s>-<r>.test_scores.parquet  (east_ray.data.scores)
    <fits>/<teacher>/frac<f>-seed<s>-<r>.json                 the record (`TeacherLRFit`)

The record is written last and marks a complete fit; it names its files relative to its
own folder and records the recipe and the prepared dataset's fingerprint. A fit whose test
scores are missing gets them from its logits. Fitting again with the same arguments
returns the stored fit. A stored fit whose record names another recipe, another prepared
dataset or another framing of the teacher is fitted again, with a log line naming what
changed; stored files that cannot be read are set aside with a warning and fitted again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from east_ray.analysis.metrics import evaluate
from east_ray.analysis.stats import ScoredClips
from east_ray.catalog.teachers import get_teacher
from east_ray.config import TeacherLRRecipe
from east_ray.data.parquet import (
    LabelTable,
    column_numpy,
    move_aside,
    vector_array,
    write_json_atomic,
    write_table_atomic,
)
from east_ray.data.prepared import PreparedData
from east_ray.data.scores import SCORES, write_scores
from east_ray.losses import masked_bce
from east_ray.teachers.stored import load_embeddings
from east_ray.train.result import TeacherLRFit
from east_ray.train.selection import Selection

logger = logging.getLogger(__name__)

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


FITS = "teacher_lr"  # the default folder of the fits, in the prepared dataset


def _paths(
    fits: Path, teacher: str, fraction: float, seed: int, recipe: TeacherLRRecipe
) -> tuple[Path, Path, Path]:
    """Logits, record and test scores of one fit. Names are built whole: `with_suffix`
    would read "frac0.5-seed0" as a stem "frac0" with suffix ".5-seed0", and every
    fraction below 1 would share one file."""
    applied = json.dumps(applied_recipe(recipe, teacher), sort_keys=True)
    key = hashlib.sha256(applied.encode()).hexdigest()[:8]
    folder, stem = Path(fits) / teacher, f"frac{fraction:g}-seed{seed}-{key}"
    return (
        folder / f"{stem}.parquet",
        folder / f"{stem}.json",
        folder / f"{stem}.{SCORES}",
    )


def _fit_name(record_path: Path) -> Path:
    """A fit's name in log lines: its record without ".json" (`frac0.5-seed0`)."""
    return record_path.parent / record_path.name.removesuffix(".json")


def applied_recipe(recipe: TeacherLRRecipe, teacher: str) -> dict[str, Any]:
    """What a fit for `teacher` uses: the recipe with its lr resolved for that teacher (so
    a per-teacher lr for another teacher does not count as a change)."""
    applied = dataclasses.asdict(recipe)
    del applied["lr_by_teacher"]
    applied["lr"] = recipe.lr_for(teacher)
    applied["val_loss"] = VAL_LOSS
    return applied


# How the validation loss is averaged (recorded with the recipe, so a fit stored under
# the earlier rule, one masked mean over the whole split, is fitted again).
VAL_LOSS = "clip-weighted mean of per-batch masked means"


def _loss_and_scores(
    model: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor, batch_size: int
) -> tuple[float, np.ndarray]:
    """The loss of `x` `(N, D)` as the authors' validation loop averages it (each batch of
    `batch_size` clips, in order: its masked mean, weighted by its clips; with partial
    label masks not the masked mean over the split) and the sigmoid scores `(N, C)`."""
    with torch.no_grad():
        logits = model(x)
        losses = [
            masked_bce(lg, yy, mm).item() * len(lg)
            for lg, yy, mm in zip(
                logits.split(batch_size), y.split(batch_size), m.split(batch_size), strict=True
            )
        ]
        return sum(losses) / max(len(x), 1), torch.sigmoid(logits).numpy()


def fit_teacher_lr(
    data: PreparedData | Path,
    teacher: str,
    recipe: TeacherLRRecipe | None = None,
    *,
    fraction: float = 1.0,
    seed: int = 1223,
    threshold: float = 0.4,
    fits: Path | None = None,
) -> TeacherLRFit:
    """Fit (or read back) Teacher_LR with `recipe` (default: the authors') on the prepared
    dataset `data`, stored under `fits` (default `<data>/teacher_lr`; the dataset is only
    read then); returns the fit with the full path of its test scores."""
    recipe = recipe or TeacherLRRecipe()
    data = PreparedData.of(data)
    fits = data.root / FITS if fits is None else Path(fits)
    logits_path, record_path, scores_path = _paths(fits, teacher, fraction, seed, recipe)
    stored = _stored(logits_path, record_path, applied_recipe(recipe, teacher))
    if stored is not None and stored.data != data.fingerprint:
        logger.warning(
            "Teacher_LR %s was fitted on another prepared dataset (fingerprint %s, %s has %s); "
            "fitting it again",
            _fit_name(record_path),
            stored.data,
            data.root,
            data.fingerprint,
        )
        stored = None
    if stored is not None and _same_framing(stored, teacher, record_path):
        if not _readable(scores_path):
            logger.info("Teacher_LR %s: writing its test scores", _fit_name(record_path))
            logits = column_numpy(pq.read_table(logits_path)["logits"])
            _write_test_scores(data.labels, logits, threshold, scores_path)
        logger.info("Teacher_LR %s: already fitted; skipping", _fit_name(record_path))
        return dataclasses.replace(stored, test_scores=str(scores_path))
    logger.info("Teacher_LR %s: fitting", _fit_name(record_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a linear model: more threads only spin
    try:
        return _fit(data, fits, teacher, recipe, fraction=fraction, seed=seed, threshold=threshold)
    finally:
        torch.set_num_threads(threads)


def _readable(path: Path) -> bool:
    """Whether `path` is a whole Parquet file; one that is not is set aside with a warning."""
    if not path.is_file():
        return False
    try:
        pq.read_metadata(path)
    except ValueError as exc:  # Arrow's errors for a truncated or foreign file
        logger.warning("%s cannot be read (%s); moved to %s", path, exc, move_aside(path).name)
        return False
    return True


def _stored(logits_path: Path, record_path: Path, applied: dict[str, Any]) -> TeacherLRFit | None:
    """The stored fit if both files read and it was made with `applied`; else None, with
    damaged files set aside."""
    if not (logits_path.is_file() and record_path.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text())
        if not isinstance(record, dict):
            raise ValueError("the record is not a JSON object")
        made_with = record.get("recipe")
        stored = TeacherLRFit.from_record(record)
        pq.read_metadata(logits_path)
    except (ValueError, KeyError, TypeError) as exc:  # also JSON, UTF-8 and Arrow errors
        moved = [move_aside(p).name for p in (logits_path, record_path)]
        logger.warning(
            "Teacher_LR %s cannot be read (%s); moved to %s, fitting it again",
            _fit_name(record_path),
            exc,
            ", ".join(moved),
        )
        return None
    if made_with == applied:
        return stored
    old = made_with if isinstance(made_with, dict) else {}
    changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in applied.items() if old.get(k) != v]
    logger.warning(
        "Teacher_LR %s was fitted with another recipe (%s); fitting it again",
        _fit_name(record_path),
        ", ".join(changed),
    )
    return None


def _same_framing(stored: TeacherLRFit, teacher: str, record_path: Path) -> bool:
    """Whether a stored fit was made on embeddings framed as the teacher frames them now."""
    framing = get_teacher(teacher).framing
    fitted_on = stored.teacher_framing
    if fitted_on == framing:
        return True
    logger.warning(
        "Teacher_LR %s was fitted on %r-framed embeddings, %s now frames %r; fitting it again",
        _fit_name(record_path),
        fitted_on,
        teacher,
        framing,
    )
    return False


def _split_tensors(
    table: LabelTable, x_all: np.ndarray, train_rows: np.ndarray
) -> dict[str, Tensors]:
    """(mean embedding, labels, mask) of the training subset, validation and test."""
    return {
        split: (
            torch.from_numpy(x_all[rows]),
            torch.from_numpy(table.labels[rows]),
            torch.from_numpy(table.mask[rows]),
        )
        for split, rows in (
            ("train", train_rows),
            ("valid", table.rows("valid")),
            ("test", table.rows("test")),
        )
    }


@dataclasses.dataclass
class _Fit:
    """One fit's model, optimiser and schedule, and where it stands."""

    model: torch.nn.Linear
    opt: torch.optim.SGD
    recipe: TeacherLRRecipe
    gen: torch.Generator
    selection: Selection = dataclasses.field(default_factory=Selection)
    epoch: int = 0
    steps: int = 0

    def train_epoch(self, train: Tensors) -> None:
        """One shuffled pass over `train`, cut short at `recipe.max_steps`."""
        x, y, m = train
        for idx in torch.randperm(len(x), generator=self.gen).split(self.recipe.batch_size):
            if self.steps >= self.recipe.max_steps:
                break
            self.opt.zero_grad()
            masked_bce(self.model(x[idx]), y[idx], m[idx]).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
            self.opt.step()
            self.steps += 1
        self.epoch += 1


def _train(run: _Fit, tensors: dict[str, Tensors], threshold: float) -> None:
    """Epochs until early stopping or the step cap; leaves the best-mAP weights loaded."""
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        run.opt, factor=run.recipe.plateau_factor, patience=run.recipe.plateau_patience
    )
    _, y_val, m_val = tensors["valid"]
    best_state = run.model.state_dict()
    while run.steps < run.recipe.max_steps:
        run.train_epoch(tensors["train"])
        val_loss, val_scores = _loss_and_scores(run.model, *tensors["valid"], run.recipe.batch_size)
        val_map = evaluate(val_scores, y_val.numpy(), m_val.numpy(), threshold)["mAP"]
        best, patience_used = run.selection.update(
            run.epoch, val_map, val_loss, run.recipe.early_stop_patience
        )
        if best:
            best_state = {k: v.clone() for k, v in run.model.state_dict().items()}
        plateau.step(val_loss)
        if patience_used:
            break
    run.model.load_state_dict(best_state)


def _fit(
    data: PreparedData,
    fits: Path,
    teacher: str,
    recipe: TeacherLRRecipe,
    *,
    fraction: float,
    seed: int,
    threshold: float,
) -> TeacherLRFit:
    logits_path, record_path, scores_path = _paths(fits, teacher, fraction, seed, recipe)
    table = data.labels
    x_all = load_embeddings(data.root, teacher, table.clip_ids).mean(axis=1)
    train_rows = table.training_rows(fraction, seed)
    tensors = _split_tensors(table, x_all, train_rows)
    model = torch.nn.Linear(x_all.shape[1], table.labels.shape[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.reset_parameters()
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr_for(teacher))
    run = _Fit(model, opt, recipe, torch.Generator().manual_seed(seed))
    _train(run, tensors, threshold)
    metrics = {}
    for split in ("valid", "test"):
        _, scores = _loss_and_scores(model, *tensors[split], recipe.batch_size)
        metrics[split] = evaluate(
            scores, tensors[split][1].numpy(), tensors[split][2].numpy(), threshold
        )
    fit = TeacherLRFit(
        teacher=teacher,
        teacher_framing=get_teacher(teacher).framing,
        fraction=fraction,
        seed=seed,
        recipe=applied_recipe(recipe, teacher),
        epochs=run.epoch,
        steps=run.steps,
        best_epoch=run.selection.best_epoch,
        train_clips=len(train_rows),
        data=data.fingerprint,
        # beside the record, so that a folder of fits can be moved or shared
        logits=logits_path.name,
        test_scores=scores_path.name,
        valid=metrics["valid"],
        test=metrics["test"],
    )
    with torch.no_grad():
        logits = model(torch.from_numpy(x_all)).numpy().astype(np.float32)
    write_table_atomic(
        pa.table(
            {"clip_id": pa.array(table.clip_ids, pa.string()), "logits": vector_array(logits)}
        ),
        logits_path,
    )
    _write_test_scores(table, logits, threshold, scores_path)
    write_json_atomic(fit.record(), record_path)  # last: the record marks a complete fit
    return dataclasses.replace(fit, test_scores=str(scores_path))


def _write_test_scores(table: LabelTable, logits: np.ndarray, threshold: float, path: Path) -> None:
    """The test clips' sigmoid scores (`east_ray.data.scores`), from the stored logits."""
    rows = table.rows("test")
    scores = torch.sigmoid(torch.from_numpy(logits[rows])).numpy()
    clips = ScoredClips(
        np.asarray(table.clip_ids, dtype=str)[rows],
        table.classes,
        scores,
        table.labels[rows],
        table.mask[rows],
        threshold,
    )
    write_scores(clips, path)


def load_teacher_logits(
    data_dir: Path,
    teacher: str,
    fraction: float,
    seed: int,
    clip_ids: list[str],
    *,
    recipe: TeacherLRRecipe | None = None,
    fits: Path | None = None,
) -> np.ndarray:
    """Stored Teacher_LR logits `(N, C)` for `clip_ids`, in that order, of the fit
    `fit_teacher_lr` made with `recipe` into `fits` (defaults as its)."""
    fits = Path(data_dir) / FITS if fits is None else Path(fits)
    logits_path, _, _ = _paths(fits, teacher, fraction, seed, recipe or TeacherLRRecipe())
    if not logits_path.is_file():
        raise FileNotFoundError(
            f"{logits_path}: Teacher_LR for teacher {teacher!r}, fraction "
            f"{fraction:g}, seed {seed} is not fitted yet (fit_teacher_lr)"
        )
    table = pq.read_table(logits_path)
    row_of = {c: i for i, c in enumerate(table["clip_id"].to_pylist())}
    logits = column_numpy(table["logits"])
    return logits[[row_of[c] for c in clip_ids]].astype(np.float32)
