"""A finished run's summary for TensorBoard: the cell's axes and its final metrics as one
HParams session in the run's own event file (per-step and per-epoch scalars are written
by the trainer as it goes)."""

from __future__ import annotations

import dataclasses

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from east_ray.config import Cell
from east_ray.train.result import METRIC_KEYS


def write_hparams(
    writer: SummaryWriter, cell: Cell, test: dict[str, float], best_val_map: float
) -> None:
    """The cell's axes and its final metrics for TensorBoard's HParams tab (one session
    per run folder, so every trial of a study compares side by side)."""
    axes = {
        k: ("-" if v is None else v) for k, v in dataclasses.asdict(cell).items() if k != "student"
    }
    metrics = {f"final/test_{k}": test[k] for k in METRIC_KEYS}
    metrics["final/best_val_mAP"] = best_val_map
    # through this run's own writer: `add_hparams` would open a second event file
    file_writer = writer.file_writer
    assert file_writer is not None  # a SummaryWriter opens its file when constructed
    for summary in hparams(axes, metrics):
        file_writer.add_summary(summary)
    for tag, value in metrics.items():
        writer.add_scalar(tag, value)
