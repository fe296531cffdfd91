"""The scikit-learn pipeline every task trains: imputation where the spec allows missing values,
scaling and one-hot encoding, then an MLP."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from service.manifest import MISSING_CATEGORY
from training.data import DataError, Dataset, missing_mask
from training.ensemble import merge
from training.spec import FeatureSpec, FillValue, MLPSpec, TaskSpec

EARLY_STOPPING_FRACTION = 0.1
SPLINE_KNOTS = 5  # 7 splines per feature: enough for a rise and a fall (bench/RESULTS.md)
Branch = tuple[str, Any, list[str]]


def build_pipeline(spec: TaskSpec, mlp: MLPSpec, seed: int) -> Pipeline:
    """Pipeline(ColumnTransformer(branches), MLPClassifier) from the spec (see `branches`)."""
    return Pipeline(
        [
            ("pre", ColumnTransformer(branches(spec), remainder="drop")),
            ("mlp", build_mlp(mlp, seed)),
        ]
    )


def branches(spec: TaskSpec) -> list[Branch]:
    """The ColumnTransformer's branches, in a fixed order.

    Required features first, as in a spec without missing values (whose pipeline is exactly
    that): `num` (StandardScaler), `num_spline` (the features with `transform = "spline"`:
    cubic B-splines over the training range, then scaled) and `cat` (OneHotEncoder). Then the
    nullable features, one branch per imputation (rule, fill value) and transform, each a
    SimpleImputer before the scaler (or splines) or encoder, so the exported graph imputes by
    itself. Last the indicators: `missing_num` (1.0 where a
    number is missing) and `missing_cat` (a one-hot of the empty category, which is the same).
    Within a branch, columns keep spec order. Encoders get the spec's categories, not the ones
    seen in training, so a category absent from a small training set still has its column.
    """
    required = [f for f in spec.features if not f.nullable]
    nullable = [f for f in spec.features if f.nullable]
    found: list[Branch] = []
    numbers = _names(f for f in required if f.type != "category" and f.transform == "standard")
    splined = _names(f for f in required if f.transform == "spline")
    categories = [f for f in required if f.type == "category"]
    if numbers:
        found.append(("num", StandardScaler(), numbers))
    if splined:
        found.append(("num_spline", Pipeline(_spline_steps()), splined))
    if categories:
        found.append(("cat", _encoder(categories), _names(categories)))
    found += [_imputed(name, group) for name, group in _groups(nullable)]
    indicated = [f for f in nullable if f.missing_indicator]
    if any(f.type != "category" for f in indicated):
        names = _names(f for f in indicated if f.type != "category")
        found.append(("missing_num", MissingIndicator(features="all"), names))
    if any(f.type == "category" for f in indicated):
        names = _names(f for f in indicated if f.type == "category")
        empty = OneHotEncoder(
            categories=[[MISSING_CATEGORY]] * len(names),
            handle_unknown="ignore",
            sparse_output=False,
        )
        found.append(("missing_cat", empty, names))
    return found


def imputed_values(pipeline: Pipeline) -> dict[str, float | str]:
    """The value each nullable feature's imputer learned (or was given), by feature name."""
    values: dict[str, float | str] = {}
    for _, transformer, columns in pipeline.named_steps["pre"].transformers_:
        if isinstance(transformer, Pipeline) and "impute" in transformer.named_steps:
            imputer = transformer.named_steps["impute"]
            for name, value in zip(columns, imputer.statistics_, strict=True):
                values[name] = value if isinstance(value, str) else float(value)
    return values


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


def _require_observed(spec: TaskSpec, data: Dataset) -> None:
    """An imputer learns nothing from a column missing in every training row (scikit-learn would
    drop the column, and the graph would no longer match the spec)."""
    empty = [name for name, seen in (~missing_mask(spec, data.X)).any().items() if not seen]
    if empty:
        raise DataError(
            f"{data.source}: {', '.join(empty)} missing in every training row; "
            "more rows with a value are needed to learn what to impute"
        )


def _names(features: Any) -> list[str]:
    return [f.name for f in features]


def _encoder(features: Sequence[FeatureSpec]) -> OneHotEncoder:
    categories = [list(f.categories or ()) for f in features]
    return OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)


def _groups(nullable: Sequence[FeatureSpec]) -> list[tuple[str, list[FeatureSpec]]]:
    """Nullable features grouped by kind and (rule, fill value), in order of first appearance;
    each group's name is its branch name (`num_median`, `cat_constant_0`, ...)."""
    groups: dict[tuple[bool, str, object, str], list[FeatureSpec]] = {}
    for feature in nullable:
        is_category = feature.type == "category"
        fill = feature.fill_value if is_category else _number(feature.fill_value)
        key = (is_category, str(feature.rule), fill, feature.transform)
        groups.setdefault(key, []).append(feature)
    named: list[tuple[str, list[FeatureSpec]]] = []
    constants = 0
    for (is_category, rule, _, transform), group in groups.items():
        name = f"{'cat' if is_category else 'num'}_{rule}"
        if rule == "constant":
            name, constants = f"{name}_{constants}", constants + 1
        if transform == "spline":
            name += "_spline"
        named.append((name, group))
    return named


def _imputed(name: str, group: list[FeatureSpec]) -> Branch:
    first = group[0]
    if first.type == "category":
        imputer = SimpleImputer(
            missing_values=MISSING_CATEGORY, strategy=first.rule, fill_value=first.fill_value
        )
        steps: list[tuple[str, Any]] = [("impute", imputer), ("encode", _encoder(group))]
    else:
        imputer = SimpleImputer(
            missing_values=np.nan, strategy=first.rule, fill_value=_number(first.fill_value)
        )
        steps = [("impute", imputer)]
        steps += _spline_steps() if first.transform == "spline" else [("scale", StandardScaler())]
    return name, Pipeline(steps), _names(group)


def _spline_steps() -> list[tuple[str, Any]]:
    """Cubic B-splines on uniform knots over each feature's training range (constant beyond
    it, so a value outside still gets the edge's answer), then scaled like any number; the
    graph computes them with training/converters.py."""
    spline = SplineTransformer(n_knots=SPLINE_KNOTS, degree=3, extrapolation="constant")
    return [("spline", spline), ("scale", StandardScaler())]


def _number(value: FillValue | None) -> float | None:
    return None if value is None else float(value)


def fit_pipeline(spec: TaskSpec, mlp: MLPSpec, seed: int, data: Dataset) -> Pipeline:
    """Build and fit on `data`, single-threaded (faster for these small matrices, and repeatable).

    The preprocessing is fitted once; then `mlp.ensemble` networks (seeds seed, seed+1, ...) are
    fitted on its output and merged into one (training/ensemble.py); one member is exactly the
    plain pipeline. The batch size is capped at what early stopping leaves for training, so a
    small CSV trains instead of tripping scikit-learn's clipping warning.
    """
    _require_observed(spec, data)
    held_out = math.ceil(len(data) * EARLY_STOPPING_FRACTION) if mlp.early_stopping else 0
    usable = len(data) - held_out
    mlp = mlp.model_copy(update={"batch_size": max(1, min(mlp.batch_size, usable))})
    pipeline = build_pipeline(spec, mlp, seed)
    with threadpool_limits(1):
        features = pipeline.named_steps["pre"].fit_transform(data.X, data.y)
        members = [build_mlp(mlp, seed + i).fit(features, data.y) for i in range(mlp.ensemble)]
    pipeline.steps[-1] = ("mlp", merge(members))
    return pipeline
