"""Labels from the construction truth: which classes are present in a clip, which of them
are annotated (partially, as in OpenMIC), and the group-disjoint train/test split."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from east_ray.data.valid_split import group_split
from east_ray.synthmic._format import LABEL_STREAM, SPLIT_STREAM
from east_ray.synthmic._mix import StemRecord
from east_ray.synthmic._taxonomy import CLASSES
from east_ray.synthmic._track import ClipRecord

P_NEGATIVE = 0.5  # chance that an absent class is annotated negative
P_HIDE_POSITIVE = 0.1  # chance that a present class is left unannotated
TEST_FRACTION = 0.25


def present_classes(stems: Iterable[StemRecord]) -> frozenset[str]:
    """Classes present in a clip: those of stems that have notes in it and are audible."""
    return frozenset(s.label for s in stems if s.label is not None and s.n_notes > 0 and s.audible)


def annotate(
    present: frozenset[str],
    rng: np.random.Generator,
    *,
    p_negative: float = P_NEGATIVE,
    p_hide: float = P_HIDE_POSITIVE,
) -> tuple[np.ndarray, np.ndarray]:
    """One clip's ``(Y_true, Y_mask)`` rows: float64 and bool, both of length 20.

    Present classes are positive (1.0) unless hidden with probability ``p_hide``; absent ones
    are negative (0.0) with probability ``p_negative``; everything else is unobserved: exactly
    0.5 and unmasked. At least one class is always annotated (truthfully).
    """
    unknown = present - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown classes: {sorted(unknown)}")
    y = np.full(len(CLASSES), 0.5, dtype=np.float64)
    mask = np.zeros(len(CLASSES), dtype=bool)
    draws = rng.random(len(CLASSES))
    for i, cls in enumerate(CLASSES):
        if cls in present:
            if draws[i] >= p_hide:
                y[i], mask[i] = 1.0, True
        elif draws[i] < p_negative:
            y[i], mask[i] = 0.0, True
    if not mask.any():
        i = int(rng.integers(len(CLASSES)))
        y[i], mask[i] = (1.0 if CLASSES[i] in present else 0.0), True
    return y, mask


@dataclass(frozen=True)
class Labels:
    """The annotations of a release: ``Y_true``/``Y_mask`` rows in record order, the split."""

    y_true: np.ndarray
    y_mask: np.ndarray
    train: frozenset[str]
    test: frozenset[str]


def label_release(records: Sequence[ClipRecord], seed: int) -> Labels:
    """Annotate every clip (each from its own seed stream) and split them by source score."""
    y_true = np.empty((len(records), len(CLASSES)), dtype=np.float64)
    y_mask = np.empty((len(records), len(CLASSES)), dtype=bool)
    for i, r in enumerate(records):
        rng = np.random.default_rng([seed, LABEL_STREAM, r.track_id, r.start_ms])
        y_true[i], y_mask[i] = annotate(present_classes(r.stems), rng)
    train, test = group_split(
        [r.sample_key for r in records],
        [r.score_id for r in records],
        np.random.default_rng([seed, SPLIT_STREAM]),
        TEST_FRACTION,
    )
    return Labels(y_true, y_mask, train, test)
