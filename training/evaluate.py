"""Held-out metrics of a classifier, Bayes-optimal ones where the truth is known, the threshold,
and bootstrap intervals of the ROC AUC (of one model, or of the difference between two)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

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
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_LEVEL = 0.95
# Resampled row indices held at once (resamples per chunk x rows): bounds memory to tens of MB.
CHUNK_CELLS = 2_000_000
Probabilities = npt.NDArray[np.float64]
Classes = npt.NDArray[np.int64]
Indices = npt.NDArray[np.intp]


@dataclass(frozen=True)
class AucDifference:
    """AUC(new) - AUC(current) on all rows, and the paired bootstrap interval of that difference."""

    difference: float
    low: float
    high: float


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


def bootstrap_auc_interval(
    y: Classes,
    probabilities: Probabilities,
    seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
) -> tuple[float, float]:
    """Percentile interval of `roc_auc` over stratified bootstrap resamples of the rows."""
    _require_every_class(y, probabilities.shape[1])
    aucs = np.concatenate(
        [
            resampled_aucs(y, probabilities, chunk)
            for chunk in stratified_resamples(y, seed, resamples)
        ]
    )
    return _percentiles(aucs, level)


def paired_auc_difference(
    y: Classes,
    new: Probabilities,
    current: Probabilities,
    seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
) -> AucDifference:
    """AUC(new) - AUC(current), with both models scored on the same resamples (paired), so the
    interval reflects how the two differ rather than how hard the rows are."""
    if new.shape != current.shape:
        raise ValueError(f"probabilities of shape {new.shape} and {current.shape} cannot be paired")
    _require_every_class(y, new.shape[1])
    differences = np.concatenate(
        [
            resampled_aucs(y, new, chunk) - resampled_aucs(y, current, chunk)
            for chunk in stratified_resamples(y, seed, resamples)
        ]
    )
    low, high = _percentiles(differences, level)
    return AucDifference(roc_auc(y, new) - roc_auc(y, current), low, high)


def stratified_resamples(y: Classes, seed: int, resamples: int) -> Iterator[Indices]:
    """Bootstrap resamples as (resamples, rows) index arrays, a chunk at a time: each class's rows
    are drawn with replacement from that class, so every resample keeps the class counts."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y == label) for label in np.unique(y)]
    chunk = max(1, CHUNK_CELLS // max(len(y), 1))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        yield np.concatenate(
            [
                rows[rng.integers(0, len(rows), size=(size, len(rows)), dtype=np.int32)]
                for rows in members
            ],
            axis=1,
        )


def resampled_aucs(
    y: Classes, probabilities: Probabilities, indices: Indices
) -> npt.NDArray[np.float64]:
    """`roc_auc` of each row of `indices` (row numbers into y), without calling scikit-learn once
    per resample: a weighted Mann-Whitney statistic over the sorted distinct scores."""
    columns = [1] if probabilities.shape[1] == 2 else range(probabilities.shape[1])
    drawn = y[indices]
    per_class = [_weighted_auc(probabilities[:, c], drawn == c, indices) for c in columns]
    return np.asarray(np.mean(per_class, axis=0), dtype=np.float64)


def _weighted_auc(
    scores: npt.NDArray[np.float64], positive: npt.NDArray[np.bool_], indices: Indices
) -> npt.NDArray[np.float64]:
    """One-vs-rest AUC per resample: sum over distinct scores of (positives there) x (negatives
    below + half the negatives tied there), over positives x negatives."""
    distinct, group = np.unique(scores, return_inverse=True)
    width = len(distinct)
    flat = group[indices]
    flat += width * np.arange(len(indices))[:, None]  # one bincount for the whole chunk
    shape = (len(indices), width)
    pos = np.bincount(flat[positive], minlength=shape[0] * width).reshape(shape)
    neg = np.bincount(flat[~positive], minlength=shape[0] * width).reshape(shape)
    below = np.cumsum(neg, axis=1) - neg
    pairs = (pos * (below + 0.5 * neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample of one class: nan
        return np.asarray(pairs / (pos.sum(axis=1) * neg.sum(axis=1)), dtype=np.float64)


def _require_every_class(y: Classes, n_classes: int) -> None:
    """ROC AUC needs rows of every class, and no resample has rows of a class the sample lacks."""
    absent = sorted(set(range(n_classes)) - {int(label) for label in np.unique(y)})
    if absent:
        raise ValueError(f"ROC AUC needs rows of every class; none of class {absent}")


def _percentiles(values: npt.NDArray[np.float64], level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)
