"""The models every run fits, and the held-out predictions that choose thresholds and score them.

Beside the network, two classical models on the same rows and the same preprocessing keep it
honest: the model card says plainly when gradient boosting or a logistic regression does as well.
Every model is judged on the same folds of the training and validation rows (never the test
rows), so per-fold differences are paired; its decision threshold comes from its own
out-of-fold predictions, and its final fit then uses all those rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from service.manifest import NETWORK, CrossValidation
from training.data import Dataset, Splits
from training.evaluate import Probabilities, roc_auc
from training.pipeline import branches, fit_pipeline
from training.spec import MLPSpec, TaskSpec

Index = npt.NDArray[np.int64]
Fold = tuple[Index, Index]  # (rows to fit on, rows to predict), positions in the learning rows


@dataclass(frozen=True)
class Model:
    """A model every run fits: its key in the manifest, its name in sentences, how to fit it."""

    name: str
    title: str
    fit: Callable[[Dataset], Pipeline]


def models(spec: TaskSpec, mlp: MLPSpec, seed: int) -> list[Model]:
    """The network as configured, then logistic regression and gradient boosting.

    Each gets the spec's preprocessing (imputation, scaling, one-hot encoding), splines
    included for the logistic regression (which makes it an additive model that can follow a
    rise and fall, the strongest simple rival) but not for gradient boosting.
    """
    plain = _without_splines(spec)
    return [
        Model(NETWORK, "the network", lambda data: fit_pipeline(spec, mlp, seed, data)),
        Model(
            "logistic_regression",
            "logistic regression",
            lambda data: _fit(spec, LogisticRegression(max_iter=2000), data),
        ),
        Model(
            "gradient_boosting",
            "gradient boosting",
            lambda data: _fit(plain, HistGradientBoostingClassifier(random_state=seed), data),
        ),
    ]


def _without_splines(spec: TaskSpec) -> TaskSpec:
    """The spec with every number scaled as it is: trees split on a number's own values, and
    its spline columns would only spread one feature over several."""
    features = [f.model_copy(update={"transform": "standard"}) for f in spec.features]
    return spec.model_copy(update={"features": tuple(features)})


def _fit(spec: TaskSpec, model: ClassifierMixin, data: Dataset) -> Pipeline:
    """The spec's preprocessing (the network's `pre` step, unfitted) followed by the model."""
    pipeline = Pipeline(
        [("pre", ColumnTransformer(branches(spec), remainder="drop")), ("model", model)]
    )
    with threadpool_limits(1):
        return pipeline.fit(data.X, data.y)


@dataclass(frozen=True)
class HeldOut:
    """Each model's predictions for the learning rows from fits that did not see them."""

    y: npt.NDArray[np.int64]  # of the learning rows
    folds: list[Fold]
    probabilities: dict[str, Probabilities]  # by model name; rows outside every fold are NaN
    seed: int
    cross_validated: bool  # False: one fold, the validation rows (cross-validation is off)

    def rows(self) -> Index:
        """The learning rows that some fold predicted."""
        return np.sort(np.concatenate([predict for _, predict in self.folds]))

    def description(self) -> str:
        """Which held-out predictions these are, for the model card."""
        rows = len(self.rows())
        if self.cross_validated:
            return (
                f"the out-of-fold predictions of the {rows:,} training and validation rows "
                f"({len(self.folds)}-fold cross-validation)"
            )
        return f"the {rows:,} validation rows (predicted by a fit on the training rows)"

    def cross_validation(self) -> CrossValidation | None:
        """Per-fold ROC AUC of every model; None when cross-validation is off."""
        if not self.cross_validated:
            return None
        scores = {
            name: [roc_auc(self.y[rows], found[rows]) for _, rows in self.folds]
            for name, found in self.probabilities.items()
        }
        return CrossValidation(
            folds=len(self.folds), seed=self.seed, rows=len(self.y), roc_auc=scores
        )


def learning_rows(splits: Splits) -> Dataset:
    """The training rows followed by the validation rows: what folds and final fits use."""
    first, second = splits.train, splits.validation
    X = pd.concat([first.X, second.X], ignore_index=True)
    y = np.concatenate([first.y, second.y])
    probability = None
    if first.probability is not None and second.probability is not None:
        probability = np.concatenate([first.probability, second.probability])
    return Dataset(X, y, probability, first.source, first.sha256, first.headers)


def fold_plan(splits: Splits, folds: int, seed: int) -> tuple[list[Fold], bool]:
    """Stratified k folds of the learning rows from the seed, or, with `folds` 0 (or a class too
    rare to put in every fold), the one split into training and validation rows.

    Returns the folds and whether they are a cross-validation.
    """
    train, learn = len(splits.train), len(splits.train) + len(splits.validation)
    y = np.concatenate([splits.train.y, splits.validation.y])
    folds = min(folds, int(np.bincount(y).min()))
    if folds < 2:
        return [(np.arange(train), np.arange(train, learn))], False
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    plan = [
        (fit.astype(np.int64), held.astype(np.int64))
        for fit, held in splitter.split(np.zeros(learn), y)
    ]
    return plan, True


def fit_all(
    candidates: list[Model],
    learn: Dataset,
    folds: list[Fold],
    seed: int,
    cross_validated: bool,
    jobs: int = -1,
) -> tuple[HeldOut, dict[str, Pipeline]]:
    """Fit every model on each fold's rows and predict the rest (the same folds for all), and
    once more on all the learning rows (the fits that are kept).

    The fits are independent and seeded, so they run in `jobs` processes (-1: one per core)
    with the same results as in one.
    """
    everything: Index = np.arange(len(learn), dtype=np.int64)
    work: list[tuple[Model, Index, Index | None]] = []
    for model in candidates:  # the network first: the longest fits start first
        work.append((model, everything, None))
        work += [(model, fit_rows, predict_rows) for fit_rows, predict_rows in folds]
    done = Parallel(n_jobs=jobs)(
        delayed(_fit_and_predict)(model, learn, fit_rows, predict_rows)
        for model, fit_rows, predict_rows in work
    )
    found: dict[str, Probabilities] = {}
    final: dict[str, Pipeline] = {}
    for (model, _, predict_rows), (fitted, predicted) in zip(work, done, strict=True):
        if predict_rows is None:
            final[model.name] = fitted
            continue
        if model.name not in found:
            found[model.name] = np.full((len(learn), predicted.shape[1]), np.nan)
        found[model.name][predict_rows] = predicted
    return HeldOut(learn.y, folds, found, seed, cross_validated), final


def _fit_and_predict(
    model: Model, learn: Dataset, fit_rows: Index, predict_rows: Index | None
) -> tuple[Pipeline, Probabilities]:
    fitted = model.fit(learn if predict_rows is None else learn.take(fit_rows))
    if predict_rows is None:
        return fitted, np.empty((0, 0))
    return fitted, fitted.predict_proba(learn.take(predict_rows).X)
