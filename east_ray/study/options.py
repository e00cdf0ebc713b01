"""What a study run was asked to do, typed once by the study command from its arguments
and handed to the driver: where results go, how the cells are searched and retried, and
each part's data source with the plan already made for it (`data_source.plan_data`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from east_ray.study.data_source import DataPlan, DataSource

Search = Literal["grid", "tpe"]


@dataclass(frozen=True)
class RunOptions:
    """`--storage` (absolute), `--address`, `--search` with its `--budget`, `--retries`,
    `--max-epochs`, `--max-concurrent`, `--absent-classes`; per part name, its data source
    and plan."""

    storage: Path
    sources: Mapping[str, DataSource]
    plans: Mapping[str, DataPlan]
    address: str | None = None
    search: Search = "grid"
    budget: int = 8
    retries: int = 2
    max_epochs: int | None = None
    max_concurrent: int | None = None
    absent_classes: str = "skip"

    @property
    def tpe(self) -> bool:
        """Whether λ is searched by TPE per group of cells (else every grid cell runs)."""
        return self.search == "tpe"
