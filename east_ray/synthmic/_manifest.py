"""``synthmic.json``: the parameters a set was rendered with and its summary, written last so
that its presence marks a complete set; and whether an existing folder can be reused."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from east_ray.errors import UserError
from east_ray.synthmic._format import CHANNELS, FORMAT_NAME, FORMAT_VERSION, SAMPLE_RATE
from east_ray.synthmic._labels import Labels, present_classes
from east_ray.synthmic._taxonomy import CLASSES
from east_ray.synthmic._track import ClipRecord

MANIFEST = "synthmic.json"


class OutputExistsError(UserError, FileExistsError):
    """The output folder exists and is not a complete SynthMIC with the same parameters."""


@dataclass(frozen=True)
class SynthSummary:
    """What `synthesize` wrote (or found already written)."""

    out: Path
    n_clips: int
    n_tracks: int
    n_scores: int
    n_train: int
    n_test: int
    sample_rate: int
    channels: int
    seed: int
    soundfont: str
    present: tuple[int, ...]  # clips with the class present, per class (construction truth)
    annotated_positive: tuple[int, ...]
    annotated_negative: tuple[int, ...]
    annotated_fraction: float
    hidden_positives: int  # present but unannotated (clip, class) pairs
    seconds: float
    reused: bool


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parameters(n_clips: int, seed: int, soundfont: Path) -> dict[str, Any]:
    """Everything that determines a set's content; a rerun with equal parameters reuses it."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "n_clips": n_clips,
        "seed": seed,
        "soundfont_sha256": _sha256(soundfont),
        "sample_rate": SAMPLE_RATE,
        "channels": CHANNELS,
        "music21": importlib.metadata.version("music21"),
    }


def summarize(
    out: Path,
    records: Sequence[ClipRecord],
    labels: Labels,
    *,
    n_tracks: int,
    seed: int,
    soundfont: Path,
    seconds: float,
) -> SynthSummary:
    """The summary of a freshly rendered set."""
    present = np.array(
        [[c in present_classes(r.stems) for c in CLASSES] for r in records], dtype=bool
    )
    y_true, y_mask = labels.y_true, labels.y_mask
    return SynthSummary(
        out=out,
        n_clips=len(records),
        n_tracks=n_tracks,
        n_scores=len({r.score_id for r in records}),
        n_train=len(labels.train),
        n_test=len(labels.test),
        sample_rate=SAMPLE_RATE,
        channels=CHANNELS,
        seed=seed,
        soundfont=str(soundfont),
        present=tuple(int(x) for x in present.sum(axis=0)),
        annotated_positive=tuple(int(x) for x in (y_mask & (y_true > 0.5)).sum(axis=0)),
        annotated_negative=tuple(int(x) for x in (y_mask & (y_true < 0.5)).sum(axis=0)),
        annotated_fraction=float(y_mask.mean()),
        hidden_positives=int((present & ~y_mask).sum()),
        seconds=seconds,
        reused=False,
    )


def write_manifest(root: Path, params: Mapping[str, Any], summary: SynthSummary) -> None:
    """Write ``synthmic.json`` (the last file of a complete set)."""
    stored = asdict(summary)
    stored.pop("out")
    stored.pop("reused")
    (root / MANIFEST).write_text(
        json.dumps({"parameters": params, "summary": stored}, indent=2) + "\n",
        encoding="utf-8",
    )


def _read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def reusable(out: Path, params: Mapping[str, Any], soundfont: Path) -> SynthSummary | None:
    """The stored summary if `out` is a complete set with `params`, None if `out` is absent
    or empty; anything else raises `OutputExistsError`."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise OutputExistsError(f"--out {out} exists and is not a folder; choose another --out")
    if not any(out.iterdir()):
        return None
    manifest = _read_manifest(out)
    if manifest is None or manifest.get("parameters") != params:
        what = (
            "a SynthMIC with other parameters"
            if manifest is not None
            else "not a complete SynthMIC"
        )
        raise OutputExistsError(
            f"--out {out} is non-empty and {what}; remove it or choose another --out "
            f"(wanted n_clips={params['n_clips']}, seed={params['seed']}, "
            f"SoundFont {soundfont.name})"
        )
    s = dict(manifest["summary"])
    s["out"] = out
    s["reused"] = True
    for name in ("present", "annotated_positive", "annotated_negative"):
        s[name] = tuple(s[name])
    return SynthSummary(**s)
