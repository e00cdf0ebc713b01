"""Bootstrap statistics of a run's test scores: confidence intervals, paired tests, per-class AP.

Everything here is numpy on `ScoredClips` (a run's test clips: ids, class names, sigmoid
scores, labels, label mask), and every metric is `east_ray.analysis.metrics`' definition (masked
per class, classes without a labelled positive or negative left out of the macro mean),
evaluated on all B resampled test sets at once (`metrics.class_metrics` with counts).
`absent_classes` picks the rule for classes without both labels (`metrics.macro`): ours,
"skip", or the authors', "zero" (0 in mAP and ROC-AUC), in the point estimate and in every
replicate alike.

The scheme:

- Clips. A replicate draws the N test clips with replacement (percentile bootstrap,
  B = 1000 by default, from a seeded generator), i.e. a row of multinomial counts. Every
  run bootstrapped together sees the *same* rows of counts (`clip_counts`), so the clip
  resampling is shared by the seeds of one system and by a system and its baseline.
  A class that a replicate leaves without a labelled positive or negative is left out of
  that replicate's macro mean ("skip"), or scores 0 in it ("zero"), as `evaluate` treats
  it on the whole test set.
- Seeds. With S seeds of one system, a replicate also draws S seeds with replacement
  (`seed_counts`) and takes the mean of their metrics on that replicate's clips: a
  two-stage bootstrap of the seed-mean, so the interval holds both the test-set sampling
  and the seed-to-seed variation. With one seed it is the plain clip bootstrap.
- Interval: the 2.5th and 97.5th percentiles of the B replicate values (`level` = 0.95).
- Paired test of a system against a baseline on the same test clips (clip ids must match,
  in any order): the replicate difference `d_b` = system − baseline uses the same clip
  counts for both (each side draws its own seeds). The difference's interval is its
  percentiles; the two-sided p-value is `min(1, 2 · min(#{d_b ≤ 0} + 1, #{d_b ≥ 0} + 1) /
  (B + 1))`, the smallest α at which the (1 − α) percentile interval leaves out 0, so
  p < 0.05 exactly when the 95% interval of the difference excludes 0 (up to the +1
  that keeps p > 0). Identical systems give d_b = 0 for every b, so p = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from east_ray.analysis.metrics import METRICS, check_absent_classes, class_metrics, macro
from east_ray.errors import BadValueError

N_BOOT = 1000
LEVEL = 0.95
SIGNIFICANCE = 0.05
# Replicates scored per pass: bounds the memory of one pass (N x 1000 int32 counts plus
# a few per-class arrays of distinct scores x 1000 floats: ~100 MB for 5,000 test clips)
# whatever B is.
_CHUNK = 1000


@dataclass(frozen=True)
class ScoredClips:
    """One run's test clips: `clip_ids` `(N,)`, `classes` `(K,)`, sigmoid `scores`
    `(N, K)`, `labels` `(N, K)` (positive where > 0.5), label `mask` `(N, K)` (True where
    labelled), the F1 `threshold` the run used, and `source` (a file name) for messages."""

    clip_ids: np.ndarray
    classes: tuple[str, ...]
    scores: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    threshold: float = 0.4
    source: str = "scores"

    def __post_init__(self) -> None:
        shape = (len(self.clip_ids), len(self.classes))
        for name in ("scores", "labels", "mask"):
            got = np.shape(getattr(self, name))
            if got != shape:
                raise BadValueError(
                    f"{self.source}: {name} has shape {got}, expected {shape} "
                    f"({shape[0]} clip ids x {shape[1]} classes); write the file again"
                )
        if len(set(self.clip_ids.tolist())) != len(self.clip_ids):
            raise BadValueError(f"{self.source}: clip ids repeat; write the file again")

    def aligned(self, clip_ids: np.ndarray, classes: tuple[str, ...], other: str) -> ScoredClips:
        """These clips in the order of `clip_ids` (`other`'s), refusing another clip set or
        another class order."""
        if classes != self.classes:
            raise BadValueError(
                f"{self.source}: classes {list(self.classes)} differ from {other}'s "
                f"{list(classes)}; compare runs of one prepared dataset"
            )
        row = {c: i for i, c in enumerate(self.clip_ids.tolist())}
        missing = [c for c in clip_ids.tolist() if c not in row]
        if missing or len(row) != len(clip_ids):
            extra = sorted(set(row) - set(clip_ids.tolist()))
            raise BadValueError(
                f"{self.source}: its {len(row)} test clips are not {other}'s {len(clip_ids)} "
                f"(missing here: {missing[:3]}, only here: {extra[:3]}); a paired comparison "
                "needs runs scored on the same test clips (the same prepared dataset)"
            )
        order = np.array([row[c] for c in clip_ids.tolist()], dtype=np.int64)
        return ScoredClips(
            clip_ids[:],
            self.classes,
            self.scores[order],
            self.labels[order],
            self.mask[order],
            self.threshold,
            self.source,
        )


@dataclass(frozen=True)
class Interval:
    """A statistic and its bootstrap interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedTest:
    """System − baseline: the difference of the (seed-mean) metric, its bootstrap interval
    and the two-sided p-value (module doc)."""

    diff: float
    low: float
    high: float
    p_value: float


def align(runs: Sequence[ScoredClips]) -> list[ScoredClips]:
    """`runs` with their clips in the first run's order (the same clip set required)."""
    if not runs:
        raise BadValueError("runs: got none, expected at least one run's scores")
    first = runs[0]
    return [first, *(r.aligned(first.clip_ids, first.classes, first.source) for r in runs[1:])]


def clip_counts(n_clips: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`(n_boot, n_clips)` int32: how often each clip is drawn in each replicate."""
    if n_boot < 1:
        raise BadValueError(f"n_boot: got {n_boot}, expected at least 1 replicate")
    draws = rng.integers(0, n_clips, size=(n_boot, n_clips))
    flat = (draws + n_clips * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n_clips).reshape(n_boot, n_clips).astype(np.int32)


def seed_counts(n_seeds: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`(n_boot, n_seeds)`: how often each seed is drawn in each replicate (all ones with
    one seed, so a single run is the plain clip bootstrap)."""
    if n_seeds == 1:
        return np.ones((n_boot, 1))
    return rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot).astype(float)


def replicates(
    clips: ScoredClips, counts: np.ndarray, absent_classes: str = "skip"
) -> dict[str, np.ndarray]:
    """Every macro metric (`metrics.METRICS`) of `clips` on each row of `counts`, `(B,)`,
    classes without both labels treated by `absent_classes` (`metrics.macro`)."""
    check_absent_classes(absent_classes)
    parts = [
        class_metrics(
            clips.scores, clips.labels, clips.mask, clips.threshold, counts[i : i + _CHUNK]
        )
        for i in range(0, len(counts), _CHUNK)
    ]
    return {m: macro(np.concatenate([p[m] for p in parts]), m, absent_classes) for m in METRICS}


def point(clips: ScoredClips, absent_classes: str = "skip") -> dict[str, float]:
    """Every macro metric of `clips` on the test set as it is."""
    ones = np.ones((1, len(clips.clip_ids)), np.int32)
    return {m: float(v[0]) for m, v in replicates(clips, ones, absent_classes).items()}


def seed_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Replicate values of S seeds `(S, B)` → the seed-mean of each replicate under the
    seed draw `weights` `(B, S)` (`seed_counts`)."""
    means: np.ndarray = np.einsum("sb,bs->b", values, weights) / weights.sum(axis=1)
    return means


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The (1 − level)/2 and (1 + level)/2 percentiles of `values` (NaNs left out)."""
    if not 0 < level < 1:
        raise BadValueError(f"level: got {level}, expected a number between 0 and 1")
    finite = values[~np.isnan(values)]
    if not len(finite):
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def p_value(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a difference's replicates `diffs` (module doc)."""
    d = diffs[~np.isnan(diffs)]
    if not len(d):
        return float("nan")
    below, above = np.sum(d <= 0) + 1, np.sum(d >= 0) + 1
    return float(min(1.0, 2 * min(below, above) / (len(d) + 1)))


def bootstrap_ci(
    runs: Sequence[ScoredClips],
    metric: str = "mAP",
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
    absent_classes: str = "skip",
) -> Interval:
    """The seed-mean of `metric` over `runs` (the seeds of one system, one run for a
    single seed) and its bootstrap interval: clips and seeds resampled (module doc)."""
    _check_metric(metric)
    runs = align(runs)
    rng = np.random.default_rng(seed)
    counts = clip_counts(len(runs[0].clip_ids), n_boot, rng)
    values = np.stack([replicates(r, counts, absent_classes)[metric] for r in runs])
    means = seed_mean(values, seed_counts(len(runs), n_boot, rng))
    estimate = float(np.mean([point(r, absent_classes)[metric] for r in runs]))
    return Interval(estimate, *percentile_interval(means, level))


def paired_bootstrap(
    system: Sequence[ScoredClips],
    baseline: Sequence[ScoredClips],
    metric: str = "mAP",
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
    absent_classes: str = "skip",
) -> PairedTest:
    """`system` − `baseline` in the seed-mean of `metric` on the same test clips: the
    difference, its bootstrap interval and the two-sided p-value (module doc)."""
    _check_metric(metric)
    runs = align([*system, *baseline])
    system, baseline = runs[: len(system)], runs[len(system) :]
    if not system or not baseline:
        raise BadValueError("system, baseline: expected at least one run's scores on each side")
    rng = np.random.default_rng(seed)
    counts = clip_counts(len(runs[0].clip_ids), n_boot, rng)
    sides = []
    for side in (system, baseline):
        values = np.stack([replicates(r, counts, absent_classes)[metric] for r in side])
        sides.append(seed_mean(values, seed_counts(len(side), n_boot, rng)))
    diffs = sides[0] - sides[1]
    diff = np.mean([point(r, absent_classes)[metric] for r in system]) - np.mean(
        [point(r, absent_classes)[metric] for r in baseline]
    )
    return PairedTest(float(diff), *percentile_interval(diffs, level), p_value(diffs))


def class_counts(clips: ScoredClips) -> tuple[int, int]:
    """(classes with a labelled positive and a labelled negative test clip, all classes):
    how many classes a macro mean of `clips` averages under "skip", of how many."""
    y = (clips.labels > 0.5) & clips.mask
    n = (clips.labels <= 0.5) & clips.mask
    return int(np.sum(y.any(axis=0) & n.any(axis=0))), len(clips.classes)


def class_ap(clips: ScoredClips) -> np.ndarray:
    """Each class's average precision on its labelled test entries, `(K,)` in
    `clips.classes` order; NaN for a class without a labelled positive or negative."""
    per_class = class_metrics(clips.scores, clips.labels, clips.mask, clips.threshold)
    ap: np.ndarray = per_class["mAP"][0]
    return ap


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise BadValueError(f"metric: got {metric!r}, expected one of {', '.join(METRICS)}")
