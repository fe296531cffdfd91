"""Our skl2onnx converters: MissingIndicator (IsNaN as floats, for all or some columns) and
SplineTransformer (cubic, uniform knots, constant beyond the training range)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.impute import MissingIndicator
from sklearn.preprocessing import SplineTransformer

from training.converters import register_converters
from training.export import ML_OPSET, TARGET_OPSET, open_session

NAN = np.nan
TRAIN = np.array([[1.0, NAN, 3.0], [NAN, 2.0, 4.0], [0.0, 5.0, 6.0]])
ROWS = np.array([[NAN, NAN, NAN], [1.0, 2.0, 3.0], [NAN, 0.0, NAN]], dtype=np.float32)


@pytest.mark.parametrize(("features", "columns"), [("all", 3), ("missing-only", 2)])
def test_a_missing_indicator_converts_to_the_same_flags(features: str, columns: int) -> None:
    indicator = MissingIndicator(features=features, error_on_new=False).fit(TRAIN)
    assert len(indicator.features_) == columns  # "missing-only": column 2 was never missing
    register_converters()
    model = to_onnx(
        indicator,
        initial_types=[("X", FloatTensorType([None, 3]))],
        target_opset={"": TARGET_OPSET, "ai.onnx.ml": ML_OPSET},
    )
    (flags,) = open_session(model.SerializeToString()).run(None, {"X": ROWS})
    assert flags.dtype == np.float32
    np.testing.assert_array_equal(flags, indicator.transform(ROWS).astype(np.float32))


def _spline_session(spline: SplineTransformer, columns: int) -> ort.InferenceSession:
    register_converters()
    model = to_onnx(
        spline,
        initial_types=[("X", FloatTensorType([None, columns]))],
        target_opset={"": TARGET_OPSET, "ai.onnx.ml": ML_OPSET},
    )
    return open_session(model.SerializeToString())


SPLINE_TRAIN = np.c_[
    np.random.default_rng(0).normal(40, 12, 300),  # an age
    np.random.default_rng(1).uniform(0, 250_000, 300),  # a balance: large numbers
    np.random.default_rng(2).integers(1, 5, 300),  # a count with four values
]


@pytest.mark.parametrize("knots", [3, 5, 9])
def test_a_spline_transformer_converts_to_the_same_basis(knots: int) -> None:
    spline = SplineTransformer(n_knots=knots, degree=3).fit(SPLINE_TRAIN)
    session = _spline_session(spline, 3)
    beyond = np.array([[-50.0, -1.0, 0.0], [150.0, 9e6, 40.0]])  # outside the training range
    rows = np.r_[SPLINE_TRAIN, beyond].astype(np.float32)
    (basis,) = session.run(None, {"X": rows})
    assert basis.shape == (len(rows), 3 * (knots + 2))
    np.testing.assert_allclose(basis, spline.transform(rows.astype(np.float64)), atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=20))
def test_any_value_gets_the_spline_basis_scikit_learn_gives(values: list[float]) -> None:
    spline = _FITTED_SPLINE
    rows = np.array([[v, v, v] for v in values], dtype=np.float32)
    (basis,) = _SPLINE_SESSION.run(None, {"X": rows})
    np.testing.assert_allclose(basis, spline.transform(rows.astype(np.float64)), atol=1e-6)


_FITTED_SPLINE = SplineTransformer(n_knots=5, degree=3).fit(SPLINE_TRAIN)
_SPLINE_SESSION = _spline_session(_FITTED_SPLINE, 3)


@pytest.mark.parametrize(
    "settings_",
    [{"degree": 2}, {"knots": "quantile"}, {"extrapolation": "linear"}, {"include_bias": False}],
)
def test_other_spline_settings_are_refused(settings_: dict[str, object]) -> None:
    spline = SplineTransformer(n_knots=5, **settings_).fit(SPLINE_TRAIN)
    with pytest.raises(Exception, match="only SplineTransformer"):
        _spline_session(spline, 3)
