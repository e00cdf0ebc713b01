"""A finished run of one cell: what `result.json` holds and what becomes one row of
`results.parquet`. The row is flat (the cell's fields, the run's counts, `val_<metric>` at
the best epoch, `test_<metric>`, `final_<key>` of the last validated epoch, where it ran)
so pandas reads it as columns; `RunResult.from_row` reads one back by name and refuses a
row that lacks a field (but the `final_` ones, which older results lack)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from east_ray.config import Cell

METRIC_KEYS = ("mAP", "ROC-AUC", "F1", "F1_pos")
# the last validated epoch's training and validation loss and learning rate
FINAL_KEYS = ("train_loss", "val_loss", "lr")


@dataclasses.dataclass(frozen=True)
class RunResult:
    cell: Cell
    epochs: int
    steps: int
    best_epoch: int
    stopped: str  # "early_stop", "max_steps" or "max_epochs"
    train_clips: int
    val: dict[str, float]  # METRIC_KEYS and "loss", at the best epoch
    test: dict[str, float]  # METRIC_KEYS, with the best epoch's weights
    wall_seconds: float
    device: str
    # FINAL_KEYS of the last validated epoch (NaN in a result written before runs kept them)
    final: dict[str, float] = dataclasses.field(default_factory=dict)
    # where it ran, when the study ran it
    gpu_hours: float | None = None
    node_id: str | None = None
    gpu_ids: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "cell_id": self.cell.cell_id,
            **dataclasses.asdict(self.cell),
            "epochs": self.epochs,
            "steps": self.steps,
            "best_epoch": self.best_epoch,
            "stopped": self.stopped,
            "train_clips": self.train_clips,
            **{f"val_{k}": self.val[k] for k in (*METRIC_KEYS, "loss")},
            **{f"test_{k}": self.test[k] for k in METRIC_KEYS},
            **{f"final_{k}": self.final.get(k, math.nan) for k in FINAL_KEYS},
            "wall_seconds": self.wall_seconds,
            "device": self.device,
            **{
                k: v
                for k, v in (
                    ("gpu_hours", self.gpu_hours),
                    ("node_id", self.node_id),
                    ("gpu_ids", self.gpu_ids),
                )
                if v is not None
            },
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunResult:
        """The result a `row()` wrote; KeyError names a missing field."""
        return cls(
            cell=Cell(
                **{
                    f.name: row[f.name]
                    if f.default is dataclasses.MISSING
                    else row.get(f.name, f.default)
                    for f in dataclasses.fields(Cell)
                }
            ),
            epochs=int(row["epochs"]),
            steps=int(row["steps"]),
            best_epoch=int(row["best_epoch"]),
            stopped=str(row["stopped"]),
            train_clips=int(row["train_clips"]),
            val={k: float(row[f"val_{k}"]) for k in (*METRIC_KEYS, "loss")},
            test={k: float(row[f"test_{k}"]) for k in METRIC_KEYS},
            final={k: float(row.get(f"final_{k}", math.nan)) for k in FINAL_KEYS},
            wall_seconds=float(row["wall_seconds"]),
            device=str(row["device"]),
            gpu_hours=row.get("gpu_hours"),
            node_id=row.get("node_id"),
            gpu_ids=row.get("gpu_ids"),
        )
