"""Masked, macro-averaged multi-label metrics: mAP, ROC-AUC, OpenMIC F1, positive F1.

Every class is scored on its labelled entries only (`mask`), with scikit-learn's
definitions (computed here in vectorised numpy, ~50x faster than calling scikit-learn per
class, which matters when every epoch of every trial is evaluated; the tests compare with
scikit-learn class by class), then the classes are averaged with equal weight (`macro`).

Classes without both labels (`absent_classes`). A class with no labelled positive or no
labelled negative in the evaluated split has no defined AP, ROC-AUC or F1. Ours ("skip",
the default) leaves it out of every mean; `n_classes` in `evaluate`'s result says how
many classes had both labels. The authors' metrics (torchmetrics) score such a class 0 in
mAP and ROC-AUC ("zero"), i.e. divide by every class: on a fixed split that is ours times
K_present / K, so it moves every run of a split by the same factor and cannot change which
epoch or λ has the best validation mAP (training keeps "skip"). F1 and F1_pos follow ours
under both rules: the authors' difference was found in mAP and ROC-AUC only.

OpenMIC F1 (the authors' definition): threshold the sigmoid outputs (default 0.4), take
per class the mean of the positive-class and the negative-class F1, then the macro mean.

Weighted form. Each metric is computed from a class's positive and negative weight at each
distinct score, so clip i may count `counts[b, i]` times: a row of bootstrap resample counts
gives the metric on that resampled test set (a clip drawn twice is an exact tie with
itself), and `class_metrics` scores B rows at once with one sort per class. `evaluate` is
the case of one row of ones, so the bootstrap (`east_ray.analysis.stats`) and the trials use one
definition.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

METRICS = ("mAP", "ROC-AUC", "F1", "F1_pos")
ABSENT_CLASSES = ("skip", "zero")
# the metrics the authors' rule ("zero") scores 0 for a class without both labels
ZEROED = ("mAP", "ROC-AUC")


def _sums_below(x: np.ndarray, at: np.ndarray) -> np.ndarray:
    """`(len(at), B)`: the sum of the rows `x[:q]` (`x` `(n, B)`) for each `q` in `at`
    (in [0, n]). With many replicates, block by block between the cut points: numpy sums
    rows fast, but its running sum down axis 0 of a wide array is ~10x slower than this
    loop; a few replicates (evaluation) take the running sum, which is then faster."""
    n, width = x.shape
    if width < 32:
        below = np.zeros((n + 1, width))
        np.cumsum(x, axis=0, out=below[1:])
        out: np.ndarray = below[at]
        return out
    edges = np.r_[np.unique(np.r_[0, at[(at > 0) & (at < n)]])[:n], n]
    below = np.zeros((len(edges), width))
    for i in range(len(edges) - 1):
        below[i + 1] = below[i] + x[edges[i] : edges[i + 1]].sum(axis=0)
    out = below[np.searchsorted(edges, at)]
    return out


def class_scores(
    y: np.ndarray,
    s: np.ndarray,
    counts_t: np.ndarray,
    threshold: float = 0.4,
    rows: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One class's AP, ROC-AUC, F1 and positive F1 (under the names of their macro means,
    `METRICS`), `(B,)` each, for entries `y` (bool) with scores `s`, entry j counted
    `counts_t[rows[j], b]` times in replicate b (`counts_t` `(N, B)`, integers; `rows`
    defaults to every row); NaN where a replicate leaves no positive or no negative.

    Everything comes from the weight of all entries and of the positives below a few
    points of the score order (the edges of each distinct score that holds a positive, and
    the threshold): one sort per class whatever the number of replicates.
    """
    n = len(s)
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    start = np.flatnonzero(np.r_[True, np.diff(s_sorted) != 0][:n])  # distinct scores
    end = np.r_[start[1:], n].astype(np.int64)
    positive = np.flatnonzero(y_sorted)  # positions of the positives in score order
    # only the distinct scores that hold a positive add to AP and AUC
    holds = np.searchsorted(positive, end) > np.searchsorted(positive, start)
    # predicted positive: score > threshold, i.e. after the first `t` entries
    t = np.searchsorted(s_sorted, threshold, side="right")
    at = np.r_[start[holds], end[holds], t, n]
    c = counts_t[order if rows is None else rows[order]]
    every = _sums_below(c, at)
    pos_below = _sums_below(c[positive], np.asarray(np.searchsorted(positive, at)))
    g = int(holds.sum())
    neg_below = every - pos_below
    p, neg = pos_below[-1], neg_below[-1]
    pos = pos_below[g : 2 * g] - pos_below[:g]  # the positives' weight at each distinct score
    # AP: each positive's recall step times the precision at its score (ties together).
    # Weights are whole counts: where no weight lies at or above a score, no positive does.
    precision = (p - pos_below[:g]) / np.maximum(every[-1] - every[:g], 1)
    tp, fp = p - pos_below[-2], neg - neg_below[-2]
    with np.errstate(divide="ignore", invalid="ignore"):  # undefined replicates: NaN below
        out = {
            "mAP": np.einsum("gb,gb->b", pos, precision) / p,
            # a positive beats the negatives below its score and ties half of those at it
            "ROC-AUC": np.einsum("gb,gb->b", pos, neg_below[:g] + neg_below[g : 2 * g])
            / (2 * p * neg),
            "F1_pos": 2 * tp / (p + tp + fp),
        }
        f1_neg = 2 * (neg - fp) / (neg + (neg - fp) + (p - tp))
    out["F1"] = (out["F1_pos"] + f1_neg) / 2
    undefined = (p == 0) | (neg == 0)
    return {k: np.where(undefined, np.nan, out[k]) for k in METRICS}


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """scikit-learn's AP: sum over distinct thresholds of (ΔRecall · Precision)."""
    return float(class_scores(y, s, np.ones((len(s), 1), np.int32))["mAP"][0])


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic, ties counted half (= scikit-learn)."""
    return float(class_scores(y, s, np.ones((len(s), 1), np.int32))["ROC-AUC"][0])


def _as_2d(name: str, value: ArrayLike, dtype: type) -> np.ndarray:
    arr: np.ndarray = np.asarray(value, dtype=dtype)
    if arr.ndim != 2:
        raise ValueError(f"{name}: got shape {arr.shape}, expected (N, K)")
    return arr


def class_metrics(
    scores: ArrayLike,
    labels: ArrayLike,
    mask: ArrayLike,
    threshold: float = 0.4,
    counts: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-class metrics `(B, K)` (NaN for a class without a labelled positive or negative)
    of `scores` (sigmoid outputs in [0, 1], `(N, K)`), each clip counted `counts[b, i]`
    times (`(B, N)`; default one row of ones: the test set as it is).

    `labels` `(N, K)`: positive where > 0.5; `mask` `(N, K)` bool: True where labelled.
    Float32 `scores` are compared with `threshold` rounded to float32, as the authors' code
    compares them (a score of float32(0.4) is then not above 0.4).
    """
    if np.asarray(scores).dtype == np.float32:
        threshold = float(np.float32(threshold))
    s = _as_2d("scores", scores, np.float64)
    y = _as_2d("labels", labels, np.float64) > 0.5
    m = _as_2d("mask", mask, bool)
    if not (s.shape == y.shape == m.shape):
        raise ValueError(
            f"scores, labels, mask: got shapes {s.shape}, {y.shape}, {m.shape}, expected equal"
        )
    if not np.all(np.isfinite(s)) or s.min(initial=0.0) < 0 or s.max(initial=0.0) > 1:
        raise ValueError(
            "scores: expected finite sigmoid outputs in [0, 1] (apply torch.sigmoid to logits), "
            f"got values in [{np.nanmin(s):g}, {np.nanmax(s):g}]"
        )
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold: got {threshold}, expected a number in [0, 1]")
    if counts is None:
        counts = np.ones((1, s.shape[0]), np.int32)
    if counts.ndim != 2 or counts.shape[1] != s.shape[0]:
        raise ValueError(f"counts: got shape {counts.shape}, expected (B, {s.shape[0]})")
    counts_t = np.ascontiguousarray(counts.T)  # a clip's replicates side by side: fast rows
    per_class = [
        class_scores(y[rows, k], s[rows, k], counts_t, threshold, rows)
        for k in range(s.shape[1])
        for rows in [np.flatnonzero(m[:, k])]
    ]
    return {
        name: np.stack([c[name] for c in per_class], axis=1).reshape(len(counts), s.shape[1])
        for name in METRICS
    }


def check_absent_classes(absent_classes: str) -> None:
    """Refuse a rule that is not one of `ABSENT_CLASSES`."""
    if absent_classes not in ABSENT_CLASSES:
        raise ValueError(
            f"absent_classes: got {absent_classes!r}, expected 'skip' (ours: leave a class "
            "without both labels out of the mean) or 'zero' (the authors': score it 0 in mAP "
            "and ROC-AUC)"
        )


def macro(per_class: np.ndarray, metric: str, absent_classes: str = "skip") -> np.ndarray:
    """The macro mean of `metric` over classes `(B, K)` → `(B,)`, each row's undefined
    (NaN) classes left out ("skip"; NaN where none is defined) or, for mAP and ROC-AUC
    under "zero", counted as 0 (module doc)."""
    check_absent_classes(absent_classes)
    defined = ~np.isnan(per_class)
    total = np.where(defined, per_class, 0.0).sum(axis=1)
    n = defined.sum(axis=1)
    if absent_classes == "zero" and metric in ZEROED:
        n = np.full(len(n), per_class.shape[1])
    means: np.ndarray = np.divide(total, n, out=np.full(len(n), np.nan), where=n > 0)
    return means


def evaluate(
    scores: ArrayLike,
    labels: ArrayLike,
    mask: ArrayLike,
    threshold: float = 0.4,
    absent_classes: str = "skip",
) -> dict[str, float]:
    """Macro metrics of `scores` (sigmoid outputs in [0, 1], `(N, K)`).

    `labels` `(N, K)`: positive where > 0.5; `mask` `(N, K)` bool: True where labelled.
    Returns `mAP`, `ROC-AUC`, `F1`, `F1_pos` and `n_classes` (the classes with both a
    labelled positive and a labelled negative: those the means use under either rule,
    except mAP and ROC-AUC under `absent_classes="zero"`, which divide by all K).
    """
    check_absent_classes(absent_classes)
    per_class = class_metrics(scores, labels, mask, threshold)
    used = ~np.isnan(per_class["mAP"][0])
    if not used.any():
        raise ValueError(
            f"labels, mask: none of the {len(used)} classes has both a labelled positive and "
            "a labelled negative entry, so no metric is defined"
        )
    return {
        **{name: float(macro(v, name, absent_classes)[0]) for name, v in per_class.items()},
        "n_classes": int(used.sum()),
    }
