"""`bytelines` writes exactly the bytes of the string path: `render.prediction_columns` cells
joined with commas onto each line (`BlockScorer._written`), for any probabilities and flags.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.batch.scoring import BlockScorer
from service.codecs import csv_blocks
from service.codecs.csv import prediction_columns
from service.codecs.csv_blocks import scored_lines, writable
from service.codecs.probabilities import probability_bytes, probability_text
from service.manifest import read_pointer
from service.model import LoadedModel, Prediction, load_model
from service.validation import Batch

MODELS = Path(__file__).resolve().parents[2] / "models"
TASKS = ("churn", "digits")  # binary and multiclass
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
EDGES = [0.0, 1.0, 1e-4, 9.99e-5, 1.0001e-4, 9.99995e-5, 5e-5, 1e-7, 5e-8, 4.9e-8, 0.5, 0.9999999]
ODD = [-0.0, -0.25, 1.5, 12345.678, 1e17, math.nan, math.inf, -math.inf]
# Cell text without quotes, commas, CRs, LFs or NULs (a plain block), some of it not ASCII.
CELL = st.text(st.characters(exclude_characters='",\r\n\0', codec="utf-8"), max_size=12)
LONG_CELL = st.text(st.sampled_from("abc é中"), min_size=80, max_size=400)

probability = st.one_of(
    st.sampled_from(EDGES),
    st.integers(0, 10**7).map(lambda k: k / 1e7),
    st.builds(lambda k, j: k // 10**j * 10**j / 1e7, st.integers(0, 10**7), st.integers(1, 7)),
    st.floats(0.0, 2e-4),
    st.floats(0.0, 1.0),
)


@pytest.fixture(scope="module")
def models() -> dict[str, LoadedModel]:
    return {task: load_model(MODELS / task / read_pointer(MODELS / task), 1) for task in TASKS}


def written(text: str, model: LoadedModel, batch: Batch, prediction: Prediction) -> bytes:
    """The string path: `BlockScorer._score_cells`'s lines and `BlockScorer._written`'s join."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    extras = prediction_columns(model, batch, prediction)
    return ("\r\n".join(map(",".join, zip(lines, *extras, strict=True))) + "\r\n").encode()


def flagged_batch(model: LoadedModel, rows: list[list[bool]]) -> Batch:
    """A batch of `len(rows)` records, each flagged out of range on the numeric features marked
    in its row (the first features, as many as the row is long)."""
    names = [f.name for f in model.validator.numeric][: len(rows[0]) if rows else 0]
    out_of_range = {
        name: np.array(column, dtype=np.bool_)
        for name, column in zip(names, zip(*rows, strict=True), strict=True)
    }
    return Batch(len(rows), {}, out_of_range)


def cells(data: npt.NDArray[np.uint8], sizes: npt.NDArray[np.int64]) -> list[str]:
    """The cells of `probability_bytes`, checking that only NULs follow each."""
    assert not data[np.arange(data.shape[1]) >= sizes[:, None]].any()
    return [bytes(row[:size]).decode() for row, size in zip(data, sizes.tolist(), strict=True)]


@given(values=st.lists(st.one_of(probability, st.sampled_from(ODD)), min_size=1, max_size=60))
@SETTINGS
def test_probability_bytes_are_the_probability_text(values: list[float]) -> None:
    rounded = np.array(values).round(7)
    data, sizes = probability_bytes(rounded, b",")
    assert cells(data, sizes) == ["," + text for text in probability_text(rounded)]


def test_every_seven_decimal_value_writes_as_repr() -> None:
    """All values below 1e-3 (exponent notation below 1e-4) and every 7th one above."""
    values = np.concatenate([np.arange(10_000), np.arange(10_000, 10**7 + 1, 7)]) / 1e7
    data, sizes = probability_bytes(values)
    assert data[data != 0].tobytes() == "".join(map(repr, values.tolist())).encode()
    assert sizes.tolist() == [len(repr(v)) for v in values.tolist()]


@st.composite
def blocks(draw: st.DrawFn, columns: int) -> str:
    """Plain CSV lines of `columns` cells: LF or CRLF ends, the last one perhaps missing."""
    rows = draw(st.integers(1, 40))
    cell = st.one_of(CELL, CELL, CELL, LONG_CELL)
    lines = [
        ",".join(draw(st.lists(cell, min_size=columns, max_size=columns))) for _ in range(rows)
    ]
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return end.join(lines) + (end if draw(st.booleans()) else "")


@given(data=st.data(), task=st.sampled_from(TASKS), columns=st.integers(2, 5))
@SETTINGS
def test_scored_lines_are_the_written_lines(
    models: dict[str, LoadedModel], data: st.DataObject, task: str, columns: int
) -> None:
    model = models[task]
    text = data.draw(blocks(columns))
    block = csv_blocks.split(text.encode(), columns)
    assert block is not None
    width = len(model.manifest.labels)
    values = data.draw(
        st.lists(probability, min_size=block.rows * width, max_size=block.rows * width)
    )
    probabilities = np.array(values, dtype=np.float32).reshape(block.rows, width)
    prediction = Prediction(probabilities, model.decide(probabilities))
    names = [f.name for f in model.validator.numeric][:3]
    flags = data.draw(
        st.lists(
            st.lists(st.booleans(), min_size=len(names), max_size=len(names)),
            min_size=block.rows,
            max_size=block.rows,
        )
    )
    batch = flagged_batch(model, flags)

    assert scored_lines(block, model, batch, prediction) == written(text, model, batch, prediction)


def test_lines_far_shorter_and_longer_than_most_are_written(
    models: dict[str, LoadedModel],
) -> None:
    """A first line shorter than the window, and lines cut into pieces, one of them flagged."""
    model = models["digits"]
    text = "a,b\n" + "x" * 300 + ",y\r\n" + "c,d\n" * 5 + "é" * 500 + ",z"
    block = csv_blocks.split(text.encode(), 2)
    assert block is not None
    probabilities = np.linspace(0.0, 1e-3, 80, dtype=np.float32).reshape(8, 10)
    prediction = Prediction(probabilities, model.decide(probabilities))
    batch = Batch(8, {}, {"pixel_0_0": np.arange(8) % 3 == 1, "pixel_0_1": np.arange(8) == 7})
    assert scored_lines(block, model, batch, prediction) == written(text, model, batch, prediction)


@pytest.mark.parametrize("labels", [["no", "a much longer label"], ["é", "中文"], ["", "x y"]])
def test_labels_of_any_length_and_script_are_written(
    models: dict[str, LoadedModel], labels: list[str]
) -> None:
    model = models["churn"]
    model = replace(model, manifest=model.manifest.model_copy(update={"labels": labels}))
    text = "a,b\nlonger line,c\r\n"
    block = csv_blocks.split(text.encode(), 2)
    assert block is not None
    probabilities = np.array([[0.25, 0.75], [0.9, 0.1]], dtype=np.float32)
    prediction = Prediction(probabilities, model.decide(probabilities))
    batch = Batch(2, {}, {})
    assert scored_lines(block, model, batch, prediction) == written(text, model, batch, prediction)


def test_labels_holding_a_nul_are_not_writable(models: dict[str, LoadedModel]) -> None:
    model = models["churn"]
    assert writable(model)
    model = replace(model, manifest=model.manifest.model_copy(update={"labels": ["a\0", "b"]}))
    assert not writable(model)


def test_a_scored_block_is_the_row_path_block(
    models: dict[str, LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through `BlockScorer.score`: CRLF ends, no final one, and flagged rows (low salaries)."""
    model = models["churn"]
    header = [f.name for f in model.manifest.features]
    records = [example.record for example in model.manifest.examples] * 3
    lines = [
        ",".join(
            str(int(v)) if isinstance(v, bool) else str(v)
            for v in (record[name] for name in header)
        )
        for record in records
    ]
    lines[1] = lines[1].rsplit(",", 1)[0] + ",12.5"  # estimated_salary below the training range
    block = "\r\n".join(lines).encode()
    scorer = BlockScorer(model, header)

    fast = scorer.score(block)
    cells = scorer._score_cells(block)
    assert cells is not None and cells.output == fast.output  # the bytes path wrote it
    with monkeypatch.context() as patch:
        patch.setattr(BlockScorer, "_score_cells", lambda self, block: None)
        slow = scorer.score(block)

    assert fast == slow
    assert b",estimated_salary\r\n" in fast.output
