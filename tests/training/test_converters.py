"""Our skl2onnx converter for MissingIndicator: IsNaN as floats, for all or some columns."""

from __future__ import annotations

import numpy as np
import pytest
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.impute import MissingIndicator

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
