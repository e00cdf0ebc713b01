"""Bootstrap statistics: the weighted metrics equal explicit resampling, the interval covers
a known population AP, the paired test finds a planted difference and not a null one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as st
from sklearn.metrics import average_precision_score

from east_ray.analysis.metrics import METRICS, evaluate
from east_ray.analysis.stats import (
    ScoredClips,
    bootstrap_ci,
    class_ap,
    clip_counts,
    paired_bootstrap,
    point,
    replicates,
)
from east_ray.errors import BadValueError

PREVALENCE, SHIFT = 0.3, 1.5  # positives' scores are sigmoid(N(SHIFT, 1)), negatives' N(0, 1)


def _clips(
    rng: np.random.Generator, n: int, k: int, *, labelled: float = 1.0, name: str = "run"
) -> ScoredClips:
    y = rng.random((n, k)) < PREVALENCE
    x = rng.standard_normal((n, k)) + SHIFT * y
    mask = rng.random((n, k)) < labelled
    return ScoredClips(
        clip_ids=np.array([f"clip{i:04d}" for i in range(n)]),
        classes=tuple(f"class{j}" for j in range(k)),
        scores=1 / (1 + np.exp(-x)),
        labels=np.where(mask, y.astype(float), 0.5),  # unlabelled entries hold 0.5 (OpenMIC)
        mask=mask,
        source=name,
    )


def _population_ap() -> float:
    """AP of the generating process: the mean, over a positive's score t, of the precision
    at threshold t, π·S₁(t) / (π·S₁(t) + (1 − π)·S₀(t)) (AP is invariant to the sigmoid)."""

    def precision_at(t: float) -> float:
        s1, s0 = st.norm.sf(t - SHIFT), st.norm.sf(t)
        precision = PREVALENCE * s1 / (PREVALENCE * s1 + (1 - PREVALENCE) * s0)
        return float(precision * st.norm.pdf(t - SHIFT))

    return float(integrate.quad(precision_at, -12, 12)[0])


@pytest.mark.parametrize("absent_classes", ["skip", "zero"])
def test_weighted_metrics_equal_the_metrics_of_the_resampled_test_set(absent_classes: str) -> None:
    rng = np.random.default_rng(0)
    clips = _clips(rng, 120, 4, labelled=0.6)
    # float16 scores tie, as in the stored files; a class with few labels may lose its
    # positives in a replicate and must then be left out (or scored 0), as evaluate does
    rare = clips.labels.copy()  # class 3: one labelled positive, lost by some replicates
    rare[:, 3] = np.where(clips.mask[:, 3], 0.0, 0.5)
    rare[np.flatnonzero(clips.mask[:, 3])[0], 3] = 1.0
    clips = ScoredClips(
        clips.clip_ids,
        clips.classes,
        clips.scores.astype(np.float16).astype(np.float64),
        rare,
        clips.mask,
    )
    counts = clip_counts(120, 25, rng)
    got = replicates(clips, counts, absent_classes)
    lost = 0
    for b in range(25):
        drawn = np.repeat(np.arange(120), counts[b])
        want = evaluate(
            clips.scores[drawn], clips.labels[drawn], clips.mask[drawn], 0.4, absent_classes
        )
        lost += want["n_classes"] < 4
        for metric in METRICS:
            assert got[metric][b] == pytest.approx(want[metric], abs=1e-12), (metric, b)
    assert lost > 0  # the rule was exercised: some replicate lost a class's positives
    whole = evaluate(clips.scores, clips.labels, clips.mask, 0.4, absent_classes)
    assert point(clips, absent_classes) == pytest.approx(
        {m: v for m, v in whole.items() if m in METRICS}
    )


def test_interval_covers_the_population_ap_about_95_percent_of_the_time() -> None:
    """200 independent test sets (500 clips, 2 classes) of one process, each with its own
    95% interval (B = 300). With a true coverage of 0.95 the share of covering intervals
    has a binomial SD of 1.5 points; the percentile bootstrap of AP undercovers slightly at
    these sizes (it does not correct the estimate's small bias; 0.93 here, 0.91-0.93 with
    300 clips or B = 500), so we accept 0.95 ± 3 SD widened by 2 points below:
    [0.885, 1.0]. Seeded, so the outcome is the same every run."""
    population = _population_ap()
    covered = []
    estimates = []
    for r in range(200):
        rng = np.random.default_rng(1000 + r)
        interval = bootstrap_ci([_clips(rng, 500, 2)], "mAP", n_boot=300, seed=r)
        covered.append(interval.low <= population <= interval.high)
        estimates.append(interval.estimate)
        assert interval.low <= interval.estimate <= interval.high
    assert abs(np.mean(estimates) - population) < 0.01  # the process is what we think it is
    assert 0.885 <= np.mean(covered) <= 1.0, np.mean(covered)


def test_several_seeds_widen_the_interval_and_copies_of_one_seed_do_not() -> None:
    rng = np.random.default_rng(3)
    run = _clips(rng, 300, 3)
    alone = bootstrap_ci([run], n_boot=400, seed=9)
    assert bootstrap_ci([run, run, run], n_boot=400, seed=9) == alone
    # seeds that disagree (a seed is the run with its scores shuffled to varying degrees)
    seeds = []
    for noise in (0.0, 1.0, 2.5):
        x = np.log(run.scores / (1 - run.scores)) + noise * rng.standard_normal(run.scores.shape)
        seeds.append(
            ScoredClips(run.clip_ids, run.classes, 1 / (1 + np.exp(-x)), run.labels, run.mask)
        )
    spread = bootstrap_ci(seeds, n_boot=400, seed=9)
    estimates = [point(s)["mAP"] for s in seeds]
    assert spread.estimate == pytest.approx(np.mean(estimates))
    assert spread.high - spread.low > 2 * (alone.high - alone.low)
    assert spread.low < spread.estimate < spread.high


def test_paired_test_finds_a_planted_difference() -> None:
    rng = np.random.default_rng(4)
    base = _clips(rng, 400, 4, labelled=0.5, name="baseline")
    y = base.labels > 0.5
    better = ScoredClips(
        base.clip_ids,
        base.classes,
        np.clip(base.scores + 0.15 * np.where(y, 1.0, -1.0), 0, 1),  # the baseline plus signal
        base.labels,
        base.mask,
        source="system",
    )
    test = paired_bootstrap([better], [base], "mAP", n_boot=500, seed=1)
    assert test.diff == pytest.approx(point(better)["mAP"] - point(base)["mAP"])
    assert test.diff > 0 and 0 < test.low < test.high
    assert test.p_value == pytest.approx(2 / 501)  # no replicate at or below zero
    worse = paired_bootstrap([base], [better], "mAP", n_boot=500, seed=1)
    assert worse.diff == pytest.approx(-test.diff) and worse.high < 0 and worse.p_value < 0.05


def test_paired_test_does_not_flag_identical_or_reordered_systems() -> None:
    rng = np.random.default_rng(5)
    base = _clips(rng, 300, 3, name="baseline")
    order = rng.permutation(300)  # the same clips in another row order
    shuffled = ScoredClips(
        base.clip_ids[order],
        base.classes,
        base.scores[order],
        base.labels[order],
        base.mask[order],
        source="system",
    )
    for metric in METRICS:
        test = paired_bootstrap([shuffled], [base], metric, n_boot=300, seed=2)
        assert (test.diff, test.low, test.high, test.p_value) == (0.0, 0.0, 0.0, 1.0)
    # a small random perturbation: a difference within noise, CI holding 0
    x = np.log(base.scores / (1 - base.scores)) + 0.05 * rng.standard_normal(base.scores.shape)
    noisy = ScoredClips(base.clip_ids, base.classes, 1 / (1 + np.exp(-x)), base.labels, base.mask)
    test = paired_bootstrap([noisy], [base], "mAP", n_boot=300, seed=2)
    assert test.low < 0 < test.high and test.p_value > 0.05


def test_paired_test_refuses_other_clips_or_classes() -> None:
    rng = np.random.default_rng(6)
    base = _clips(rng, 50, 2, name="results/a/test_scores.parquet")
    fewer = ScoredClips(
        base.clip_ids[:-1],
        base.classes,
        base.scores[:-1],
        base.labels[:-1],
        base.mask[:-1],
        source="results/b/test_scores.parquet",
    )
    with pytest.raises(
        BadValueError,
        match=r"its 50 test clips are not results/b/test_scores.parquet.s 49",
    ):
        paired_bootstrap([fewer], [base], n_boot=10)
    renamed = ScoredClips(
        np.array([f"other{i}" for i in range(50)]),
        base.classes,
        base.scores,
        base.labels,
        base.mask,
    )
    with pytest.raises(BadValueError, match=r"missing here: \['clip0000'"):
        paired_bootstrap([base], [renamed], n_boot=10)
    other_classes = ScoredClips(base.clip_ids, ("x", "y"), base.scores, base.labels, base.mask)
    with pytest.raises(BadValueError, match=r"classes \['x', 'y'\] differ"):
        paired_bootstrap([base], [other_classes], n_boot=10)
    with pytest.raises(BadValueError, match="metric: got 'AP'"):
        paired_bootstrap([base], [base], "AP", n_boot=10)


def test_class_ap_equals_sklearn_on_the_labelled_entries() -> None:
    rng = np.random.default_rng(7)
    clips = _clips(rng, 200, 5, labelled=0.5)
    clips.labels[:, 3] = np.where(clips.mask[:, 3], 0.0, 0.5)  # no labelled positive
    got = class_ap(clips)
    for k in range(5):
        labelled = clips.mask[:, k]
        if k == 3:
            assert np.isnan(got[k])
            continue
        y, s = clips.labels[labelled, k] > 0.5, clips.scores[labelled, k]
        assert got[k] == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_scored_clips_check_their_shapes() -> None:
    rng = np.random.default_rng(8)
    clips = _clips(rng, 10, 2, name="x.parquet")
    with pytest.raises(BadValueError, match=r"x.parquet: scores has shape \(10, 3\)"):
        ScoredClips(
            clips.clip_ids,
            clips.classes,
            np.zeros((10, 3)),
            clips.labels,
            clips.mask,
            source="x.parquet",
        )
    with pytest.raises(BadValueError, match="clip ids repeat"):
        ids = clips.clip_ids.copy()
        ids[1] = ids[0]
        ScoredClips(ids, clips.classes, clips.scores, clips.labels, clips.mask)
