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

from service.manifest import (
    Baseline,
    CrossValidation,
    DataInfo,
    Evaluation,
    Feature,
    Manifest,
    OnnxInfo,
    TaskKind,
)
from training.model_card import best_baseline, comparison_sentence, render_model_card
from training.report import PLOTS, Curves, write_model_card, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHA = "ab" * 32
ROOT = Path(__file__).resolve().parents[2]
COMPARED = "## Compared with classical models"
# Five folds per model: means 0.850, 0.800, 0.854; standard deviations 0.014, 0.014, 0.010.
FOLDS = {
    "network": [0.85, 0.86, 0.84, 0.87, 0.83],
    "logistic_regression": [0.80, 0.79, 0.81, 0.78, 0.82],
    "gradient_boosting": [0.86, 0.85, 0.85, 0.87, 0.84],
}

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
        label="Position on court",
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


def _baselines(sample: Evaluation, logistic_auc: float, boosting_auc: float) -> list[Baseline]:
    """The two classical models on the network's sample, with their own AUCs."""
    return [
        Baseline(
            name="logistic_regression",
            title="logistic regression",
            metrics=sample.model_copy(
                update={"roc_auc": logistic_auc, "log_loss": 0.5123, "roc_auc_interval": None}
            ),
        ),
        Baseline(
            name="gradient_boosting",
            title="gradient boosting",
            metrics=sample.model_copy(
                update={
                    "roc_auc": boosting_auc,
                    "accuracy": 0.8207,
                    "roc_auc_interval": (boosting_auc - 0.008, boosting_auc + 0.007),
                }
            ),
        ),
    ]


def _cross_validation(folds: dict[str, list[float]]) -> CrossValidation:
    return CrossValidation(folds=5, seed=7, rows=1000, roc_auc=folds)


def _compared(manifest: Manifest, folds: dict[str, list[float]] | None = FOLDS) -> Manifest:
    """`manifest` with baselines (gradient boosting best on the sample) and, unless None, CV."""
    metrics = manifest.metrics.model_copy(update={"roc_auc_interval": (0.8650, 0.8812)})
    return manifest.model_copy(
        update={
            "metrics": metrics,
            "baselines": _baselines(metrics, 0.8012, 0.8790),
            "cross_validation": None if folds is None else _cross_validation(folds),
        }
    )


@pytest.fixture(scope="module")
def binary_manifest() -> Manifest:
    """A version trained with baselines and cross-validation (the multi-class one without)."""
    plain = _manifest("binary", BINARY_FEATURES, ["no", "yes"], {"threshold_criterion": "max_f1"})
    return _compared(plain)


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
    assert "| `height_cm` | Height | float | cm | 150 to 240 | 171.5 to 221 | Standing" in card
    assert "| `wins` | Wins | int | games | 0 to 45 | 2 to 38 |" in card
    assert (
        "| `position` | Position on court | category |  | guard, forward, center | — "
        "| Listed position. |"
    ) in card


def test_model_card_escapes_a_label_that_would_break_its_table(binary_manifest: Manifest) -> None:
    features = [f.model_copy(update={"label": "Wins | losses"}) for f in binary_manifest.features]
    manifest = binary_manifest.model_copy(update={"features": features})
    card = render_model_card(manifest, [])
    assert "| `wins` | Wins \\| losses | int |" in card


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


def test_metrics_json_holds_baselines_cross_validation_and_the_interval(
    binary_report: Path,
) -> None:
    document = json.loads((binary_report / "metrics.json").read_text(encoding="utf-8"))
    assert document["metrics"]["roc_auc_interval"] == [0.8650, 0.8812]
    assert set(document["baselines"]) == {"logistic_regression", "gradient_boosting"}
    assert document["baselines"]["gradient_boosting"]["roc_auc"] == 0.8790
    assert document["baselines"]["logistic_regression"]["log_loss"] == 0.5123
    cv = document["cross_validation"]
    assert (cv["folds"], cv["seed"], cv["rows"]) == (5, 7, 1000)
    assert set(cv["roc_auc"]) == set(FOLDS)
    network = cv["roc_auc"]["network"]
    assert network["per_fold"] == FOLDS["network"]
    assert network["mean"] == pytest.approx(0.85)
    assert network["std"] == pytest.approx(float(np.std(FOLDS["network"])))


def test_metrics_json_of_a_run_without_baselines(multiclass_report: Path) -> None:
    document = json.loads((multiclass_report / "metrics.json").read_text(encoding="utf-8"))
    assert document["baselines"] == {} and document["cross_validation"] is None
    assert document["metrics"]["roc_auc_interval"] is None


def test_model_card_compares_with_classical_models(binary_report: Path) -> None:
    card = _card(binary_report)
    assert COMPARED in card and card.index("## Metrics") < card.index(COMPARED)
    assert "| Model | ROC AUC (20,000 rows) | Accuracy | Log loss | 5-fold CV ROC AUC |" in card
    assert (
        "| network (this model) | 0.8731 (0.8650 to 0.8812) | 0.8125 | 0.4012 | 0.850 ± 0.014 |"
        in card
    )
    assert "| logistic regression | 0.8012 | 0.8125 | 0.5123 | 0.800 ± 0.014 |" in card
    assert (
        "| gradient boosting | 0.8790 (0.8710 to 0.8860) | 0.8207 | 0.4012 | 0.854 ± 0.010 |"
        in card
    )
    assert "same folds for every model, training and validation rows only: 1,000 rows" in card
    assert "| ROC AUC 95% bootstrap interval | 0.8650 to 0.8812 | — |" in card
    expected = (
        "The network is 0.004 ROC AUC behind gradient boosting on this data "
        "(5-fold CV 0.850 ± 0.014 vs 0.854 ± 0.010)."
    )
    assert expected in card


def test_model_card_of_a_version_without_baselines_has_no_comparison(
    multiclass_report: Path,
) -> None:
    card = _card(multiclass_report)
    assert COMPARED not in card and "classical" not in card and "interval" not in card


def test_committed_manifest_from_before_baselines_renders_without_comparison() -> None:
    """A manifest.json written before baselines existed has neither key; its card is unchanged."""
    path = next((ROOT / "models" / "churn").glob("2*/manifest.json"))
    document = json.loads(path.read_text(encoding="utf-8"))
    for key in ("baselines", "cross_validation"):
        document.pop(key, None)
    document["metrics"].pop("roc_auc_interval", None)
    old = Manifest.model_validate(document)
    assert comparison_sentence(old) is None and best_baseline(old) is None
    assert COMPARED not in render_model_card(old, [])
    card = render_model_card(_compared(old), [])
    assert COMPARED in card and "The network is " in card


def _sentence(manifest: Manifest, folds: dict[str, list[float]] | None) -> str | None:
    return comparison_sentence(_compared(manifest, folds))


def _shifted(by: dict[str, float]) -> dict[str, list[float]]:
    """FOLDS with each named model's AUCs moved by the same amount."""
    return {name: [s + by.get(name, 0.0) for s in scores] for name, scores in FOLDS.items()}


def test_comparison_sentence_says_ahead_behind_or_level(binary_manifest: Manifest) -> None:
    ahead = _sentence(binary_manifest, _shifted({"network": 0.012}))
    assert ahead == (
        "The network is 0.008 ROC AUC ahead of gradient boosting on this data "
        "(5-fold CV 0.862 ± 0.014 vs 0.854 ± 0.010)."
    )
    level = _sentence(binary_manifest, _shifted({"network": 0.0036}))
    assert level == (
        "The network is level with gradient boosting on this data "
        "(within 0.001; 5-fold CV 0.854 ± 0.014 vs 0.854 ± 0.010)."
    )


def test_comparison_sentence_names_the_best_baseline_under_cv(binary_manifest: Manifest) -> None:
    """Gradient boosting leads on the sample, but logistic regression in CV: CV decides."""
    folds = _shifted({"logistic_regression": 0.07})  # mean 0.870
    sentence = _sentence(binary_manifest, folds)
    assert sentence is not None and "0.020 ROC AUC behind logistic regression" in sentence
    best = best_baseline(_compared(binary_manifest, folds))
    assert best is not None and best.name == "logistic_regression"


def test_comparison_sentence_uses_the_sample_without_cv(binary_manifest: Manifest) -> None:
    assert _sentence(binary_manifest, None) == (
        "The network is 0.006 ROC AUC behind gradient boosting on this data "
        "(ROC AUC 0.8731 vs 0.8790 on 20,000 rows)."
    )
    card = render_model_card(_compared(binary_manifest, None), [])
    assert "| Model | ROC AUC (20,000 rows) | Accuracy | Log loss |\n" in card
    assert "CV" not in card
