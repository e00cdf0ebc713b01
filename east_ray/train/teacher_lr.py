"""Teacher_LR: a linear classifier on the time-mean teacher embedding (DESIGN §1).

One `Linear(D, C)` on `mean_t embedding`, masked BCE, plain SGD (lr 0.1, no weight decay,
batch 16), ReduceLROnPlateau(factor 0.1, patience 1) and early stopping (patience 3) on
the validation loss; the epoch with the best validation mAP is kept. It is a row of the
paper's table and the KD teacher, so it is fitted per (dataset, teacher, training subset,
seed) on the same subset the students see, and its logits for every clip are stored:

    <data>/teacher_lr/<teacher>/frac<f>-seed<s>.parquet   clip_id, logits float32[C]
    <data>/teacher_lr/<teacher>/frac<f>-seed<s>.json      validation and test metrics

Fitting again with the same arguments returns the stored result; stored files that
cannot be read are set aside with a warning and fitted again, and so is a result fitted
on embeddings of another framing than the teacher's now (`teacher_framing`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from east_ray.data.parquet import (
    column_numpy,
    move_aside,
    read_labels,
    vector_array,
    write_json_atomic,
    write_table_atomic,
)
from east_ray.losses import masked_bce
from east_ray.metrics import evaluate
from east_ray.teachers.registry import get_teacher
from east_ray.teachers.stored import UNRECORDED_FRAMING, load_embeddings
from east_ray.train.selection import Selection

LR, BATCH, PLATEAU_FACTOR, PLATEAU_PATIENCE, EARLY_STOP = 0.1, 16, 0.1, 1, 3


logger = logging.getLogger(__name__)


def _paths(data_dir: Path, teacher: str, fraction: float, seed: int) -> tuple[Path, Path]:
    stem = Path(data_dir) / "teacher_lr" / teacher / f"frac{fraction:g}-seed{seed}"
    return stem.with_suffix(".parquet"), stem.with_suffix(".json")


def _loss_and_scores(
    model: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor
) -> tuple[float, np.ndarray]:
    with torch.no_grad():
        logits = model(x)
        return masked_bce(logits, y, m).item(), torch.sigmoid(logits).numpy()


def fit_teacher_lr(
    data_dir: Path,
    teacher: str,
    *,
    fraction: float = 1.0,
    seed: int = 1223,
    max_epochs: int = 200,
    threshold: float = 0.4,
) -> dict[str, Any]:
    """Fit (or read back) Teacher_LR; returns its record (metrics, epochs, logits path)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a linear model: more threads only spin
    try:
        return _fit(
            data_dir,
            teacher,
            fraction=fraction,
            seed=seed,
            max_epochs=max_epochs,
            threshold=threshold,
        )
    finally:
        torch.set_num_threads(threads)


def _fit(
    data_dir: Path, teacher: str, *, fraction: float, seed: int, max_epochs: int, threshold: float
) -> dict[str, Any]:
    logits_path, record_path = _paths(data_dir, teacher, fraction, seed)
    framing = get_teacher(teacher).framing
    if logits_path.is_file() and record_path.is_file():
        try:
            stored: dict[str, Any] = json.loads(record_path.read_text())
            pq.read_metadata(logits_path)
        except (json.JSONDecodeError, UnicodeDecodeError, pa.ArrowInvalid) as exc:
            moved = [move_aside(p).name for p in (logits_path, record_path)]
            logger.warning(
                "Teacher_LR %s cannot be read (%s); moved to %s, fitting it again",
                record_path.with_suffix(""),
                exc,
                ", ".join(moved),
            )
        else:
            fitted_on = stored.get("teacher_framing", UNRECORDED_FRAMING)
            if fitted_on == framing:
                return stored
            logger.warning(
                "Teacher_LR %s was fitted on %r-framed embeddings, %s now frames %r; "
                "fitting it again",
                record_path.with_suffix(""),
                fitted_on,
                teacher,
                framing,
            )
    table = read_labels(data_dir)
    x_all = load_embeddings(data_dir, teacher, table.clip_ids).mean(axis=1)
    train_rows = table.training_rows(fraction, seed)
    tensors = {
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
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(x_all.shape[1], table.labels.shape[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.reset_parameters()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE
    )
    x, y, m = tensors["train"]
    selection, best_state, epoch = Selection(), model.state_dict(), 0
    for epoch in range(1, max_epochs + 1):
        for idx in torch.randperm(len(x), generator=gen).split(BATCH):
            opt.zero_grad()
            masked_bce(model(x[idx]), y[idx], m[idx]).backward()
            opt.step()
        val_loss, val_scores = _loss_and_scores(model, *tensors["valid"])
        val_map = evaluate(
            val_scores, tensors["valid"][1].numpy(), tensors["valid"][2].numpy(), threshold
        )["mAP"]
        best, patience_used = selection.update(epoch, val_map, val_loss, EARLY_STOP)
        if best:
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        plateau.step(val_loss)
        if patience_used:
            break
    model.load_state_dict(best_state)
    record: dict[str, Any] = {
        "teacher": teacher,
        "teacher_framing": framing,
        "fraction": fraction,
        "seed": seed,
        "epochs": epoch,
        "best_epoch": selection.best_epoch,
        "train_clips": len(train_rows),
        "logits": str(logits_path),
    }
    for split in ("valid", "test"):
        _, scores = _loss_and_scores(model, *tensors[split])
        metrics = evaluate(scores, tensors[split][1].numpy(), tensors[split][2].numpy(), threshold)
        record[split] = metrics
    with torch.no_grad():
        logits = model(torch.from_numpy(x_all)).numpy().astype(np.float32)
    write_table_atomic(
        pa.table(
            {"clip_id": pa.array(table.clip_ids, pa.string()), "logits": vector_array(logits)}
        ),
        logits_path,
    )
    write_json_atomic(record, record_path)
    return record


def load_teacher_logits(
    data_dir: Path, teacher: str, fraction: float, seed: int, clip_ids: list[str]
) -> np.ndarray:
    """Stored Teacher_LR logits `(N, C)` for `clip_ids`, in that order."""
    logits_path, _ = _paths(data_dir, teacher, fraction, seed)
    if not logits_path.is_file():
        raise FileNotFoundError(
            f"{logits_path}: Teacher_LR for teacher {teacher!r}, fraction "
            f"{fraction:g}, seed {seed} is not fitted yet (fit_teacher_lr)"
        )
    table = pq.read_table(logits_path)
    row_of = {c: i for i, c in enumerate(table["clip_id"].to_pylist())}
    logits = column_numpy(table["logits"])
    return logits[[row_of[c] for c in clip_ids]].astype(np.float32)
