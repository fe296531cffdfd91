"""The PNG plots of a version's report: loss, ROC, precision-recall, confusion, calibration."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from service.manifest import Manifest

PLOTS: tuple[str, ...] = (
    "loss_curve.png",
    "roc.png",
    "precision_recall.png",
    "confusion_matrix.png",
    "calibration.png",
)
DPI = 100
FIGSIZE = (6.4, 4.8)
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Curves:
    """What the plots need beyond the manifest: per-epoch history and test-set predictions."""

    loss: Sequence[float]  # MLPClassifier.loss_curve_
    validation_score: Sequence[float] | None  # MLPClassifier.validation_scores_, or None
    y_true: npt.NDArray[np.int64]  # class indices 0..k-1 of the evaluated sample
    probabilities: npt.NDArray[np.float64]  # shape (n, k), columns in manifest.labels order
    true_probability: npt.NDArray[np.float64] | None  # generator's P(positive) per row, or None


def write_plots(folder: Path, manifest: Manifest, curves: Curves) -> list[Path]:
    """Draw every plot of PLOTS into `folder`; returns the paths written."""
    painters: dict[str, Callable[[Axes, Manifest, Curves], None]] = {
        "loss_curve.png": _draw_loss,
        "roc.png": _draw_roc,
        "precision_recall.png": _draw_precision_recall,
        "confusion_matrix.png": _draw_confusion,
        "calibration.png": _draw_calibration,
    }
    paths = []
    for name in PLOTS:
        with _axes(folder / name) as ax:
            painters[name](ax, manifest, curves)
        paths.append(folder / name)
    return paths


def predictions(manifest: Manifest, curves: Curves) -> npt.NDArray[np.int64]:
    """Predicted class indices: the threshold on the positive class for binary, else the argmax."""
    chosen: npt.NDArray[np.bool_ | np.intp]
    if manifest.kind == "binary":
        chosen = curves.probabilities[:, manifest.positive_index] >= manifest.threshold
    else:
        chosen = np.argmax(curves.probabilities, axis=1)
    return chosen.astype(np.int64)


def has_both_classes(y: npt.NDArray[np.bool_]) -> bool:
    """ROC and PR curves are undefined (and sklearn warns) unless positives and negatives occur."""
    return bool(y.any() and not y.all())


@contextmanager
def _axes(path: Path) -> Iterator[Axes]:
    # A bare Figure (no pyplot) keeps no global figure registry, so nothing leaks between reports
    # and drawing is safe off the main thread; savefig renders with Agg, no display needed.
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    yield figure.add_subplot()
    figure.savefig(path, dpi=DPI, format="png")


def _draw_loss(ax: Axes, manifest: Manifest, curves: Curves) -> None:
    epochs = np.arange(1, len(curves.loss) + 1)
    members = int(manifest.params.get("mlp", {}).get("ensemble", 1))
    which = f" (network 1 of {members})" if members > 1 else ""  # every member is alike
    ax.plot(epochs, curves.loss, color="tab:blue", label=f"training loss{which}")
    ax.set(xlabel="epoch", ylabel="training loss", title=_title(manifest, "training"))
    if curves.validation_score is not None and len(curves.validation_score) > 0:
        scores = np.asarray(curves.validation_score, dtype=np.float64)
        other = ax.twinx()
        other.plot(epochs[: len(scores)], scores, color="tab:orange", label="validation accuracy")
        best = int(np.argmax(scores))
        other.axvline(best + 1, color="grey", linestyle=":", label=f"best epoch ({best + 1})")
        other.set_ylabel("validation accuracy")
        lines, labels = ax.get_legend_handles_labels()
        more, more_labels = other.get_legend_handles_labels()
        ax.legend(lines + more, labels + more_labels, loc="center right")
    else:
        ax.legend(loc="upper right")


def _draw_roc(ax: Axes, manifest: Manifest, curves: Curves) -> None:
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    for name, y, score in _one_vs_rest(manifest, curves):
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, label=f"{name} (AUC = {roc_auc_score(y, score):.3f})")
    if manifest.kind == "binary":
        y = curves.y_true == manifest.positive_index
        if curves.true_probability is not None and has_both_classes(y):
            fpr, tpr, _ = roc_curve(y, curves.true_probability)
            auc = roc_auc_score(y, curves.true_probability)
            label = f"Bayes-optimal (AUC = {auc:.3f})"
            ax.plot(fpr, tpr, color="black", linestyle="-.", label=label)
        fpr_at, tpr_at, _ = _operating_point(manifest, curves)
        ax.plot(fpr_at, tpr_at, "o", color="tab:red", label=f"threshold {manifest.threshold:.3g}")
    ax.set(xlabel="false positive rate", ylabel="true positive rate")
    ax.set_title(_title(manifest, "ROC", curves))
    ax.set(xlim=(0, 1), ylim=(0, 1.02), aspect="equal")
    ax.legend(loc="lower right", fontsize="small")


def _draw_precision_recall(ax: Axes, manifest: Manifest, curves: Curves) -> None:
    for name, y, score in _one_vs_rest(manifest, curves):
        precision, recall, _ = precision_recall_curve(y, score)
        ap = average_precision_score(y, score)
        ax.plot(recall, precision, drawstyle="steps-post", label=f"{name} (AP = {ap:.3f})")
    if manifest.kind == "binary":
        _, recall, precision = _operating_point(manifest, curves)
        label = f"threshold {manifest.threshold:.3g}"
        ax.plot(recall, precision, "o", color="tab:red", label=label)
        base_rate = float(np.mean(curves.y_true == manifest.positive_index))
        ax.axhline(base_rate, color="grey", linestyle="--", linewidth=1, label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title=_title(manifest, "precision-recall", curves))
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize="small")


def _draw_confusion(ax: Axes, manifest: Manifest, curves: Curves) -> None:
    k = len(manifest.labels)
    counts = confusion_matrix(curves.y_true, predictions(manifest, curves), labels=np.arange(k))
    image = ax.imshow(counts, cmap="Blues")
    dark = counts.max() / 2
    for (row, column), count in np.ndenumerate(counts):
        color = "white" if count > dark else "black"
        ax.text(column, row, str(count), ha="center", va="center", color=color, fontsize="small")
    ax.set_xticks(np.arange(k), manifest.labels, rotation=45 if k > 4 else 0)
    ax.set_yticks(np.arange(k), manifest.labels)
    ax.set(xlabel=f"predicted {manifest.target}", ylabel=f"true {manifest.target}")
    at = f" at threshold {manifest.threshold:.3g}" if manifest.kind == "binary" else ""
    ax.set_title(_title(manifest, f"confusion matrix{at}", curves))
    ax.figure.colorbar(image, ax=ax, shrink=0.8)


def _draw_calibration(ax: Axes, manifest: Manifest, curves: Curves) -> None:
    if manifest.kind == "binary":
        score = curves.probabilities[:, manifest.positive_index]
        hit = (curves.y_true == manifest.positive_index).astype(np.int64)
        xlabel = f"predicted P({manifest.target} = {manifest.positive_label})"
        ylabel = "observed frequency"
    else:
        score = curves.probabilities.max(axis=1)
        hit = (predictions(manifest, curves) == curves.y_true).astype(np.int64)
        xlabel, ylabel = "confidence (highest class probability)", "accuracy"
    observed, predicted = calibration_curve(hit, score, n_bins=CALIBRATION_BINS)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    ax.plot(predicted, observed, "o-", color="tab:blue", label="model")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=_title(manifest, "reliability", curves))
    ax.set(xlim=(0, 1), ylim=(0, 1.02), aspect="equal")
    ax.legend(loc="upper left", fontsize="small")


def _one_vs_rest(
    manifest: Manifest, curves: Curves
) -> Iterator[tuple[str, npt.NDArray[np.bool_], npt.NDArray[np.float64]]]:
    """(label, is-this-class, its probability) per curve: the positive class only for binary."""
    binary = manifest.kind == "binary"
    indices = [manifest.positive_index] if binary else range(len(manifest.labels))
    for index in indices:
        y = curves.y_true == index
        if has_both_classes(y):
            yield manifest.labels[index], y, curves.probabilities[:, index]


def _operating_point(manifest: Manifest, curves: Curves) -> tuple[float, float, float]:
    """(false positive rate, recall, precision) of the decisions made at the binary threshold."""
    predicted = predictions(manifest, curves) == manifest.positive_index
    actual = curves.y_true == manifest.positive_index
    hits = int(np.sum(predicted & actual))
    false_alarms = int(np.sum(predicted & ~actual))
    fpr = false_alarms / max(int((~actual).sum()), 1)
    return fpr, hits / max(int(actual.sum()), 1), hits / max(int(predicted.sum()), 1)


def _title(manifest: Manifest, what: str, curves: Curves | None = None) -> str:
    rows = f", {len(curves.y_true):,} rows" if curves is not None else ""
    # Two lines: a long task title plus version and sample would be clipped on one.
    return f"{manifest.title or manifest.name} ({manifest.version})\n{what}{rows}"
