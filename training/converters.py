"""skl2onnx converters for the scikit-learn parts it lacks: `MissingIndicator` (numbers).

skl2onnx 1.20 has no converter for `MissingIndicator`, and `SimpleImputer(add_indicator=True)`
fails its shape check, so a number's missing-value indicator is a separate `MissingIndicator`
branch of the ColumnTransformer, converted here as `IsNaN` then `Cast` to float (1.0 where the
value is missing), which is what scikit-learn's boolean output becomes in the MLP's input.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import FloatTensorType
from skl2onnx.common.utils import check_input_and_output_numbers
from sklearn.impute import MissingIndicator

ALIAS = "TrainingMissingIndicator"


@cache
def register_converters() -> None:
    """Teach skl2onnx our converters (once per process; later calls do nothing)."""
    update_registered_converter(
        MissingIndicator, ALIAS, _indicator_shape, _convert_indicator, overwrite=True
    )


def _indicator_shape(operator: Any) -> None:
    """[N, C] floats in, [N, K] floats out: one column per indicated feature."""
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    indicator = operator.raw_operator
    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([rows, len(indicator.features_)])


def _convert_indicator(scope: Any, operator: Any, container: Any) -> None:
    indicator: MissingIndicator = operator.raw_operator
    if not (isinstance(indicator.missing_values, float) and np.isnan(indicator.missing_values)):
        raise ValueError("only MissingIndicator(missing_values=np.nan) is converted")
    source = operator.inputs[0].full_name
    if len(indicator.features_) != indicator.n_features_in_:  # features="missing-only"
        columns = scope.get_unique_variable_name("indicator_columns")
        container.add_initializer(
            columns, TensorProto.INT64, [len(indicator.features_)], list(indicator.features_)
        )
        picked = scope.get_unique_variable_name("indicator_input")
        container.add_node(
            "Gather", [source, columns], [picked], axis=1, name=scope.get_unique_operator_name("G")
        )
        source = picked
    flags = scope.get_unique_variable_name("is_missing")
    container.add_node("IsNaN", [source], [flags], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node(
        "Cast",
        [flags],
        [operator.outputs[0].full_name],
        to=TensorProto.FLOAT,
        name=scope.get_unique_operator_name("Cast"),
    )
