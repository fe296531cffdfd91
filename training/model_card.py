"""The Markdown model card of a version, rendered from its manifest and data-quality report."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from service.manifest import (
    NETWORK,
    Baseline,
    CrossValidation,
    DataInfo,
    Evaluation,
    Feature,
    Manifest,
)
from training.quality import DataQuality

CARD_FILE = "model_card.md"
GENERATED_PREFIX = "generated:"
PLOT_TITLES = {
    "loss_curve.png": "Training loss and validation accuracy per epoch",
    "roc.png": "ROC curve",
    "precision_recall.png": "Precision-recall curve",
    "confusion_matrix.png": "Confusion matrix",
    "calibration.png": "Reliability diagram",
}
METRIC_ROWS: tuple[tuple[str, str], ...] = (
    ("roc_auc", "ROC AUC"),
    ("accuracy", "Accuracy"),
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("f1", "F1"),
    ("log_loss", "Log loss"),
    ("brier", "Brier score"),
    ("ece", "Expected calibration error"),
)
# Closer than this in ROC AUC, the network and the best baseline are "level".
LEVEL_WITHIN = 0.001
CRITERIA = {  # the values of TaskSpec.threshold_criterion (training/spec.py)
    "max_f1": "maximises F1 of the positive class on {rows}",
    "max_accuracy": "maximises accuracy on {rows}",
    "fixed": "comes from the task spec rather than being tuned",
}


def render_model_card(
    manifest: Manifest, plots: Sequence[str], quality: DataQuality | None = None
) -> str:
    """The whole card; `plots` are the PNG file names present beside it, linked relatively."""
    sections = [
        _header(manifest),
        _intended_use(manifest),
        _data(manifest.data, manifest.params),
        _quality(quality),
        _features(manifest.features),
        _missing_values(manifest),
        _parameters(manifest.params),
        _threshold(manifest),
        _metrics(manifest),
        _comparison(manifest),
        _export(manifest),
        _limitations(manifest),
        _plots(plots),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def write_card(
    folder: Path, manifest: Manifest, plots: Sequence[str], quality: DataQuality | None = None
) -> Path:
    """Write `folder/model_card.md`, creating the folder if needed."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CARD_FILE
    path.write_text(render_model_card(manifest, plots, quality), encoding="utf-8")
    return path


def _header(manifest: Manifest) -> str:
    title = manifest.title or manifest.name
    return "\n".join(
        [
            f"# Model card: {title}",
            "",
            f"{_describe(manifest)} {_model_sentence(manifest)}",
            "",
            f"- **Task id:** `{manifest.name}`",
            f"- **Version:** `{manifest.version}`",
            f"- **Created:** {manifest.created_at.isoformat()}",
        ]
    )


def _describe(manifest: Manifest) -> str:
    if manifest.description:
        return manifest.description.rstrip(".") + "."
    return f"Predicts `{manifest.target}` from {len(manifest.features)} input features."


def _model_sentence(manifest: Manifest) -> str:
    labels = ", ".join(f"`{label}`" for label in manifest.labels)
    hidden = manifest.params.get("hidden_layer_sizes")
    network = f" with hidden layers {_value(hidden)}" if hidden is not None else ""
    return (
        f"It is a {manifest.kind} classifier (a scikit-learn multilayer perceptron{network}, "
        f"served as ONNX) of `{manifest.target}` into {labels}, and returns one probability per "
        f"class together with the predicted label."
    )


def _intended_use(manifest: Manifest) -> str:
    if manifest.kind == "binary":
        decision = (
            f"A record is labelled `{manifest.positive_label}` when its probability reaches "
            f"{_number(manifest.threshold)}; callers with other costs of error may apply their own "
            f"threshold to the returned probability."
        )
    else:
        decision = "The predicted label is the class with the highest probability."
    return "\n".join(
        [
            "## Intended use",
            "",
            f"Estimating, for records described by the features below, how likely each value of "
            f"`{manifest.target}` is: a screening or ranking aid whose output a person reviews. "
            f"{decision}",
            "",
            "## Out-of-scope use",
            "",
            "- Records outside the feature domains below (the service rejects them) or from a "
            "population unlike the training data.",
            "- Automated decisions with legal, financial or similarly significant effects on a "
            "person without human review.",
            "- Reading the model's weights or probabilities as causal effects of the features.",
        ]
    )


def _data(data: DataInfo, params: dict[str, Any]) -> str:
    rows = [
        ("Source", f"`{data.source}`"),
        ("Fingerprint (sha256)", f"`{data.sha256}`"),
        ("Rows", f"{data.rows:,}"),
        ("Train / validation / test rows", _split(data)),
        ("Random seed", str(data.seed)),
    ]
    if "fitted_rows" in params:  # the kept fit uses the training and validation rows together
        rows.insert(4, ("This model was fitted on", f"{params['fitted_rows']:,} rows"))
    return "## Data\n\n" + _table(["Item", "Value"], rows)


def _quality(quality: DataQuality | None) -> str:
    if quality is None:
        return ""
    rows = max(quality.rows, 1)
    missing = {name: rate for name, rate in quality.missing_rate.items() if rate > 0}
    checks = [
        ("Duplicate rows", f"{quality.duplicate_rows:,} ({quality.duplicate_rows / rows:.1%})"),
        (
            "Rows sharing their features with a row of another label",
            f"{quality.conflicting_rows:,}",
        ),
        ("Constant columns", _code_list(quality.constant_columns)),
        (
            "Missing values",
            ", ".join(f"`{name}` {rate:.1%}" for name, rate in missing.items()) or "none",
        ),
        (
            "Class balance",
            ", ".join(
                f"`{label}` {n:,} ({n / rows:.1%})" for label, n in quality.class_counts.items()
            ),
        ),
        ("Declared float, whole numbers only", _code_list(quality.whole_number_columns)),
        ("Values from 0 to 1 (fractions)", _code_list(quality.fraction_columns)),
        ("Rates from 0 to 100 (percentages)", _code_list(quality.percent_columns)),
    ]
    intro = (
        f"Checked on all {quality.rows:,} rows (every split) before training. These are warnings: "
        "the model was trained on the data as it is."
    )
    if quality.warnings:
        found = "Warnings:\n\n" + "\n".join(f"- {warning}" for warning in quality.warnings)
    else:
        found = "No warnings."
    return "\n\n".join(["## Data quality", intro, _table(["Check", "Found"], checks), found])


def _code_list(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names) or "none"


def _split(data: DataInfo) -> str:
    return f"{data.train_rows:,} / {data.validation_rows:,} / {data.test_rows:,}"


def _features(features: Iterable[Feature]) -> str:
    header = ["Feature", "Label", "Type", "Unit", "Domain", "Seen in training", "Description"]
    rows = [
        (
            f"`{f.name}`",
            f.label,
            f"{f.type} (as splines)" if f.transform == "spline" else f.type,
            f.unit or "",
            _domain(f),
            _span(f.train_min, f.train_max),
            f.description,
        )
        for f in features
    ]
    intro = "In input order (the ONNX input names), each with the label the web page shows:"
    return f"## Features\n\n{intro}\n\n" + _table(header, rows)


def _missing_values(manifest: Manifest) -> str:
    """Which features a record may leave out, and what the model uses instead."""
    nullable = [f for f in manifest.features if f.nullable]
    if not nullable:
        return ""
    header = ["Feature", "Label", "Rule", "Value used", "Indicator input", "Missing in training"]
    rows = [
        (
            f"`{f.name}`",
            f.label,
            f"`{f.impute}`",
            f"`{imputed_text(f)}`",
            "yes" if f.missing_indicator else "no",
            f"{f.train_missing_rate:.1%}",
        )
        for f in nullable
    ]
    required = [f"`{f.name}`" for f in manifest.features if not f.nullable]
    words = ", ".join(f"`{value}`" for value in manifest.na_values if value)
    cells = f"a blank CSV cell or one of {words}" if words else "a blank CSV cell"
    intro = (
        f"A record may leave these features out (JSON `null` or absent, {cells}); the model "
        "itself fills in the value below, learned from the training rows "
        "by the rule (or given by the spec for `constant`). With an indicator input the model "
        "also sees that the value was missing."
    )
    rest = (
        f"The other features are required: {', '.join(required)}."
        if required
        else "Every feature may be missing."
    )
    return "\n\n".join(["## Missing values", intro, _table(header, rows), rest])


def imputed_text(feature: Feature) -> str:
    """The value used for a missing feature, as a reader would write it (a category as it is)."""
    value = feature.impute_value
    if isinstance(value, str):
        return value
    if feature.type == "bool" and value in (0.0, 1.0):
        return "true" if value else "false"
    return _number(value)


def _domain(feature: Feature) -> str:
    if feature.categories is not None:
        return ", ".join(feature.categories)
    return _span(feature.min, feature.max)


def _span(low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return "—"
    if low is None:
        return f"≤ {_number(high)}"
    if high is None:
        return f"≥ {_number(low)}"
    return f"{_number(low)} to {_number(high)}"


def _parameters(params: dict[str, Any]) -> str:
    if not params:
        return ""
    rows = [(f"`{key}`", f"`{_value(value)}`") for key, value in sorted(params.items())]
    return "## Training parameters\n\n" + _table(["Parameter", "Value"], rows)


def _threshold(manifest: Manifest) -> str:
    if manifest.kind != "binary":
        return "## Decision rule\n\nThe predicted label is the class with the highest probability."
    criterion = manifest.params.get("threshold_criterion")
    if criterion is None:
        how = "The criterion that chose it was not recorded."
    else:
        prose = CRITERIA.get(str(criterion))
        how = f"It was chosen at training time by the criterion `{criterion}`"
        rows = manifest.params.get("threshold_rows", "the validation rows")
        how += f": it {prose.format(rows=rows)}." if prose else "."
    return (
        f"## Decision threshold\n\n`{manifest.positive_label}` is predicted when "
        f"P({manifest.target} = {manifest.positive_label}) ≥ **{_number(manifest.threshold)}**. "
        f"{how}"
    )


def _metrics(manifest: Manifest) -> str:
    samples = [e for e in (manifest.metrics, manifest.holdout_metrics) if e is not None]
    header = ["Metric", *(f"{e.sample} ({e.rows:,} rows)" for e in samples)]
    rows = [(label, *(_number(getattr(e, field)) for e in samples)) for field, label in METRIC_ROWS]
    if any(e.roc_auc_interval for e in samples):
        rows.insert(1, ("ROC AUC 95% bootstrap interval", *(_interval(e) for e in samples)))
    rows.extend(_bayes_rows(samples))
    averaged = (
        f"Precision, recall and F1 are for the positive class `{manifest.positive_label}` at the "
        f"decision threshold."
        if manifest.kind == "binary"
        else "Precision, recall and F1 are averaged over the classes."
    )
    return "\n\n".join(
        ["## Metrics", _table(header, rows), averaged, _confusion(manifest, manifest.metrics)]
    )


def best_baseline(manifest: Manifest) -> Baseline | None:
    """The strongest classical model: by cross-validated AUC when every model has one, else by
    AUC on the manifest's sample; None for a version trained without baselines."""
    if not manifest.baselines:
        return None
    cv = _cross_validated(manifest)
    if cv is not None:
        return max(manifest.baselines, key=lambda b: cv.mean(b.name))
    return max(manifest.baselines, key=lambda b: b.metrics.roc_auc)


def comparison_sentence(manifest: Manifest) -> str | None:
    """One plain sentence: is the network ahead of, behind or level with the best baseline?
    Cross-validated means when present (less noisy than one sample), else the sample's AUCs."""
    best = best_baseline(manifest)
    if best is None:
        return None
    cv = _cross_validated(manifest)
    if cv is not None:
        gap = cv.mean(NETWORK) - cv.mean(best.name)
        evidence = f"{cv.folds}-fold CV {_mean_std(cv, NETWORK)} vs {_mean_std(cv, best.name)}"
    else:
        gap = manifest.metrics.roc_auc - best.metrics.roc_auc
        evidence = (
            f"ROC AUC {manifest.metrics.roc_auc:.4f} vs {best.metrics.roc_auc:.4f} "
            f"on {manifest.metrics.rows:,} rows"
        )
    if abs(gap) < LEVEL_WITHIN:
        where = f"level with {best.title} on this data (within {LEVEL_WITHIN:g}; {evidence})"
    else:
        side = "ahead of" if gap > 0 else "behind"
        where = f"{abs(gap):.3f} ROC AUC {side} {best.title} on this data ({evidence})"
    return f"The network is {where}."


def _comparison(manifest: Manifest) -> str:
    """The network beside the classical baselines fitted on the same rows and preprocessing."""
    sentence = comparison_sentence(manifest)
    if sentence is None:
        return ""
    cv = _cross_validated(manifest)
    models = [("network (this model)", NETWORK, manifest.metrics)]
    models += [(b.title, b.name, b.metrics) for b in manifest.baselines]
    sample = manifest.metrics
    header = [
        "Model",
        f"ROC AUC ({sample.rows:,} rows)",
        "Accuracy",
        "Log loss",
        *([f"{cv.folds}-fold CV ROC AUC"] if cv else []),
    ]
    rows = [
        (
            title,
            _auc_with_interval(metrics),
            f"{metrics.accuracy:.4f}",
            f"{metrics.log_loss:.4f}",
            *([_mean_std(cv, key)] if cv else []),
        )
        for title, key, metrics in models
    ]
    fitted = manifest.params.get("fitted_rows")
    where = f"the same {fitted:,} training and validation rows" if fitted else "the same rows"
    splines = any(f.transform == "spline" for f in manifest.features)
    notes = [
        f"Every model was fitted on {where} with the same preprocessing"
        + (
            " (gradient boosting without the splines: trees split on a number itself)"
            if splines
            else ""
        )
        + f" and scored on the {sample.rows:,} rows of the {sample.sample}."
    ]
    if any(metrics.roc_auc_interval for _, _, metrics in models):
        notes.append("In brackets: the 95% bootstrap interval of the ROC AUC.")
    if cv is not None:
        notes.append(
            f"CV: mean ± std over {cv.folds} folds (same folds for every model, training and "
            f"validation rows only: {cv.rows:,} rows, seed {cv.seed})."
        )
    return "\n\n".join(
        ["## Compared with classical models", _table(header, rows), " ".join(notes), sentence]
    )


def _cross_validated(manifest: Manifest) -> CrossValidation | None:
    """The CV results if they cover the network and every baseline, else None."""
    cv = manifest.cross_validation
    names = {NETWORK, *(b.name for b in manifest.baselines)}
    return cv if cv is not None and names <= set(cv.roc_auc) else None


def _mean_std(cv: CrossValidation, model: str) -> str:
    return f"{cv.mean(model):.3f} ± {cv.std(model):.3f}"


def _auc_with_interval(metrics: Evaluation) -> str:
    if metrics.roc_auc_interval is None:
        return f"{metrics.roc_auc:.4f}"
    low, high = metrics.roc_auc_interval
    return f"{metrics.roc_auc:.4f} ({low:.4f} to {high:.4f})"


def _interval(evaluation: Evaluation) -> str:
    if evaluation.roc_auc_interval is None:
        return "—"
    low, high = evaluation.roc_auc_interval
    return f"{low:.4f} to {high:.4f}"


def _bayes_rows(samples: Sequence[Evaluation]) -> list[tuple[str, ...]]:
    """Rows comparing with the Bayes-optimal classifier, only where the data's truth is known."""
    rows: list[tuple[str, ...]] = []
    pairs: list[tuple[str, Callable[[Evaluation], float | None], str]] = [
        ("accuracy", lambda e: e.bayes_accuracy, "Bayes-optimal accuracy"),
        ("roc_auc", lambda e: e.bayes_roc_auc, "Bayes-optimal ROC AUC"),
    ]
    for field, bayes, label in pairs:
        if all(bayes(e) is None for e in samples):
            continue
        rows.append((label, *(_number(bayes(e)) for e in samples)))
        rows.append((f"Gap to {label}", *(_gap(bayes(e), getattr(e, field)) for e in samples)))
    return rows


def _gap(best: float | None, actual: float) -> str:
    return "—" if best is None else _number(best - actual)


def _confusion(manifest: Manifest, evaluation: Evaluation) -> str:
    header = ["true \\ predicted", *(f"`{label}`" for label in manifest.labels)]
    rows = [
        (f"`{label}`", *(str(count) for count in counts))
        for label, counts in zip(manifest.labels, evaluation.confusion_matrix, strict=False)
    ]
    return f"Confusion matrix on {evaluation.sample}:\n\n" + _table(header, rows)


def _export(manifest: Manifest) -> str:
    rows = [
        ("File", f"`{manifest.onnx.file}`"),
        ("sha256", f"`{manifest.onnx.sha256}`"),
        ("Opset", str(manifest.onnx.opset)),
        ("Outputs", ", ".join(f"`{name}`" for name in manifest.onnx.outputs)),
        ("Parity max abs diff (ONNX vs scikit-learn)", f"{manifest.parity_max_abs_diff:.2e}"),
    ]
    versions = [
        (name, f"`{version}`") for name, version in sorted(manifest.library_versions.items())
    ]
    parts = ["## ONNX export", _table(["Item", "Value"], rows)]
    if versions:
        parts += ["## Library versions", _table(["Library", "Version"], versions)]
    return "\n\n".join(parts)


def _limitations(manifest: Manifest) -> str:
    items = []
    if manifest.data.source.startswith(GENERATED_PREFIX):
        items.append(
            "The training data is synthetic (drawn from a generator, not observed): the metrics "
            "say how well the model recovers the generator's rule, not how it will do on real "
            "records."
        )
    items.append(
        "Inputs inside the allowed domain but outside the range seen in training are "
        "extrapolation: the network has no evidence there and its probabilities may be "
        "confidently wrong. The training range is in the manifest so that such records can be "
        "flagged."
    )
    items.append(_uncertainty(manifest.holdout_metrics or manifest.metrics))
    items.append(
        "Probabilities are only as trustworthy as the expected calibration error and the "
        "reliability diagram show; check them on your own data before acting on the numbers."
    )
    return "## Limitations\n\n" + "\n".join(f"- {item}" for item in items)


def _uncertainty(evaluation: Evaluation) -> str:
    """A binomial standard error makes clear how much a small test sample can be trusted."""
    error = math.sqrt(evaluation.accuracy * (1 - evaluation.accuracy) / max(evaluation.rows, 1))
    return (
        f"Metrics are estimates from finite samples: on {evaluation.sample} ({evaluation.rows:,} "
        f"rows) the accuracy's standard error is about ±{error:.3f}."
    )


def _plots(plots: Sequence[str]) -> str:
    if not plots:
        return ""
    titles = [(PLOT_TITLES.get(name, name), name) for name in plots]
    figures = [f"### {title}\n\n![{title}]({name})" for title, name in titles]
    return "## Plots\n\n" + "\n\n".join(figures)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [_row(header), _row(["---"] * len(header))]
    lines.extend(_row(row) for row in rows)
    return "\n".join(lines)


def _row(cells: Iterable[str]) -> str:
    # A pipe or newline in free text (descriptions, categories) would break the Markdown table.
    clean = (str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells)
    return "| " + " | ".join(clean) + " |"


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def _value(value: Any) -> str:
    return json.dumps(value, default=str, separators=(", ", ": "))
