"""Held-out metrics of a classifier, Bayes-optimal ones where the truth is known, the threshold."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)

from service.manifest import Evaluation

ECE_BINS = 10
Probabilities = npt.NDArray[np.float64]
Classes = npt.NDArray[np.int64]


def predict_classes(probabilities: Probabilities, threshold: float) -> Classes:
    """Binary: positive when P(positive) >= threshold; multi-class: the most probable class."""
    if probabilities.shape[1] == 2:
        return np.asarray(probabilities[:, 1] >= threshold, dtype=np.int64)
    return np.asarray(probabilities.argmax(axis=1), dtype=np.int64)


def choose_threshold(y: Classes, positive: Probabilities, criterion: str) -> float:
    """The threshold on P(positive) that maximises F1 or accuracy on the validation rows."""
    if criterion == "max_f1":
        precision, recall, thresholds = precision_recall_curve(y, positive)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        return float(thresholds[int(np.argmax(f1[:-1]))])
    candidates = np.unique(np.concatenate([positive, [0.5]]))
    accuracy = [float(np.mean((positive >= t) == y)) for t in candidates]
    best = max(accuracy)
    # Among equally accurate thresholds take the one nearest 0.5: it is the least overfitted.
    ties = candidates[np.isclose(accuracy, best)]
    return float(ties[np.argmin(np.abs(ties - 0.5))])


def evaluate(
    y: Classes,
    probabilities: Probabilities,
    threshold: float,
    sample: str,
    true_probability: Probabilities | None = None,
) -> Evaluation:
    """Every metric the manifest and the model card report, on one sample."""
    n_classes = probabilities.shape[1]
    predicted = predict_classes(probabilities, threshold)
    binary = n_classes == 2
    average = "binary" if binary else "macro"
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, predicted, average=average, zero_division=0
    )
    bayes_accuracy = bayes_auc = None
    if true_probability is not None and binary:
        bayes_accuracy = float(accuracy_score(y, (true_probability >= 0.5).astype(np.int64)))
        bayes_auc = float(roc_auc_score(y, true_probability))
    return Evaluation(
        sample=sample,
        rows=len(y),
        roc_auc=roc_auc(y, probabilities),
        accuracy=float(accuracy_score(y, predicted)),
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        log_loss=float(log_loss(y, probabilities, labels=list(range(n_classes)))),
        brier=brier(y, probabilities),
        ece=expected_calibration_error(y, probabilities),
        confusion_matrix=confusion_matrix(y, predicted, labels=list(range(n_classes))).tolist(),
        bayes_accuracy=bayes_accuracy,
        bayes_roc_auc=bayes_auc,
    )


def brier(y: Classes, probabilities: Probabilities) -> float:
    """Brier score of P(positive) for binary tasks; mean squared error over classes otherwise."""
    if probabilities.shape[1] == 2:
        return float(np.mean((probabilities[:, 1] - y) ** 2))
    onehot = np.eye(probabilities.shape[1])[y]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def expected_calibration_error(y: Classes, probabilities: Probabilities) -> float:
    """ECE over equal-width bins of the confidence the model gives its predicted class."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    if probabilities.shape[1] == 2:
        confidence, correct = probabilities[:, 1], y == 1
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    total = 0.0
    for b in range(ECE_BINS):
        members = bins == b
        if members.any():
            total += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(total)


def roc_auc(y: Classes, probabilities: Probabilities) -> float:
    """ROC AUC of the positive class, or one-vs-rest macro AUC for several classes."""
    if probabilities.shape[1] == 2:
        return float(roc_auc_score(y, probabilities[:, 1]))
    return float(
        roc_auc_score(
            y, probabilities, multi_class="ovr", labels=list(range(probabilities.shape[1]))
        )
    )
