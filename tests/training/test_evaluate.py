"""Metrics and the decision threshold, on cases whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import (
    brier,
    choose_threshold,
    evaluate,
    expected_calibration_error,
    predict_classes,
)


def binary(p: list[float]) -> np.ndarray:
    positive = np.asarray(p, dtype=np.float64)
    return np.column_stack([1 - positive, positive])


def test_perfect_binary_classifier() -> None:
    y = np.array([0, 0, 1, 1])
    result = evaluate(y, binary([0.1, 0.2, 0.8, 0.9]), 0.5, "t")
    assert result.roc_auc == 1.0 and result.accuracy == 1.0 and result.f1 == 1.0
    assert result.confusion_matrix == [[2, 0], [0, 2]]
    assert result.bayes_accuracy is None


def test_threshold_is_applied_to_positive_probability() -> None:
    assert predict_classes(binary([0.3, 0.6]), 0.25).tolist() == [1, 1]
    assert predict_classes(binary([0.3, 0.6]), 0.7).tolist() == [0, 0]


def test_multiclass_uses_argmax_and_macro_scores() -> None:
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.5, 0.3, 0.2]])
    result = evaluate(y, p, 0.5, "t")
    assert result.accuracy == 0.75
    assert result.confusion_matrix[2] == [1, 0, 1]
    assert 0 < result.roc_auc <= 1


def test_bayes_figures_come_from_the_true_probability() -> None:
    y = np.array([0, 1, 1, 0])
    truth = np.array([0.2, 0.7, 0.4, 0.6])
    result = evaluate(y, binary([0.1, 0.9, 0.8, 0.2]), 0.5, "t", truth)
    assert result.bayes_accuracy == 0.5
    assert result.bayes_roc_auc == 0.75  # 3 of the 4 positive-negative pairs are ordered


def test_max_f1_threshold_separates_classes() -> None:
    y = np.array([0, 0, 0, 1, 1])
    positive = np.array([0.1, 0.2, 0.3, 0.35, 0.9])
    assert choose_threshold(y, positive, "max_f1") == pytest.approx(0.35)


def test_max_accuracy_prefers_threshold_near_half_on_ties() -> None:
    y = np.array([0, 1])
    positive = np.array([0.1, 0.9])
    threshold = choose_threshold(y, positive, "max_accuracy")
    assert 0.1 < threshold <= 0.9
    assert threshold == pytest.approx(0.5)


def test_calibration_error_is_zero_when_calibrated() -> None:
    y = np.array([0, 1] * 50)
    assert expected_calibration_error(y, binary([0.5] * 100)) == pytest.approx(0.0)
    assert expected_calibration_error(y, binary([0.95] * 100)) == pytest.approx(0.45)


def test_brier_of_certain_wrong_answer_is_one() -> None:
    assert brier(np.array([1]), binary([0.0])) == 1.0
