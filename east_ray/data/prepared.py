"""A prepared dataset folder, opened once: its `meta.json` and label table are read when it
is opened and handed down with the folder, so the layers below the study read neither
again. Functions that take a prepared dataset accept the folder too (`PreparedData.of`),
for scripts and tests that have only a path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from east_ray.data.parquet import LabelTable, read_labels, read_meta


@dataclass(frozen=True)
class PreparedData:
    """The prepared dataset at `root`: its meta and its clips' labels (no spectrograms)."""

    root: Path
    meta: dict[str, Any]
    labels: LabelTable

    @classmethod
    def open(cls, root: Path) -> PreparedData:
        """Read `root`'s meta and label table (clear errors if it is not a prepared dataset)."""
        meta = read_meta(root)
        return cls(Path(root), meta, read_labels(root, meta))

    @classmethod
    def of(cls, data: PreparedData | Path) -> PreparedData:
        """`data` itself, or the folder `data` opened."""
        return data if isinstance(data, PreparedData) else cls.open(Path(data))

    @property
    def num_classes(self) -> int:
        return len(self.labels.classes)

    @property
    def fingerprint(self) -> str:
        """What a result computed from the folder depends on (`east_ray.data.prepare`)."""
        return str(self.meta.get("fingerprint"))
