"""What a finished run writes and what becomes its row of `results.parquet`: a cell's run
(`RunResult`, its `result.json`) and a Teacher_LR fit (`TeacherLRFit`, its record). A row
is flat (the cell's fields, the run's counts, `val_<metric>` at the best epoch,
`test_<metric>`, `final_<key>` of the last validated epoch, where it ran) so pandas reads
it as columns; `RunResult.from_row` reads one back by name and refuses a row that lacks a
field (but the `final_` ones, which older results lack)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from east_ray.analysis.metrics import METRICS
from east_ray.config import Cell

METRIC_KEYS = METRICS  # the metrics a run records: those `evaluate` computes
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
    # the deployed student's parameters, and those trained (with FitNet's hint projections)
    parameters: int | None = None
    training_parameters: int | None = None
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
                    ("parameters", self.parameters),
                    ("training_parameters", self.training_parameters),
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
            parameters=_count(row.get("parameters")),
            training_parameters=_count(row.get("training_parameters")),
            gpu_hours=row.get("gpu_hours"),
            node_id=row.get("node_id"),
            gpu_ids=row.get("gpu_ids"),
        )


def _count(value: Any) -> int | None:
    """A count read back from a row (None where the row predates it, or is NaN in a frame
    of rows of which only some have it)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


@dataclasses.dataclass(frozen=True)
class TeacherLRFit:
    """A finished Teacher_LR fit (`east_ray.train.teacher_lr`): what its record holds and
    what becomes its row of `results.parquet`. `logits` and `test_scores` name its files,
    beside the record on disk; `fit_teacher_lr` returns the scores' full path."""

    teacher: str
    teacher_framing: str
    fraction: float
    seed: int
    recipe: dict[str, Any]  # the recipe as applied (`teacher_lr.applied_recipe`)
    epochs: int
    steps: int
    best_epoch: int
    train_clips: int
    data: str  # the prepared dataset's fingerprint
    logits: str
    test_scores: str
    valid: dict[str, float]  # METRIC_KEYS and n_classes, at the best epoch
    test: dict[str, float]

    @property
    def cell_id(self) -> str:
        """The id of the fit's row and folder in a study."""
        return f"teacher_lr-{self.teacher}-frac{self.fraction:g}-seed{self.seed}"

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TeacherLRFit:
        """The fit a `record()` wrote; KeyError names a missing field."""
        return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls)})

    def row(self, dataset: str) -> dict[str, Any]:
        """Its row of `results.parquet`: a run of the linear probe, with no stage or λ."""
        return {
            "cell_id": self.cell_id,
            "dataset": dataset,
            "student": "linear",
            "regularizer": "teacher_lr",
            "teacher": self.teacher,
            "stage": None,
            "lam": 0.0,
            "fraction": self.fraction,
            "seed": self.seed,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "train_clips": self.train_clips,
            **{f"val_{k}": v for k, v in self.valid.items() if k != "n_classes"},
            **{f"test_{k}": v for k, v in self.test.items() if k != "n_classes"},
        }
