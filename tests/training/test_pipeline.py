"""The pipeline built from a spec: unchanged without missing values, imputing branches with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler

from service.manifest import MISSING_CATEGORY
from tests.missing_values import load_loans_spec, write_files
from training.data import DataError, Dataset, read_csv
from training.pipeline import (
    _spline_steps,
    branches,
    build_pipeline,
    fit_pipeline,
    imputed_values,
)
from training.spec import builtin_tasks, load_spec, load_task

GROUPED = """
name = "grouped"
[target]
name = "y"
labels = ["no", "yes"]
positive = "yes"
[[features]]
name = "a"
type = "float"
min = 0
max = 9
impute = "median"
[[features]]
name = "b"
type = "float"
min = 0
max = 9
[[features]]
name = "c"
type = "int"
min = 0
max = 9
impute = "median"
[[features]]
name = "d"
type = "int"
min = 0
max = 9
impute = "constant"
fill_value = 0
[[features]]
name = "e"
type = "bool"
impute = "constant"
fill_value = 1
[[features]]
name = "f"
type = "float"
min = 0
max = 9
impute = "constant"
fill_value = 0.0
[[features]]
name = "g"
type = "category"
categories = ["x", "y"]
impute = "most_frequent"
missing_indicator = true
[[features]]
name = "h"
type = "float"
min = 0
max = 9
impute = "mean"
missing_indicator = true
[[features]]
name = "i"
type = "category"
categories = ["p", "q"]
"""


def described(transformers: list[tuple[str, Any, list[str]]]) -> list[tuple[Any, ...]]:
    return [(name, type(t).__name__, t.get_params(), cols) for name, t, cols in transformers]


@pytest.mark.parametrize("task", builtin_tasks())
def test_a_spec_without_missing_values_keeps_the_pipeline_it_had(task: str) -> None:
    """Scaler and encoder as before imputation existed, so retraining reproduces the metrics."""
    spec = load_task(task)
    pipeline = build_pipeline(spec, spec.mlp, 42)
    assert [name for name, _ in pipeline.steps] == ["pre", "mlp"]
    standard = [n for n in spec.numeric_features if spec.feature(n).transform == "standard"]
    splined = [n for n in spec.numeric_features if spec.feature(n).transform == "spline"]
    expected: list[tuple[str, Any, list[str]]] = [("num", StandardScaler(), standard)]
    if splined:
        expected.append(("num_spline", Pipeline(_spline_steps()), splined))
    if spec.categorical_features:
        categories = [list(spec.feature(n).categories or ()) for n in spec.categorical_features]
        encoder = OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)
        expected.append(("cat", encoder, spec.categorical_features))
    pre = pipeline.named_steps["pre"]
    assert [(n, type(t).__name__, c) for n, t, c in pre.transformers] == [
        (n, type(t).__name__, c) for n, t, c in expected
    ]
    assert pre.remainder == "drop"


def test_spline_features_get_their_own_branch_required_or_imputed(tmp_path: Path) -> None:
    text = GROUPED.replace(
        'name = "b"\ntype = "float"', 'name = "b"\ntype = "float"\ntransform = "spline"'
    )
    text = text.replace(
        'name = "c"\ntype = "int"', 'name = "c"\ntype = "int"\ntransform = "spline"'
    )
    path = tmp_path / "splines.toml"
    path.write_text(text, encoding="utf-8")
    found = {name: (step, columns) for name, step, columns in branches(load_spec(path))}
    assert found["num_spline"][1] == ["b"] and "num" not in found
    assert found["num_median"][1] == ["a"] and found["num_median_spline"][1] == ["c"]
    imputed = found["num_median_spline"][0]
    assert list(imputed.named_steps) == ["impute", "spline", "scale"]
    spline = imputed.named_steps["spline"]
    assert isinstance(spline, SplineTransformer) and spline.degree == 3


def test_nullable_features_are_grouped_by_rule_and_fill_value(tmp_path: Path) -> None:
    path = tmp_path / "grouped.toml"
    path.write_text(GROUPED, encoding="utf-8")
    found = branches(load_spec(path))
    assert [(name, columns) for name, _, columns in found] == [
        ("num", ["b"]),
        ("cat", ["i"]),
        ("num_median", ["a", "c"]),
        ("num_constant_0", ["d", "f"]),  # 0 and 0.0 are one fill value
        ("num_constant_1", ["e"]),
        ("cat_most_frequent", ["g"]),
        ("num_mean", ["h"]),
        ("missing_num", ["h"]),
        ("missing_cat", ["g"]),
    ]
    by_name = {name: step for name, step, _ in found}
    imputer = by_name["num_constant_1"].named_steps["impute"]
    assert isinstance(imputer, SimpleImputer) and imputer.fill_value == 1.0
    category = by_name["cat_most_frequent"].named_steps["impute"]
    assert category.missing_values == MISSING_CATEGORY and category.strategy == "most_frequent"
    assert isinstance(by_name["missing_num"], MissingIndicator)
    assert by_name["missing_cat"].categories == [[MISSING_CATEGORY]]
    assert [n for n, _, _ in branches(load_spec(path))] == [n for n, _, _ in found]


def test_the_fitted_imputers_learn_from_the_training_rows(tmp_path: Path) -> None:
    spec_path, csv_path = write_files(tmp_path)
    spec = load_loans_spec()
    data = read_csv(load_spec(spec_path), csv_path)
    mlp = spec.mlp.model_copy(update={"max_iter": 5})
    pipeline = fit_pipeline(spec, mlp, 0, data)
    learned = imputed_values(pipeline)
    X = data.X
    assert learned["income"] == np.nanmedian(X["income"])
    assert learned["debt_to_income"] == pytest.approx(np.nanmean(X["debt_to_income"]), rel=1e-12)
    assert learned["years_employed"] == 0.0 and learned["purpose"] == "other"
    assert learned["has_guarantor"] == X["has_guarantor"].mode().iloc[0]
    regions = X["region"][X["region"] != MISSING_CATEGORY]
    assert learned["region"] == regions.mode().iloc[0]
    assert set(learned) == set(spec.nullable_features)
    # The indicator columns are 1.0 exactly where the value is missing.
    transformed = pipeline.named_steps["pre"].transform(X)
    np.testing.assert_array_equal(
        transformed[:, -2:], np.column_stack([X["debt_to_income"].isna(), X["purpose"] == ""])
    )


def test_a_feature_missing_in_every_training_row_is_refused(tmp_path: Path) -> None:
    """The whole file had values, but the rows it trains on do not: nothing to impute from."""
    _, csv_path = write_files(tmp_path, rows=200)
    spec = load_loans_spec()
    data = read_csv(spec, csv_path)
    X = data.X.assign(income=np.nan)
    with pytest.raises(DataError, match=r"income missing in every training row"):
        fit_pipeline(spec, spec.mlp, 0, Dataset(X, data.y, None, "t", "t"))
