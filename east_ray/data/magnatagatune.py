"""The MagnaTagATune release reader: `annotations_final.csv` + `<hex>/<name>.mp3`.

`annotations_final.csv` is TAB-separated with every field in double quotes and CRLF line
endings: `"clip_id"`, 188 tag columns of "0"/"1", `"mp3_path"`. We keep the top-50 tags
in the standard order (all entries labelled). Splits follow the audio folder: 0–b train,
c valid, d–f test. Two variants:
- "won" (Lee et al. 2017 / Won et al. 2020; the paper's): clips with at least one top-50
  tag (clips too short to be full length are dropped when the audio is decoded);
- "pons" (musicnn): every clip but the known-bad ones.
The group of a clip is its artist (the file name up to the first "-").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from east_ray.catalog import DatasetInfo, get_dataset
from east_ray.data.checksums import md5sum
from east_ray.data.datasets import ReadOptions, published_counts
from east_ray.data.release import CLIP_COLUMNS, ReleaseIndex, Skipped, clips_frame, require_root
from east_ray.errors import BadValueError

ANNOTATIONS = "annotations_final.csv"
TOP50 = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
N_TAG_COLUMNS = 188
KNOWN_BAD = {
    "35644": "known bad clip: empty file",
    "55753": "known bad clip: corrupt mp3",
    "57881": "known bad clip: corrupt mp3",
}
FOLDER_SPLIT = {
    **dict.fromkeys("0123456789ab", "train"),
    "c": "valid",
    **dict.fromkeys("def", "test"),
}


def read_annotations(path: Path) -> pd.DataFrame:
    """Parse and check `annotations_final.csv`; tag columns come back as uint8."""
    table = pd.read_csv(path, sep="\t", quotechar='"', dtype=str, keep_default_na=False)
    columns = list(table.columns)
    if not columns or columns[0] != "clip_id" or columns[-1] != "mp3_path":
        raise BadValueError(
            f"{path}: header starts {columns[:2]} and ends {columns[-1:]}; expected "
            '"clip_id", 188 tags, "mp3_path" (TAB-separated, quoted)'
        )
    tags = columns[1:-1]
    if len(tags) != N_TAG_COLUMNS:
        raise BadValueError(f"{path}: {len(tags)} tag columns, expected {N_TAG_COLUMNS}")
    missing = [t for t in TOP50 if t not in tags]
    if missing:
        raise BadValueError(f"{path}: top-50 tags missing from the header: {missing}")
    values = table[tags]
    bad = ~values.isin(["0", "1"])
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise BadValueError(
            f"{path}: row {row + 2}, tag {tags[col]!r}: got {values.iat[row, col]!r},"
            ' expected "0" or "1"'
        )
    table[tags] = values.astype(np.uint8)
    return table


def read_release(row: DatasetInfo, root: Path, options: ReadOptions) -> ReleaseIndex:
    """Read the MTAT release at `root` under `options.split_scheme` (checked against `row`
    by `east_ray.data.datasets.read_release`)."""
    return read_magnatagatune(root, options.split_scheme or str(row.default_scheme))


def read_magnatagatune(root: Path, split_scheme: str = "won") -> ReleaseIndex:
    """Read an MTAT release at `root` (the folder holding annotations_final.csv)."""
    row = get_dataset("magnatagatune")
    if split_scheme not in row.split_schemes:
        raise BadValueError(
            f"split_scheme: got {split_scheme!r}, expected one of {', '.join(row.split_schemes)}"
        )
    root = require_root(Path(root), "MagnaTagATune", ANNOTATIONS)
    table = read_annotations(root / ANNOTATIONS)
    labels = table[list(TOP50)].to_numpy(dtype=np.float32)
    rows: dict[str, list[object]] = {column: [] for column in CLIP_COLUMNS}
    skipped: list[Skipped] = []
    all_labelled = np.ones(len(TOP50), dtype=bool)
    for i, (clip_id, mp3_path) in enumerate(zip(table["clip_id"], table["mp3_path"], strict=True)):
        folder = mp3_path.split("/", 1)[0]
        if folder not in FOLDER_SPLIT or "/" not in mp3_path:
            skipped.append(Skipped(clip_id, f"mp3_path {mp3_path!r} is not <hex digit>/<name>"))
            continue
        if clip_id in KNOWN_BAD:
            skipped.append(Skipped(clip_id, KNOWN_BAD[clip_id], mp3_path))
            continue
        if split_scheme == "won" and not labels[i].any():
            continue  # outside the "won" split by definition: not an error, not recorded
        rows["clip_id"].append(clip_id)
        rows["split"].append(FOLDER_SPLIT[folder])
        rows["group"].append(Path(mp3_path).name.split("-", 1)[0])
        rows["labels"].append(labels[i])
        rows["label_mask"].append(all_labelled)
        rows["audio_path"].append(str(root / mp3_path))
    clips = clips_frame(rows, len(TOP50))
    clips = clips.sort_values("clip_id", key=lambda s: s.astype(int), ignore_index=True)
    return ReleaseIndex(
        dataset="magnatagatune",
        root=root,
        classes=TOP50,
        clips=clips,
        skipped=tuple(skipped),
        published_counts=published_counts(row, split_scheme),
        source_md5={ANNOTATIONS: md5sum(root / ANNOTATIONS)},
        valid_split={"rule": "folder", "folder": "c", "scheme": split_scheme},
    )
