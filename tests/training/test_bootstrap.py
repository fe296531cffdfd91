"""Bootstrap intervals of the ROC AUC: the fast statistic is scikit-learn's AUC, resample by
resample, and the intervals behave as intervals should."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from training.evaluate import (
    bootstrap_auc_interval,
    paired_auc_difference,
    resampled_aucs,
    roc_auc,
    stratified_resamples,
)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def scored(rows: int, seed: int, classes: int = 2, ties: bool = False) -> tuple[Ints, Floats]:
    """Labels and probabilities of an informative but imperfect model (AUC about 0.8); with
    `ties`, whole-number logits, so many rows share each probability."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=rows)
    logits = rng.normal(size=(rows, classes)) + 1.2 * np.eye(classes)[y]
    if ties:
        logits = np.round(logits)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y.astype(np.int64), probabilities


def noisier(probabilities: Floats, scale: float, seed: int) -> Floats:
    """The same model's probabilities with seeded noise on the logits: a worse ranking."""
    rng = np.random.default_rng(seed)
    logits = np.log(probabilities) + rng.normal(scale=scale, size=probabilities.shape)
    return np.asarray(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))


def whole(y: Ints) -> npt.NDArray[np.intp]:
    """Every row once: the unit-weight "resample"."""
    return np.arange(len(y))[None, :]


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 1), min_size=2, max_size=60).filter(lambda v: len(set(v)) == 2),
    data=st.data(),
)
def test_fast_auc_with_unit_weights_is_sklearns_auc_with_ties(
    labels: list[int], data: st.DataObject
) -> None:
    # Scores from a handful of values, so most rows are tied with others.
    scores = data.draw(st.lists(st.sampled_from([0.1, 0.25, 0.5, 0.75]), min_size=len(labels)))
    y = np.array(labels, dtype=np.int64)
    positive = np.array(scores[: len(y)])
    probabilities = np.column_stack([1 - positive, positive])
    fast = resampled_aucs(y, probabilities, whole(y))
    assert fast.shape == (1,)
    assert fast[0] == pytest.approx(roc_auc_score(y, positive), abs=1e-12)


def test_fast_auc_with_unit_weights_is_sklearns_multiclass_ovr_auc() -> None:
    y, probabilities = scored(500, seed=3, classes=4, ties=True)
    assert len(np.unique(probabilities[:, 0])) < 200  # of 500 rows
    expected = roc_auc_score(y, probabilities, multi_class="ovr", labels=[0, 1, 2, 3])
    assert resampled_aucs(y, probabilities, whole(y))[0] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("classes", [2, 3])
def test_each_fast_resample_auc_is_sklearns_auc_of_those_rows(classes: int) -> None:
    y, probabilities = scored(300, seed=5, classes=classes, ties=True)
    indices = next(stratified_resamples(y, seed=11, resamples=8))
    fast = resampled_aucs(y, probabilities, indices)
    naive = [roc_auc(y[rows], probabilities[rows]) for rows in indices]
    np.testing.assert_allclose(fast, naive, rtol=0, atol=1e-12)
    assert len(set(fast.tolist())) > 1  # the resamples really differ


def test_resamples_keep_every_class_count() -> None:
    y, _ = scored(301, seed=2, classes=3)
    for chunk in stratified_resamples(y, seed=0, resamples=20):
        for rows in chunk:
            np.testing.assert_array_equal(np.bincount(y[rows], minlength=3), np.bincount(y))


def test_resamples_come_in_bounded_chunks_and_add_up() -> None:
    y, _ = scored(20_000, seed=0)
    chunks = list(stratified_resamples(y, seed=0, resamples=1000))
    assert len(chunks) > 1 and max(len(c) for c in chunks) * len(y) <= 2_000_000
    assert sum(len(c) for c in chunks) == 1000


def test_interval_contains_the_estimate_and_narrows_with_more_rows() -> None:
    widths = []
    for rows in (400, 4000):
        y, probabilities = scored(rows, seed=1)
        low, high = bootstrap_auc_interval(y, probabilities, seed=0)
        assert low < roc_auc(y, probabilities) < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # about 1/sqrt(10) as wide


def test_interval_is_the_same_for_the_same_seed_only() -> None:
    y, probabilities = scored(1000, seed=4, classes=3)
    first = bootstrap_auc_interval(y, probabilities, seed=7, resamples=200)
    assert bootstrap_auc_interval(y, probabilities, seed=7, resamples=200) == first
    assert bootstrap_auc_interval(y, probabilities, seed=8, resamples=200) != first


def test_wider_level_gives_a_wider_interval() -> None:
    y, probabilities = scored(1000, seed=4)
    low95, high95 = bootstrap_auc_interval(y, probabilities, seed=0, level=0.95)
    low50, high50 = bootstrap_auc_interval(y, probabilities, seed=0, level=0.5)
    assert low95 < low50 < high50 < high95


def test_paired_difference_of_a_model_with_itself_is_exactly_zero() -> None:
    y, probabilities = scored(2000, seed=6, classes=3)
    result = paired_auc_difference(y, probabilities, probabilities.copy(), seed=0)
    assert (result.difference, result.low, result.high) == (0.0, 0.0, 0.0)


def test_paired_difference_of_a_clearly_worse_model_is_below_zero() -> None:
    y, current = scored(2000, seed=6)
    new = noisier(current, scale=1.0, seed=9)
    result = paired_auc_difference(y, new, current, seed=0)
    assert result.difference == pytest.approx(roc_auc(y, new) - roc_auc(y, current))
    assert result.low < result.difference < result.high < 0
    swapped = paired_auc_difference(y, current, new, seed=0)
    assert swapped.difference == -result.difference and swapped.low > 0


def test_pairing_makes_the_difference_interval_narrower_than_unpaired() -> None:
    """Both models find the same rows hard: pairing removes that shared variation."""
    y, current = scored(2000, seed=6)
    new = noisier(current, scale=0.3, seed=9)
    paired = paired_auc_difference(y, new, current, seed=0)
    low_new, high_new = bootstrap_auc_interval(y, new, seed=1)
    low_cur, high_cur = bootstrap_auc_interval(y, current, seed=2)
    assert paired.high - paired.low < ((high_new - low_new) + (high_cur - low_cur)) / 4


def test_bootstrap_refuses_rows_without_every_class() -> None:
    y, probabilities = scored(100, seed=0, classes=3)
    keep = y != 2
    with pytest.raises(ValueError, match=r"none of class \[2\]"):
        bootstrap_auc_interval(y[keep], probabilities[keep], seed=0)


def test_paired_difference_refuses_probabilities_of_different_shapes() -> None:
    y, probabilities = scored(100, seed=0, classes=3)
    with pytest.raises(ValueError, match="cannot be paired"):
        paired_auc_difference(y, probabilities, probabilities[:, :2], seed=0)
