"""`evaluate` against scikit-learn computed class by class on the labelled entries."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from east_ray.analysis.metrics import evaluate, macro


def _partially_labelled(seed: int, n: int = 200, k: int = 6) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, k)) < 0.3).astype(np.float64)
    scores = np.clip(0.5 * labels + 0.6 * rng.random((n, k)), 0, 1)
    mask = rng.random((n, k)) < 0.6
    labels[~mask] = 0.5  # OpenMIC marks unobserved entries with exactly 0.5
    return scores, labels, mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_equals_sklearn_per_class_on_labelled_entries(seed: int) -> None:
    scores, labels, mask = _partially_labelled(seed)
    got = evaluate(scores, labels, mask, threshold=0.4)
    ap, auc, f1, f1_pos = [], [], [], []
    for k in range(scores.shape[1]):
        y = labels[mask[:, k], k] > 0.5
        s = scores[mask[:, k], k]
        ap.append(average_precision_score(y, s))
        auc.append(roc_auc_score(y, s))
        pred = (s > 0.4).astype(int)
        pos = f1_score(y.astype(int), pred)
        neg = f1_score(1 - y.astype(int), 1 - pred)
        f1_pos.append(pos)
        f1.append((pos + neg) / 2)
    assert got["n_classes"] == scores.shape[1]
    assert got["mAP"] == pytest.approx(np.mean(ap), abs=1e-12)
    assert got["ROC-AUC"] == pytest.approx(np.mean(auc), abs=1e-12)
    assert got["F1"] == pytest.approx(np.mean(f1), abs=1e-12)
    assert got["F1_pos"] == pytest.approx(np.mean(f1_pos), abs=1e-12)


def test_unlabelled_entries_do_not_count() -> None:
    scores, labels, mask = _partially_labelled(3)
    before = evaluate(scores, labels, mask)
    scrambled = scores.copy()
    scrambled[~mask] = 1.0 - scrambled[~mask]
    assert evaluate(scrambled, labels, mask) == before


def test_threshold_is_a_parameter() -> None:
    scores, labels, mask = _partially_labelled(4)
    assert evaluate(scores, labels, mask, 0.4)["F1"] != evaluate(scores, labels, mask, 0.6)["F1"]
    assert evaluate(scores, labels, mask, 0.4)["mAP"] == evaluate(scores, labels, mask, 0.6)["mAP"]


def test_class_without_positives_or_negatives_is_left_out_and_counted() -> None:
    scores, labels, mask = _partially_labelled(5)
    labels[:, 1] = np.where(mask[:, 1], 0.0, 0.5)  # no labelled positive
    labels[:, 4] = np.where(mask[:, 4], 1.0, 0.5)  # no labelled negative
    got = evaluate(scores, labels, mask)
    keep = [0, 2, 3, 5]
    assert got["n_classes"] == 4
    ref = evaluate(scores[:, keep], labels[:, keep], mask[:, keep])
    assert got == pytest.approx(ref)
    assert all(np.isfinite(v) for v in got.values())


def test_bad_inputs_are_named() -> None:
    scores, labels, mask = _partially_labelled(6)
    with pytest.raises(ValueError, match="scores: expected finite sigmoid outputs"):
        evaluate(scores * 4 - 2, labels, mask)
    with pytest.raises(ValueError, match="got shapes"):
        evaluate(scores[:, :3], labels, mask)
    with pytest.raises(ValueError, match="labels, mask: none of the 6 classes"):
        evaluate(scores, np.zeros_like(labels), mask)


@pytest.mark.parametrize("seed", range(5))
def test_ap_and_auc_with_ties_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.2
    y[0], y[1] = True, False
    s = np.round(rng.random(300), 1)  # many ties
    from east_ray.analysis.metrics import average_precision, roc_auc

    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_f1_compares_float32_scores_with_the_threshold_in_float32() -> None:
    # one class, two positives and two negatives; one positive scores exactly float32(0.4),
    # which is above 0.4 in float64 but not in float32, where the authors compare
    s32 = np.array([[0.9], [np.float32(0.4)], [0.1], [0.2]], dtype=np.float32)
    y, m = np.array([[1.0], [1.0], [0.0], [0.0]]), np.ones((4, 1), bool)
    f1_pos = evaluate(s32, y, m, threshold=0.4)["F1_pos"]
    assert f1_pos == pytest.approx(2 / 3)  # the float32(0.4) positive is missed: P 1, R 1/2
    assert evaluate(s32.astype(np.float64), y, m, threshold=0.4)["F1_pos"] == pytest.approx(1.0)


def _two_absent_of_twenty(seed: int) -> tuple[np.ndarray, ...]:
    """20 classes of which 1 has no labelled positive and 7 no labelled negative."""
    scores, labels, mask = _partially_labelled(seed, n=150, k=20)
    labels[:, 1] = np.where(mask[:, 1], 0.0, 0.5)
    labels[:, 7] = np.where(mask[:, 7], 1.0, 0.5)
    return scores, labels, mask


def test_the_authors_rule_scores_a_class_without_both_labels_zero() -> None:
    scores, labels, mask = _two_absent_of_twenty(7)
    ours = evaluate(scores, labels, mask)
    authors = evaluate(scores, labels, mask, absent_classes="zero")
    assert ours["n_classes"] == authors["n_classes"] == 18
    for metric in ("mAP", "ROC-AUC"):  # 0 for the two classes: a sum over 20, not 18
        assert authors[metric] == pytest.approx(ours[metric] * 18 / 20, rel=1e-14)
    for metric in ("F1", "F1_pos"):  # the authors' difference is in mAP and ROC-AUC only
        assert authors[metric] == ours[metric]
    per_class = np.array([[0.5, np.nan, 1.0, np.nan]])
    assert macro(per_class, "mAP", "zero")[0] == 0.375
    assert macro(per_class, "F1", "zero")[0] == macro(per_class, "F1")[0] == 0.75
    with pytest.raises(ValueError, match="absent_classes: got 'drop', expected 'skip'"):
        evaluate(scores, labels, mask, absent_classes="drop")


def test_the_rule_cannot_change_which_epoch_is_selected() -> None:
    """On one validation split the authors' rule is ours × K_present / K for every epoch,
    so the best epoch by validation mAP (the trainer keeps ours) is the same under both."""
    _, labels, mask = _two_absent_of_twenty(8)
    rng = np.random.default_rng(8)
    skill = [0.1, 0.6, 0.3, 1.5, 0.5]  # epoch 3 separates the classes best
    signal = np.where(labels > 0.5, 1.0, -1.0)
    epochs = [1 / (1 + np.exp(-(s * signal + rng.standard_normal(labels.shape)))) for s in skill]
    ours = [evaluate(e, labels, mask)["mAP"] for e in epochs]
    authors = [evaluate(e, labels, mask, absent_classes="zero")["mAP"] for e in epochs]
    assert np.argmax(ours) == np.argmax(authors) == 3
    assert np.allclose(np.array(authors) / np.array(ours), 18 / 20, rtol=1e-14)
