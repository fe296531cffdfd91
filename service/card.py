"""What the web page's model card shows about a served version, read from its manifest alone."""

from __future__ import annotations

from typing import Any

from service.model import LoadedModel

# The report plots training writes for every version, in the order the card shows them.
PLOTS: dict[str, str] = {
    "loss_curve.png": "Loss curve (training loss and validation score per epoch)",
    "roc.png": "ROC curve",
    "precision_recall.png": "Precision-recall curve",
    "confusion_matrix.png": "Confusion matrix on the test rows",
    "calibration.png": "Calibration: predicted probability against observed frequency",
}
REPORT_FOLDER = "report"


def model_card(model: LoadedModel) -> dict[str, Any]:
    """Version, provenance, threshold, metrics (and the Bayes-optimal ones) and the plots found."""
    manifest = model.manifest
    return {
        "name": manifest.name,
        "title": manifest.title,
        "description": manifest.description,
        "version": manifest.version,
        "created_at": manifest.created_at.isoformat(),
        "loaded_at": model.loaded_at.isoformat(),
        "kind": manifest.kind,
        "target": manifest.target,
        "labels": manifest.labels,
        "positive_label": manifest.positive_label,
        "threshold": manifest.threshold,
        "threshold_criterion": manifest.params.get("threshold_criterion"),
        "data": manifest.data.model_dump(mode="json", exclude={"sha256"}),
        "metrics": manifest.metrics.model_dump(mode="json"),
        "holdout_metrics": (
            manifest.holdout_metrics.model_dump(mode="json") if manifest.holdout_metrics else None
        ),
        "parity_max_abs_diff": manifest.parity_max_abs_diff,
        "plots": [
            {"file": name, "title": title, "url": plot_url(model, name)}
            for name, title in PLOTS.items()
            if (model.path / REPORT_FOLDER / name).is_file()
        ],
    }


def plot_url(model: LoadedModel, name: str) -> str:
    """Versioned, so a browser may cache a plot for good: a version folder never changes."""
    return f"/web/models/{model.name}/versions/{model.version}/report/{name}"
