"""The scikit-learn pipeline every task trains: scaling and one-hot encoding, then an MLP."""

from __future__ import annotations

import math
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from training.data import Dataset
from training.spec import MLPSpec, TaskSpec

EARLY_STOPPING_FRACTION = 0.1


def build_pipeline(spec: TaskSpec, mlp: MLPSpec, seed: int) -> Pipeline:
    """Pipeline(ColumnTransformer(StandardScaler | OneHotEncoder), MLPClassifier) from the spec.

    The encoder is given the spec's categories, not the ones seen in training, so a category that
    happens to be missing from a small training set still has its column in the exported model.
    """
    transformers: list[tuple[str, Any, list[str]]] = []
    if spec.numeric_features:
        transformers.append(("num", StandardScaler(), spec.numeric_features))
    if spec.categorical_features:
        categories = [
            list(spec.features[i].categories or ())
            for i, f in enumerate(spec.features)
            if f.type == "category"
        ]
        encoder = OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)
        transformers.append(("cat", encoder, spec.categorical_features))
    return Pipeline(
        [
            ("pre", ColumnTransformer(transformers, remainder="drop")),
            ("mlp", build_mlp(mlp, seed)),
        ]
    )


def build_mlp(mlp: MLPSpec, seed: int) -> MLPClassifier:
    """The classifier; early stopping holds out part of the training rows as its validation."""
    return MLPClassifier(
        hidden_layer_sizes=mlp.hidden_layer_sizes,
        activation=mlp.activation,
        solver=mlp.solver,
        alpha=mlp.alpha,
        learning_rate_init=mlp.learning_rate_init,
        batch_size=mlp.batch_size,
        max_iter=mlp.max_iter,
        early_stopping=mlp.early_stopping,
        n_iter_no_change=mlp.n_iter_no_change,
        validation_fraction=EARLY_STOPPING_FRACTION,
        random_state=seed,
    )


def fit_pipeline(spec: TaskSpec, mlp: MLPSpec, seed: int, data: Dataset) -> Pipeline:
    """Build and fit on `data`, single-threaded (faster for these small matrices, and repeatable).

    The batch size is capped at what early stopping leaves for training, so a small CSV trains
    instead of tripping scikit-learn's clipping warning.
    """
    held_out = math.ceil(len(data) * EARLY_STOPPING_FRACTION) if mlp.early_stopping else 0
    usable = len(data) - held_out
    mlp = mlp.model_copy(update={"batch_size": max(1, min(mlp.batch_size, usable))})
    with threadpool_limits(1):
        return build_pipeline(spec, mlp, seed).fit(data.X, data.y)
