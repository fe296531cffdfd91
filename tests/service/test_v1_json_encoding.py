"""`byterecords` writes exactly what orjson writes for `prediction_records`, both ways (record
by record, and as a byte matrix), for any probabilities (exponent notation, NaN and infinities
included), flags (out of range and imputed) and labels.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.codecs.probabilities import SLICE_ROWS, rounded
from service.codecs.v1_json import MATRIX_ROWS, formatted, matrix, prediction_json
from service.model import LoadedModel, Prediction
from service.validation import Batch
from tests.service.test_csv_blocks_writing import (
    ODD,
    SETTINGS,
    TASKS,
    flagged_batch,
    models,
    probability,
)

__all__ = ["models"]  # the fixture, shared with the CSV byte writer's tests


def prediction_records(
    model: LoadedModel, batch: Batch, prediction: Prediction
) -> list[dict[str, Any]]:
    """Per record: label, probability, probabilities by label, out_of_range and imputed
    (features).

    One rounding and one `tolist` for the whole batch; the chosen probability is read from the
    rounded row rather than computed again.
    """
    labels = model.manifest.labels
    classes = prediction.classes.tolist()
    rows = rounded(prediction.probabilities).tolist()
    if model.manifest.kind == "binary":
        positive = model.manifest.positive_index
        chosen = [row[positive] for row in rows]
    else:
        chosen = [row[index] for row, index in zip(rows, classes, strict=True)]
    return [
        {
            "label": labels[index],
            "probability": p,
            "probabilities": dict(zip(labels, row, strict=True)),
            "out_of_range": flags,
            "imputed": imputed,
        }
        for index, p, row, flags, imputed in zip(
            classes, chosen, rows, batch.flags(), batch.imputed_flags(), strict=True
        )
    ]


def with_imputed(batch: Batch, model: LoadedModel, rows: list[list[bool]]) -> Batch:
    """The batch with the features marked in each row imputed (the last features first, so
    they differ from the out-of-range ones)."""
    names = [f.name for f in reversed(model.manifest.features)][: len(rows[0]) if rows else 0]
    imputed = {
        name: np.array(column, dtype=np.bool_)
        for name, column in zip(names, zip(*rows, strict=True), strict=True)
        if any(column)
    }
    return replace(batch, imputed=imputed)


def expected(model: LoadedModel, batch: Batch, prediction: Prediction) -> bytes:
    return orjson.dumps(prediction_records(model, batch, prediction))


@given(data=st.data(), task=st.sampled_from(TASKS), rows=st.integers(1, 40))
@SETTINGS
def test_records_are_the_orjson_records(
    models: dict[str, LoadedModel], data: st.DataObject, task: str, rows: int
) -> None:
    model = models[task]
    width = len(model.manifest.labels)
    value = st.one_of(probability, probability, probability, st.sampled_from(ODD))
    values = data.draw(st.lists(value, min_size=rows * width, max_size=rows * width))
    probabilities = np.array(values, dtype=np.float32).reshape(rows, width)
    prediction = Prediction(probabilities, model.decide(probabilities))
    flags = data.draw(st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=rows))
    missing = data.draw(st.lists(st.lists(st.booleans(), min_size=2, max_size=2), min_size=rows))
    batch = with_imputed(flagged_batch(model, flags[:rows]), model, missing[:rows])

    assert formatted(model, batch, prediction) == expected(model, batch, prediction)
    assert matrix(model, batch, prediction) == expected(model, batch, prediction)


@pytest.mark.parametrize("task", TASKS)
def test_batches_of_several_slices_splice_every_flag(
    models: dict[str, LoadedModel], task: str
) -> None:
    """Flags on the first and last record and at every slice edge, across three slices (and
    imputed features there and just before)."""
    model = models[task]
    rows = 2 * SLICE_ROWS + 7
    width = len(model.manifest.labels)
    probabilities = np.random.default_rng(3).dirichlet(np.ones(width), rows).astype(np.float32)
    probabilities[5] = [math.nan] + [0.0] * (width - 1)  # written as null
    prediction = Prediction(probabilities, model.decide(probabilities))
    hit = np.zeros(rows, dtype=np.bool_)
    hit[[0, SLICE_ROWS - 1, SLICE_ROWS, 2 * SLICE_ROWS, rows - 1]] = True
    names = [f.name for f in model.validator.numeric]
    last = model.manifest.features[-1].name
    imputed = {last: np.roll(hit, -1) | hit}
    batch = Batch(rows, {}, {names[0]: hit, names[1]: np.roll(hit, 1)}, imputed)

    assert rows >= MATRIX_ROWS  # so the matrix writes it
    body = prediction_json(model, batch, prediction)
    assert body == expected(model, batch, prediction)
    assert formatted(model, batch, prediction) == body
    assert len(orjson.loads(body)) == rows


@pytest.mark.parametrize("labels", [["no", "a much longer label"], ['quo"te', "中文\n"], ["", "x"]])
def test_labels_are_quoted_as_orjson_quotes_them(
    models: dict[str, LoadedModel], labels: list[str]
) -> None:
    model = models["churn"]
    model = replace(model, manifest=model.manifest.model_copy(update={"labels": labels}))
    probabilities = np.array([[0.25, 0.75], [0.9, 0.1], [1.0, 0.0]], dtype=np.float32)
    prediction = Prediction(probabilities, model.decide(probabilities))
    batch = flagged_batch(model, [[False], [True], [False]])
    assert formatted(model, batch, prediction) == expected(model, batch, prediction)
    assert matrix(model, batch, prediction) == expected(model, batch, prediction)


def test_no_records_is_an_empty_array(models: dict[str, LoadedModel]) -> None:
    model = models["churn"]
    prediction = Prediction(np.empty((0, 2), dtype=np.float32), np.empty(0, dtype=np.intp))
    assert prediction_json(model, Batch(0, {}, {}), prediction) == b"[]"
