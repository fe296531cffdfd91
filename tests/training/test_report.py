"""Tests of the per-version report: plots, metrics.json and the model card."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier

from service.manifest import DataInfo, Evaluation, Feature, Manifest, OnnxInfo, TaskKind
from training.report import PLOTS, Curves, write_model_card, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHA = "ab" * 32

BINARY_FEATURES = [
    Feature(
        name="height_cm",
        type="float",
        unit="cm",
        description="Standing height without shoes.",
        min=150,
        max=240,
        train_min=171.5,
        train_max=221.0,
    ),
    Feature(
        name="wins",
        type="int",
        unit="games",
        description="Wins in the last college season.",
        min=0,
        max=45,
        train_min=2,
        train_max=38,
    ),
    Feature(
        name="position",
        type="category",
        description="Listed position.",
        categories=["guard", "forward", "center"],
    ),
]
MULTICLASS_FEATURES = [
    Feature(
        name="petal_length", type="float", unit="cm", min=0, max=10, train_min=1, train_max=6.9
    ),
    Feature(
        name="petal_width", type="float", unit="cm", min=0, max=5, train_min=0.1, train_max=2.5
    ),
]


def _evaluation(sample: str, rows: int, k: int, bayes: bool) -> Evaluation:
    return Evaluation(
        sample=sample,
        rows=rows,
        roc_auc=0.8731,
        accuracy=0.8125,
        precision=0.7714,
        recall=0.6923,
        f1=0.7297,
        log_loss=0.4012,
        brier=0.1307,
        ece=0.0421,
        confusion_matrix=[[rows // k] * k for _ in range(k)],
        bayes_accuracy=0.8412 if bayes else None,
        bayes_roc_auc=0.9034 if bayes else None,
    )


def _manifest(
    kind: TaskKind, features: list[Feature], labels: list[str], params: dict[str, Any]
) -> Manifest:
    bayes = kind == "binary"
    return Manifest(
        name="draft_pick" if bayes else "flowers",
        version="2025-06-01T12-00-00",
        created_at=datetime(2025, 6, 1, 12, tzinfo=UTC),
        title="NBA draft pick" if bayes else "",
        description="Predicts whether a player will be a good pick." if bayes else "",
        kind=kind,
        target="good_pick" if bayes else "species",
        labels=labels,
        positive_label=labels[1] if bayes else None,
        threshold=0.42 if bayes else 0.5,
        features=features,
        onnx=OnnxInfo(sha256=SHA, opset=17, inputs=[f.name for f in features], outputs=["label"]),
        metrics=_evaluation("fresh generated rows", 20_000, len(labels), bayes),
        holdout_metrics=_evaluation("test split", 100, len(labels), bayes) if bayes else None,
        data=DataInfo(
            source="generated:draft_pick" if bayes else "flowers.csv",
            sha256=SHA,
            rows=1100,
            train_rows=850,
            validation_rows=150,
            test_rows=100,
            seed=7,
        ),
        parity_max_abs_diff=3.1e-7,
        library_versions={"scikit-learn": "1.9.1", "onnxruntime": "1.23.0"},
        params={"hidden_layer_sizes": [8], "alpha": 0.001, **params},
    )


def _fit(k: int, early_stopping: bool) -> Curves:
    """A tiny real MLP on seeded data; for binary, the true P(positive) the generator used."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    logit = 2.0 * X[:, 0] - X[:, 1]
    if k == 2:
        y = (rng.random(300) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    else:
        y = np.digitize(logit + rng.normal(scale=0.5, size=300), [-1.0, 1.0]).astype(np.int64)
    model = MLPClassifier(
        hidden_layer_sizes=(8,), max_iter=40, early_stopping=early_stopping, random_state=0
    )
    model.fit(X, y)
    return Curves(
        loss=list(model.loss_curve_),
        validation_score=list(model.validation_scores_) if early_stopping else None,
        y_true=y,
        probabilities=model.predict_proba(X),
        true_probability=1 / (1 + np.exp(-logit)) if k == 2 else None,
    )


@pytest.fixture(scope="module")
def binary_manifest() -> Manifest:
    return _manifest("binary", BINARY_FEATURES, ["no", "yes"], {"threshold_criterion": "max_f1"})


@pytest.fixture(scope="module")
def multiclass_manifest() -> Manifest:
    return _manifest("multiclass", MULTICLASS_FEATURES, ["setosa", "versicolor", "virginica"], {})


@pytest.fixture(scope="module")
def binary_card(tmp_path_factory: pytest.TempPathFactory, binary_manifest: Manifest) -> Path:
    # Rendering dominates the run time, so each report is drawn once per module and shared.
    folder = tmp_path_factory.mktemp("binary") / "report"
    return write_report(folder, binary_manifest, _fit(2, early_stopping=True))


@pytest.fixture(scope="module")
def binary_report(binary_card: Path) -> Path:
    return binary_card.parent


@pytest.fixture(scope="module")
def multiclass_report(
    tmp_path_factory: pytest.TempPathFactory, multiclass_manifest: Manifest
) -> Path:
    folder = tmp_path_factory.mktemp("multiclass") / "report"
    write_report(folder, multiclass_manifest, _fit(3, early_stopping=False))
    return folder


@pytest.fixture(params=["binary", "multiclass"])
def report(request: pytest.FixtureRequest) -> Path:
    folder: Path = request.getfixturevalue(f"{request.param}_report")
    return folder


def _card(folder: Path) -> str:
    return (folder / "model_card.md").read_text(encoding="utf-8")


def test_report_writes_every_plot_as_png(report: Path) -> None:
    for name in PLOTS:
        data = (report / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert 5_000 < len(data) < 300_000, (name, len(data))


def test_write_report_creates_the_folder_and_returns_the_card(binary_card: Path) -> None:
    assert binary_card.name == "model_card.md"
    assert binary_card.parent.name == "report"
    assert binary_card.read_text(encoding="utf-8").startswith("# Model card: NBA draft pick")


def test_metrics_json_holds_both_evaluations(binary_report: Path) -> None:
    document = json.loads((binary_report / "metrics.json").read_text(encoding="utf-8"))
    assert document["metrics"]["roc_auc"] == 0.8731
    assert document["holdout_metrics"]["sample"] == "test split"
    assert document["metrics"]["bayes_accuracy_gap"] == pytest.approx(0.8412 - 0.8125)
    assert document["threshold"] == 0.42
    assert document["training"]["best_epoch"] >= 1
    assert set(document["per_class"]) == {"no", "yes"}


def test_metrics_json_without_holdout_or_validation(multiclass_report: Path) -> None:
    document = json.loads((multiclass_report / "metrics.json").read_text(encoding="utf-8"))
    assert document["holdout_metrics"] is None
    assert document["training"]["best_validation_score"] is None
    assert "bayes_accuracy_gap" not in document["metrics"]


def test_model_card_has_a_row_per_feature(binary_report: Path) -> None:
    card = _card(binary_report)
    assert "| `height_cm` | float | cm | 150 to 240 | 171.5 to 221 | Standing height" in card
    assert "| `wins` | int | games | 0 to 45 | 2 to 38 |" in card
    assert "| `position` | category |  | guard, forward, center | — | Listed position. |" in card


def test_model_card_shows_both_samples_metrics(binary_report: Path) -> None:
    card = _card(binary_report)
    assert "| Metric | fresh generated rows (20,000 rows) | test split (100 rows) |" in card
    assert "| ROC AUC | 0.8731 | 0.8731 |" in card
    assert "| Expected calibration error | 0.0421 | 0.0421 |" in card
    assert "parity" in card.lower()
    assert "3.10e-07" in card


def test_model_card_shows_bayes_figures_when_known(binary_report: Path) -> None:
    card = _card(binary_report)
    assert "| Bayes-optimal accuracy | 0.8412 | 0.8412 |" in card
    assert "| Gap to Bayes-optimal accuracy | 0.0287 | 0.0287 |" in card
    assert "| Gap to Bayes-optimal ROC AUC | 0.0303 | 0.0303 |" in card


def test_model_card_omits_bayes_figures_when_unknown(multiclass_report: Path) -> None:
    assert "Bayes" not in _card(multiclass_report)


def test_model_card_explains_the_threshold(binary_report: Path) -> None:
    card = _card(binary_report)
    assert "≥ **0.42**" in card
    assert "maximises F1 of the positive class on the validation rows" in card


def test_model_card_warns_about_synthetic_data_only_when_generated(
    binary_report: Path, multiclass_report: Path
) -> None:
    assert "synthetic" in _card(binary_report)
    assert "synthetic" not in _card(multiclass_report)
    assert "extrapolation" in _card(multiclass_report)


def test_model_card_links_every_plot(report: Path) -> None:
    card = _card(report)
    for name in PLOTS:
        assert f"]({name})" in card


def test_model_card_links_only_plots_that_exist(tmp_path: Path, binary_manifest: Manifest) -> None:
    (tmp_path / "loss_curve.png").write_bytes(PNG_MAGIC)
    card = write_model_card(tmp_path, binary_manifest).read_text(encoding="utf-8")
    assert "](loss_curve.png)" in card
    assert "](roc.png)" not in card
    assert "](calibration.png)" not in card


def test_write_model_card_leaves_the_plots_alone(
    tmp_path: Path, binary_report: Path, binary_manifest: Manifest
) -> None:
    folder = shutil.copytree(binary_report, tmp_path / "report")
    before = {name: (folder / name).read_bytes() for name in [*PLOTS, "metrics.json"]}
    write_model_card(folder, binary_manifest.model_copy(update={"title": "Renamed"}))
    assert {name: (folder / name).read_bytes() for name in [*PLOTS, "metrics.json"]} == before
    assert _card(folder).startswith("# Model card: Renamed")


def test_write_report_survives_a_class_missing_from_the_sample(
    tmp_path: Path, multiclass_manifest: Manifest
) -> None:
    curves = _fit(3, early_stopping=False)
    keep = curves.y_true != 2
    partial = Curves(
        loss=curves.loss,
        validation_score=[],
        y_true=curves.y_true[keep],
        probabilities=curves.probabilities[keep],
        true_probability=None,
    )
    write_report(tmp_path, multiclass_manifest, partial)
    document = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert document["per_class"]["virginica"] == {
        "support": 0,
        "roc_auc": None,
        "average_precision": None,
    }


def test_write_report_rejects_probabilities_of_another_task(
    tmp_path: Path, binary_manifest: Manifest
) -> None:
    curves = _fit(3, early_stopping=False)
    with pytest.raises(ValueError, match=r"expected \(300, 2\)"):
        write_report(tmp_path, binary_manifest, curves)
    assert not any(tmp_path.iterdir())
