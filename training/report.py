"""The per-version report folder: metrics.json (with the data-quality report), the PNG plots and
the model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from sklearn.metrics import average_precision_score, roc_auc_score

from service.manifest import CrossValidation, Evaluation, Manifest
from training.model_card import write_card
from training.plots import PLOTS, Curves, has_both_classes, write_plots
from training.quality import DataQuality

__all__ = ["METRICS_FILE", "PLOTS", "Curves", "write_model_card", "write_report"]

METRICS_FILE = "metrics.json"
QUALITY_KEY = "data_quality"


def write_report(
    folder: Path, manifest: Manifest, curves: Curves, quality: DataQuality | None = None
) -> Path:
    """Write metrics.json, every plot and the model card into `folder`; returns the card's path."""
    _check(manifest, curves)
    folder.mkdir(parents=True, exist_ok=True)
    write_plots(folder, manifest, curves)
    document = _metrics_document(manifest, curves)
    if quality is not None:
        document[QUALITY_KEY] = quality.model_dump(mode="json")
    text = json.dumps(document, indent=2, allow_nan=False)
    (folder / METRICS_FILE).write_text(text + "\n", encoding="utf-8")
    return write_model_card(folder, manifest)


def write_model_card(folder: Path, manifest: Manifest) -> Path:
    """(Re)write `folder/model_card.md` from the manifest and the data-quality report saved in
    metrics.json (if any), linking the plots present there."""
    present = [name for name in PLOTS if (folder / name).is_file()]
    return write_card(folder, manifest, present, read_quality(folder))


def read_quality(folder: Path) -> DataQuality | None:
    """The data-quality report saved in `folder/metrics.json`; None for a version without one
    (trained before the checks existed) or whose file cannot be read."""
    try:
        document = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
        return DataQuality.model_validate(document[QUALITY_KEY])
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None


def _check(manifest: Manifest, curves: Curves) -> None:
    """Fail before drawing anything when the predictions cannot belong to this manifest."""
    n, k = len(curves.y_true), len(manifest.labels)
    if curves.probabilities.shape != (n, k):
        raise ValueError(
            f"probabilities have shape {curves.probabilities.shape}, expected ({n}, {k}) "
            f"for {n} rows and labels {manifest.labels}"
        )
    if n and (curves.y_true.min() < 0 or curves.y_true.max() >= k):
        raise ValueError(f"y_true holds class indices outside 0..{k - 1}")
    if curves.true_probability is not None and curves.true_probability.shape != (n,):
        raise ValueError(f"true_probability has shape {curves.true_probability.shape}, not ({n},)")


def _metrics_document(manifest: Manifest, curves: Curves) -> dict[str, Any]:
    return {
        "name": manifest.name,
        "version": manifest.version,
        "kind": manifest.kind,
        "labels": manifest.labels,
        "positive_label": manifest.positive_label,
        "threshold": manifest.threshold,
        "threshold_criterion": manifest.params.get("threshold_criterion"),
        "metrics": _evaluation(manifest.metrics),
        "holdout_metrics": _evaluation(manifest.holdout_metrics),
        "baselines": {b.name: _evaluation(b.metrics) for b in manifest.baselines},
        "cross_validation": _cross_validation(manifest.cross_validation),
        "parity_max_abs_diff": manifest.parity_max_abs_diff,
        "training": _training(curves),
        "per_class": _per_class(manifest, curves),
    }


def _evaluation(evaluation: Evaluation | None) -> dict[str, Any] | None:
    """The manifest's evaluation plus its gaps to the Bayes-optimal figures when they are known."""
    if evaluation is None:
        return None
    document = evaluation.model_dump(mode="json")
    if evaluation.bayes_accuracy is not None:
        document["bayes_accuracy_gap"] = evaluation.bayes_accuracy - evaluation.accuracy
    if evaluation.bayes_roc_auc is not None:
        document["bayes_roc_auc_gap"] = evaluation.bayes_roc_auc - evaluation.roc_auc
    return document


def _cross_validation(cv: CrossValidation | None) -> dict[str, Any] | None:
    """The folds' AUCs of every model with their mean and standard deviation (None when off)."""
    if cv is None:
        return None
    return {
        "folds": cv.folds,
        "seed": cv.seed,
        "rows": cv.rows,
        "roc_auc": {
            model: {"per_fold": scores, "mean": cv.mean(model), "std": cv.std(model)}
            for model, scores in cv.roc_auc.items()
        },
    }


def _training(curves: Curves) -> dict[str, Any]:
    scores = list(curves.validation_score or [])
    best = int(np.argmax(scores)) if scores else None
    return {
        "epochs": len(curves.loss),
        "final_loss": float(curves.loss[-1]) if len(curves.loss) else None,
        "best_validation_score": float(scores[best]) if best is not None else None,
        "best_epoch": best + 1 if best is not None else None,
    }


def _per_class(manifest: Manifest, curves: Curves) -> dict[str, dict[str, Any]]:
    """One-vs-rest figures per class on the plotted sample; AUC and AP are None when undefined."""
    document = {}
    for index, label in enumerate(manifest.labels):
        y = curves.y_true == index
        score = curves.probabilities[:, index]
        defined = has_both_classes(y)
        document[label] = {
            "support": int(y.sum()),
            "roc_auc": float(roc_auc_score(y, score)) if defined else None,
            "average_precision": float(average_precision_score(y, score)) if defined else None,
        }
    return document
