"""Baselines and cross-validation: every model on the same folds, figures that can be recomputed,
thresholds from held-out predictions, and the kept fits on the training and validation rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.manifest import NETWORK
from tests.training.conftest import FAST_MLP, SMALL_ROWS, TrainFn
from training.baselines import fit_all, fold_plan, learning_rows, models
from training.data import split
from training.evaluate import choose_threshold, roc_auc
from training.report import METRICS_FILE
from training.spec import load_task
from training.train import TrainOptions, TrainResult, load_data

BASELINES = ["logistic_regression", "gradient_boosting"]


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    from training.train import train

    options = TrainOptions(
        out=tmp_path_factory.mktemp("registry") / "models",
        seed=3,
        rows=SMALL_ROWS["churn"],
        cv_folds=3,
        mlp_overrides={**FAST_MLP, "ensemble": 2},
    )
    return train(load_task("churn"), options)


def test_every_model_is_reported_on_the_same_sample(churn_run: TrainResult) -> None:
    manifest = churn_run.manifest
    assert [b.name for b in manifest.baselines] == BASELINES
    for baseline in manifest.baselines:
        assert baseline.metrics.sample == manifest.metrics.sample
        assert baseline.metrics.rows == manifest.metrics.rows
        low, high = baseline.metrics.roc_auc_interval or (2.0, -1.0)
        assert low <= baseline.metrics.roc_auc <= high
    low, high = manifest.metrics.roc_auc_interval or (2.0, -1.0)
    assert low < manifest.metrics.roc_auc < high


def test_cross_validation_recomputes_from_the_same_folds(churn_run: TrainResult) -> None:
    """The folds are the seed's stratified folds of the training and validation rows, the same
    for every model: refitting a baseline on them gives the reported per-fold AUCs exactly."""
    manifest = churn_run.manifest
    cv = manifest.cross_validation
    assert cv is not None and cv.folds == 3 and cv.seed == 3
    assert set(cv.roc_auc) == {NETWORK, *BASELINES}
    assert all(len(scores) == 3 for scores in cv.roc_auc.values())
    spec = load_task("churn")
    splits = split(load_data(spec, TrainOptions(seed=3, rows=SMALL_ROWS["churn"])), spec.split, 3)
    learn = learning_rows(splits)
    assert cv.rows == len(learn) == manifest.params["fitted_rows"]
    folds, cross_validated = fold_plan(splits, 3, 3)
    assert cross_validated
    held = np.sort(np.concatenate([rows for _, rows in folds]))
    np.testing.assert_array_equal(held, np.arange(len(learn)))  # every row held out once
    regression = models(spec, spec.mlp, 3)[1]
    for (fit_rows, predict_rows), reported in zip(folds, cv.roc_auc[regression.name], strict=True):
        fitted = regression.fit(learn.take(fit_rows))
        part = learn.take(predict_rows)
        assert roc_auc(part.y, fitted.predict_proba(part.X)) == pytest.approx(reported, abs=1e-12)


def test_thresholds_come_from_out_of_fold_predictions() -> None:
    spec = load_task("draft_pick")
    splits = split(load_data(spec, TrainOptions(seed=1, rows=300)), spec.split, 1)
    learn = learning_rows(splits)
    folds, _ = fold_plan(splits, 3, 1)
    mlp = spec.mlp.model_copy(update={**FAST_MLP, "ensemble": 1})
    held, fitted = fit_all(models(spec, mlp, 1), learn, folds, 1, True, jobs=1)
    assert set(fitted) == {NETWORK, *BASELINES}
    for name, probabilities in held.probabilities.items():
        assert not np.isnan(probabilities).any(), name  # every learning row predicted once
    # the same work in two processes gives the same numbers
    again, _ = fit_all(models(spec, mlp, 1), learn, folds, 1, True, jobs=2)
    for name in held.probabilities:
        np.testing.assert_array_equal(held.probabilities[name], again.probabilities[name])
    threshold = choose_threshold(learn.y, held.probabilities[NETWORK][:, 1], "max_f1")
    assert 0.0 < threshold < 1.0


def test_without_cross_validation_the_validation_rows_choose_the_threshold(
    quick_train: TrainFn,
) -> None:
    result = quick_train("draft_pick", cv_folds=0)
    manifest = result.manifest
    assert manifest.cross_validation is None
    assert [b.name for b in manifest.baselines] == BASELINES
    assert manifest.params["threshold_rows"].startswith(f"the {manifest.data.validation_rows:,} ")
    assert (
        manifest.params["fitted_rows"] == manifest.data.train_rows + manifest.data.validation_rows
    )


def test_metrics_json_and_the_card_carry_the_comparison(churn_run: TrainResult) -> None:
    report = churn_run.path / "report"
    document = json.loads((report / METRICS_FILE).read_text(encoding="utf-8"))
    assert set(document["baselines"]) == set(BASELINES)
    assert document["cross_validation"]["folds"] == 3
    card = (report / "model_card.md").read_text(encoding="utf-8")
    assert "## Compared with classical models" in card
    assert "The network is " in card and "3-fold CV" in card
    assert "out-of-fold predictions" in card  # how the threshold was chosen
