"""The common shape of a dataset release once read: its clips, classes and skip list.

Each release reader (`openmic`, `magnatagatune`) turns a release folder into a
`ReleaseIndex`: one row per usable clip (`clip_id`, `split`, `group`, `labels`,
`label_mask`, `audio_path`), the classes in label order, and every row it had to leave
out with the reason. Nothing downstream looks at the release layout again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CLIP_COLUMNS = ("clip_id", "split", "group", "labels", "label_mask", "audio_path")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Skipped:
    """A clip left out of the dataset, and why."""

    clip_id: str
    reason: str
    path: str = ""


@dataclass(frozen=True)
class ReleaseIndex:
    """A release read into memory (labels and paths only, no audio)."""

    dataset: str
    root: Path
    classes: tuple[str, ...]
    clips: pd.DataFrame
    skipped: tuple[Skipped, ...] = ()
    published_counts: dict[str, int] = field(default_factory=dict)
    source_md5: dict[str, str] = field(default_factory=dict)
    valid_split: dict[str, Any] = field(default_factory=dict)  # the rule, for meta.json

    def __post_init__(self) -> None:
        missing = [c for c in CLIP_COLUMNS if c not in self.clips.columns]
        if missing:
            raise ValueError(f"clips: missing columns {missing}, expected {list(CLIP_COLUMNS)}")
        bad = set(self.clips["split"]) - set(SPLITS)
        if bad:
            raise ValueError(f"clips.split: got {sorted(bad)}, expected values in {SPLITS}")

    def split_counts(self) -> dict[str, int]:
        counts = self.clips["split"].value_counts()
        return {s: int(counts.get(s, 0)) for s in SPLITS}

    def count_report(self) -> str:
        """Split counts next to the published ones, one line."""
        ours = self.split_counts()
        parts = []
        for split in SPLITS:
            ref = self.published_counts.get(split)
            parts.append(f"{split} {ours[split]}" + (f" (published {ref})" if ref else ""))
        return f"{self.dataset}: " + ", ".join(parts)


def require_file(path: Path, what: str) -> Path:
    """`path` must be an existing file; otherwise fail naming it and what belongs there."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; expected {what}")
    return path


def require_root(root: Path, dataset: str, marker: str) -> Path:
    """`root` must be the release folder (it holds `marker`); name what was expected."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory; expected the {dataset} release root")
    if not (root / marker).is_file():
        nested = [p.parent for p in root.glob(f"*/{marker}")]
        hint = f" (did you mean {nested[0]}?)" if nested else ""
        raise FileNotFoundError(
            f"{root}: no {marker} here; expected the {dataset} release root{hint}"
        )
    return root


def clips_frame(rows: dict[str, list[object]], n_classes: int) -> pd.DataFrame:
    """Build the clip table, checking every label vector has `n_classes` entries."""
    frame = pd.DataFrame(rows, columns=list(CLIP_COLUMNS))
    for column, dtype in (("labels", np.float32), ("label_mask", np.bool_)):
        frame[column] = [np.asarray(v, dtype=dtype) for v in frame[column]]
        bad = [len(v) for v in frame[column] if len(v) != n_classes]
        if bad:
            raise ValueError(f"{column}: got vectors of length {bad[0]}, expected {n_classes}")
    return frame.sort_values("clip_id", ignore_index=True)
