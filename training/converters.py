"""skl2onnx converters for the scikit-learn parts it lacks: `MissingIndicator` (numbers) and
`SplineTransformer` (cubic, uniform knots).

skl2onnx 1.20 has no converter for `MissingIndicator`, and `SimpleImputer(add_indicator=True)`
fails its shape check, so a number's missing-value indicator is a separate `MissingIndicator`
branch of the ColumnTransformer, converted here as `IsNaN` then `Cast` to float (1.0 where the
value is missing), which is what scikit-learn's boolean output becomes in the MLP's input.

It has none for `SplineTransformer` either. With uniform knots every cubic B-spline is the same
bell shifted by one knot step: at distance v (in knot steps) from its centre it is
((2 - v)+^3 - 4 (1 - v)+^3) / 6. So the graph clips the value to the training range (scikit-
learn's constant extrapolation), measures it in knot steps from the range's start (small
numbers, so float32 keeps its precision), and evaluates that formula for every spline at once.
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
from sklearn.preprocessing import SplineTransformer

ALIAS = "TrainingMissingIndicator"
SPLINE_ALIAS = "TrainingSplineTransformer"
SPLINE_SETTINGS = "SplineTransformer(degree=3, knots='uniform', extrapolation='constant')"


@cache
def register_converters() -> None:
    """Teach skl2onnx our converters (once per process; later calls do nothing)."""
    update_registered_converter(
        MissingIndicator, ALIAS, _indicator_shape, _convert_indicator, overwrite=True
    )
    update_registered_converter(
        SplineTransformer, SPLINE_ALIAS, _spline_shape, _convert_spline, overwrite=True
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


def _spline_shape(operator: Any) -> None:
    """[N, F] floats in, [N, F * splines] floats out, each feature's splines together."""
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([rows, operator.raw_operator.n_features_out_])


def _convert_spline(scope: Any, operator: Any, container: Any) -> None:
    spline: SplineTransformer = operator.raw_operator
    knots = np.array([b.t for b in spline.bsplines_], dtype=np.float64)  # [F, splines + 4]
    steps = np.diff(knots, axis=1)
    if (
        spline.degree != 3
        or spline.extrapolation != "constant"
        or not spline.include_bias
        or not np.allclose(steps, steps[:, :1])
    ):
        raise ValueError(f"only {SPLINE_SETTINGS} with include_bias=True is converted")
    features, count = len(spline.bsplines_), knots.shape[1] - 4
    step = steps[:, 0]
    low, high = knots[:, 3], knots[:, -4]  # the training range of each feature
    # distance of the range's start from each spline's centre, in knot steps
    offsets = (low[:, None] - knots[:, :count]) / step[:, None] - 2.0

    def constant(name: str, values: Any, shape: list[int]) -> str:
        unique: str = scope.get_unique_variable_name(name)
        array = np.asarray(values)
        kind = TensorProto.INT64 if array.dtype.kind == "i" else TensorProto.FLOAT
        container.add_initializer(unique, kind, shape, array.ravel().tolist())
        return unique

    def node(op: str, inputs: list[str], name: str, output: str | None = None) -> str:
        result: str = output or scope.get_unique_variable_name(name)
        container.add_node(op, inputs, [result], name=scope.get_unique_operator_name(op))
        return result

    source = operator.inputs[0].full_name
    clipped = node("Max", [source, constant("low", low, [1, features])], "clipped_low")
    clipped = node("Min", [clipped, constant("high", high, [1, features])], "clipped")
    shifted = node("Sub", [clipped, constant("start", low, [1, features])], "shifted")
    steps_in = node("Div", [shifted, constant("step", step, [1, features])], "in_steps")
    column = node("Reshape", [steps_in, constant("column", np.array([0, features, 1]), [3])], "c")
    signed = node("Add", [column, constant("offsets", offsets, [features, count])], "from_centre")
    distance = node("Abs", [signed], "distance")
    near = node("Relu", [node("Sub", [constant("two", 2.0, []), distance], "2_v")], "near")
    inner = node("Relu", [node("Sub", [constant("one", 1.0, []), distance], "1_v")], "inner")
    near3 = node("Mul", [node("Mul", [near, near], "near2"), near], "near3")
    inner3 = node("Mul", [node("Mul", [inner, inner], "inner2"), inner], "inner3")
    bell = node(
        "Sub",
        [
            node("Mul", [near3, constant("sixth", 1.0 / 6.0, [])], "a"),
            node("Mul", [inner3, constant("four_sixths", 4.0 / 6.0, [])], "b"),
        ],
        "bell",
    )
    flat = constant("flat", np.array([0, features * count]), [2])
    node("Reshape", [bell, flat], "out", output=operator.outputs[0].full_name)
