"""Which clips of OpenMIC's training partition are held out for validation.

Two rules:

- `authors` (the default for OpenMIC): the authors' own list. They drew it once (15% of
  split01_train, 2,223 clips) and committed it as `openmic_valid.json` to
  `suncerock/EAsT-music-classification`; it is fetched from that repository at the pinned
  commit `AUTHORS_COMMIT`, md5- and size-checked (`AUTHORS_MD5`, `AUTHORS_SIZE`), and
  cached at `<release root>/east_ray/openmic_valid.json`, so later runs make no request.
  Offline, pass a copy with `--valid-list FILE`. A list file is used as given: when its md5
  is not the pinned one, it is recorded as rule `list` (and a warning says so).
- `seeded` (SynthMIC's only rule, OpenMIC's offline option): a seeded `fraction` of the
  sorted training keys (numpy `default_rng(seed).permutation`), 15% with seed 1223 unless
  told otherwise. For OpenMIC it is not the authors' split (they drew theirs with Python's
  `random.seed(2022)`, one `uniform` per line of their own training file, so the draw
  depends on that file's line order: the committed list is the record of it).

A list file is one of: the authors' JSON lines (one object with a `sample_key` per line), a
JSON array of keys, or plain text with one key per line. Every key must be unique and in
the training partition; anything else is refused, naming the file and the key.

`describe()` is what `meta.json` records under `valid_split`; everything in it but
`source` (where the list was read from) enters the prepared dataset's fingerprint.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from east_ray.data.checksums import md5sum
from east_ray.data.fetch import DownloadError, download_file
from east_ray.errors import BadValueError

logger = logging.getLogger(__name__)

AUTHORS_REPO = "suncerock/EAsT-music-classification"
AUTHORS_COMMIT = "0286fca9a1b0025f8847e91f927b2d9e833ffd2d"
AUTHORS_FILE = "openmic_valid.json"
AUTHORS_URL = f"https://raw.githubusercontent.com/{AUTHORS_REPO}/{AUTHORS_COMMIT}/{AUTHORS_FILE}"
AUTHORS_MD5 = "2b84d45a9efcebc6cc12e1635c99381b"
AUTHORS_SIZE = 954_836
AUTHORS_CLIPS = 2_223
CACHE = Path("east_ray") / AUTHORS_FILE
"""Where the downloaded list is kept, relative to the release root."""

RULES = ("authors", "seeded")
"""The rules `--valid-split` accepts."""

G = TypeVar("G", str, int)  # a group label: an artist, a score


def group_split(
    keys: Sequence[str], groups: Sequence[G], rng: np.random.Generator, test_fraction: float
) -> tuple[frozenset[str], frozenset[str]]:
    """(kept, held out) keys, disjoint by group: whole groups, in an order drawn by `rng`,
    are held out until they hold `test_fraction` of the keys (SynthMIC's train/test split
    and its validation split). With at least two groups, both sides are non-empty."""
    if len(keys) != len(groups):
        raise ValueError("keys and groups differ in length")
    unique = sorted(set(groups))
    order = [unique[i] for i in rng.permutation(len(unique))]
    count = {g: 0 for g in unique}
    for g in groups:
        count[g] += 1
    target = round(test_fraction * len(keys))
    test_groups: set[G] = set()
    n_test = 0
    for g in order[:-1]:  # the last group always stays in train
        if n_test >= max(target, 1):
            break
        test_groups.add(g)
        n_test += count[g]
    test = frozenset(k for k, g in zip(keys, groups, strict=True) if g in test_groups)
    return frozenset(keys) - test, test


@dataclass(frozen=True)
class SeededSplit:
    """A seeded `fraction` of the sorted training keys; with `by_group`, whole groups
    (the release's artist or source score), so no group is in both training and validation."""

    fraction: float = 0.15
    seed: int = 1223
    by_group: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise BadValueError(f"valid fraction: got {self.fraction}, expected a number in [0, 1)")

    def choose(
        self, train_keys: Sequence[str], partition: Path, groups: Mapping[str, str]
    ) -> set[str]:
        """The validation keys among `train_keys`, `groups` giving each key's group
        (`partition`: unused, for the interface)."""
        ordered = sorted(train_keys)
        rng = np.random.default_rng(self.seed)
        if self.by_group:
            return set(group_split(ordered, [groups[k] for k in ordered], rng, self.fraction)[1])
        order = rng.permutation(len(ordered))
        return {ordered[i] for i in order[: round(self.fraction * len(ordered))]}

    def describe(self) -> dict[str, Any]:
        by_group = {"by_group": True} if self.by_group else {}  # earlier folders keep their id
        return {"rule": "seeded", "fraction": self.fraction, "seed": self.seed, **by_group}


@dataclass(frozen=True)
class ListSplit:
    """The keys of a list file (`source`: its path or URL; `md5`: the file's)."""

    keys: tuple[str, ...]
    source: str
    md5: str

    def choose(
        self, train_keys: Sequence[str], partition: Path, groups: Mapping[str, str]
    ) -> set[str]:
        """The list's keys, after checking each is in the training partition `partition`
        (`groups`: unused, for the interface)."""
        outside = sorted(set(self.keys) - set(train_keys))
        if outside:
            raise BadValueError(
                f"{self.source}: {len(outside)} of its {len(self.keys)} validation keys are not "
                f"in the training partition {partition}, e.g. {outside[:3]}; give the list made "
                "for this release (--valid-list FILE) or use --valid-split seeded"
            )
        return set(self.keys)

    def describe(self) -> dict[str, Any]:
        return {
            "rule": "authors" if self.md5 == AUTHORS_MD5 else "list",
            "source": self.source,
            "md5": self.md5,
            "clips": len(self.keys),
        }


ValidSplit = SeededSplit | ListSplit


def _json_lines(text: str, path: Path) -> list[str]:
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadValueError(f"{path}: line {number} is not JSON ({exc})") from None
        key = row.get("sample_key") if isinstance(row, dict) else None
        if not isinstance(key, str):
            raise BadValueError(f"{path}: line {number} has no string 'sample_key'")
        keys.append(key)
    return keys


def _json_array(text: str, path: Path) -> list[str]:
    try:
        keys = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadValueError(f"{path}: not a JSON array of sample keys ({exc})") from None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BadValueError(f"{path}: expected a JSON array of sample-key strings")
    return keys


def _parse_keys(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    start = text.lstrip()[:1]
    if start == "{":
        return _json_lines(text, path)
    if start == "[":
        return _json_array(text, path)
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_valid_list(path: Path, source: str | None = None) -> ListSplit:
    """The validation list in the file `path` (`source`: where it came from, if not there)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; expected a validation list (the authors' {AUTHORS_FILE})"
        )
    keys = _parse_keys(path)
    if not keys:
        raise BadValueError(f"{path}: holds no sample keys; expected a validation list")
    repeated = sorted(k for k, n in Counter(keys).items() if n > 1)
    if repeated:
        raise BadValueError(
            f"{path}: {len(repeated)} sample keys appear more than once, e.g. {repeated[:3]}; "
            "a validation list names each clip once: fix the file or fetch the authors' again"
        )
    return ListSplit(tuple(sorted(keys)), source or str(path), md5sum(path))


def _download(dest: Path) -> Path:
    try:
        return download_file(AUTHORS_URL, dest, AUTHORS_MD5, size=AUTHORS_SIZE)
    except DownloadError as exc:
        raise type(exc)(
            f"{exc}. Offline, pass a copy of the authors' {AUTHORS_FILE} with --valid-list FILE "
            "(or use --valid-split seeded, which is not the authors' split)"
        ) from exc


def authors_valid_list(root: Path, list_file: Path | None = None) -> ListSplit:
    """The authors' validation list: `list_file` when given, else downloaded (md5-checked)
    once to `<root>/east_ray/openmic_valid.json` and read from there."""
    if list_file is not None:
        split = read_valid_list(list_file)
        if split.md5 != AUTHORS_MD5:
            logger.warning(
                "%s: md5 %s is not that of the authors' list (%s); using it as given "
                "(meta.json records rule 'list')",
                list_file,
                split.md5,
                AUTHORS_MD5,
            )
    else:
        split = read_valid_list(_download(Path(root) / CACHE), source=AUTHORS_URL)
    logger.info("validation: %d clips listed in %s", len(split.keys), split.source)
    return split
