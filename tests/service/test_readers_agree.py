"""Two readers of one format give the same answer: the API's CSV read from its bytes and by the
csv module, and the score command's byte-level block reader against its row path. Same output
bytes, same problems (message, index, field, value) on the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.batch.scoring import BlockResult, BlockScorer
from service.codecs import csv as predict
from service.codecs.probabilities import probability_text
from service.codecs.v1_json import QUICK_RECORDS
from service.errors import InvalidInput, ServiceError
from service.manifest import Feature, read_pointer
from service.model import LoadedModel, load_model
from service.validation import Batch, batch_from_records

MODELS = Path(__file__).resolve().parents[2] / "models"
TASKS = ("churn", "draft_pick", "digits")
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
Draw = Callable[[st.SearchStrategy[Any]], Any]
ODD_JSON: list[Any] = ["7", "", None, True, False, [1], {"a": 1}, 0.5, -1e9, 1e300, 2**63]
ODD_CELLS = ["", " ", "x", "nan", "inf", "-inf", "1e400", "0.5", "yes", "No", "-1", "1_0", " 3 "]


@pytest.fixture(scope="module")
def models() -> dict[str, LoadedModel]:
    return {task: load_model(MODELS / task / read_pointer(MODELS / task), 1) for task in TASKS}


def value_of(feature: Feature) -> st.SearchStrategy[Any]:
    if feature.type == "category":
        return st.sampled_from(feature.categories or [])
    if feature.type == "bool":
        return st.booleans()
    low = -1e6 if feature.min is None else feature.min
    high = 1e6 if feature.max is None else feature.max
    if feature.type == "int":
        return st.integers(math.ceil(low), math.floor(high))
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def records_for(model: LoadedModel, draw: Draw) -> list[Any]:
    features = model.manifest.features
    record = st.fixed_dictionaries({f.name: value_of(f) for f in features})
    records: list[Any] = draw(st.lists(record, min_size=QUICK_RECORDS + 1, max_size=40))
    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(records) - 1))
        name = draw(st.sampled_from([f.name for f in features]))
        change = draw(st.sampled_from(["value", "drop", "extra", "reorder", "not a dict"]))
        if not isinstance(records[index], dict):  # replaced by a non-record earlier
            continue
        if change == "value":
            records[index][name] = draw(st.sampled_from(ODD_JSON))
        elif change == "drop":
            records[index].pop(name, None)
        elif change == "extra":
            records[index]["unexpected"] = 1
        elif change == "reorder":
            records[index] = dict(reversed(list(records[index].items())))
        else:
            records[index] = draw(st.sampled_from([[], "record", None]))
    return records


def outcome(run: Callable[[], Any]) -> Any:
    """What a call gives: its value, or its error's class, message and problems."""
    try:
        return run()
    except ServiceError as exc:
        problems = getattr(exc, "problems", None)
        return type(exc).__name__, str(exc), problems, getattr(exc, "location", None)


def same_batches(a: Batch, b: Batch) -> None:
    assert a.size == b.size
    assert list(a.inputs) == list(b.inputs)
    for name in a.inputs:
        assert a.inputs[name].dtype == b.inputs[name].dtype
        np.testing.assert_array_equal(a.inputs[name], b.inputs[name])
    assert a.flags() == b.flags()


def cell_of(feature: Feature, value: Any, fixed: bool) -> str:
    """A cell as a person or a spreadsheet writes it: floats in full or with 2 decimals (the
    form `service.codecs.csv_blocks` reads from bytes; the full form takes the text path)."""
    if feature.type == "bool":
        return "1" if value else "0"
    if fixed and feature.type == "float":
        return f"{value:.2f}"
    return str(value)


def csv_body(model: LoadedModel, draw: Draw) -> bytes:
    features = model.manifest.features
    header = [f.name for f in features] + ["note"]
    fixed = draw(st.booleans())
    rows = [
        [cell_of(f, draw(value_of(f)), fixed) for f in features]
        + [draw(st.sampled_from(["a", ""]))]
        for _ in range(draw(st.integers(1, 30)))
    ]
    for _ in range(draw(st.integers(0, 3))):
        row = draw(st.integers(0, len(rows) - 1))
        column = draw(st.integers(0, len(header) - 1))
        change = draw(st.sampled_from(["cell", "cell", "ragged", "quote", "blank"]))
        if not rows[row]:  # a blank line inserted earlier
            continue
        if change == "cell":
            rows[row][column] = draw(st.sampled_from(ODD_CELLS))
        elif change == "ragged":
            rows[row].append("1")
        elif change == "quote":
            rows[row][column] = f'"{rows[row][column]}"'
        else:
            rows.insert(row, [])
    newline: str = draw(st.sampled_from(["\n", "\r\n"]))
    bom: str = draw(st.sampled_from(["", "\ufeff"]))
    lines = [",".join(header)] + [",".join(row) for row in rows]
    return (bom + newline.join(lines) + newline).encode("utf-8")


def table_outcome(model: LoadedModel, body: bytes, chunk_rows: int) -> Any:
    def run() -> tuple[bytes, int]:
        table = predict.predict_table(model, body, chunk_rows)
        return b"".join(table.output()), table.size

    return outcome(run)


@SETTINGS
@given(data=st.data(), task=st.sampled_from(TASKS), chunk_rows=st.sampled_from([4, 10_000]))
def test_the_block_reader_answers_as_the_csv_module(
    models: dict[str, LoadedModel],
    data: st.DataObject,
    task: str,
    chunk_rows: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both readers on every body (the block reader whatever the body's size): same answer bytes,
    same problems."""
    model = models[task]
    body = csv_body(model, data.draw)
    with monkeypatch.context() as patch:
        patch.setattr(predict, "BLOCKS_FROM_BYTES", 0)
        blocks = table_outcome(model, body, chunk_rows)
    with monkeypatch.context() as patch:
        patch.setattr(predict, "BLOCKS_FROM_BYTES", 1 << 40)
        stdlib = table_outcome(model, body, chunk_rows)
    assert blocks == stdlib


@SETTINGS
@given(data=st.data(), task=st.sampled_from(TASKS))
def test_score_blocks_match_the_row_path(
    models: dict[str, LoadedModel], data: st.DataObject, task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models[task]
    body = csv_body(model, data.draw).removeprefix("\ufeff".encode())
    header, _, block = body.partition(b"\n")
    scorer = BlockScorer(model, header.decode().strip().split(","))

    def score() -> BlockResult | tuple[str, str]:
        try:
            return scorer.score(block)
        except Exception as exc:
            return type(exc).__name__, str(exc)

    fast = score()
    with monkeypatch.context() as patch:
        patch.setattr(BlockScorer, "_score_cells", lambda self, block: None)
        slow = score()
    assert fast == slow


def test_probability_text_is_repr() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [
            rng.random(20_000),
            rng.random(2_000) * 1e-3,
            rng.random(200) * 1e-6,
            [0.0, -0.0, 1.0, 1e-4, 9.99e-5, 1e-7, 0.5, 2.5, 1e17, math.nan, math.inf],
        ]
    ).round(7)
    assert probability_text(values) == [repr(v) for v in values.tolist()]
    assert probability_text(values[::3]) == [repr(v) for v in values[::3].tolist()]
    assert probability_text(np.empty(0)) == []


def test_every_seven_decimal_value_from_1e4_to_1_formats_as_repr() -> None:
    """The claim `probability_text` rests on, checked on a 1-in-97 sample of all 10^7 values."""
    values = (np.arange(1_000, 10_000_001, 97) / 1e7).round(7)
    assert probability_text(values) == [repr(v) for v in values.tolist()]


def test_a_bad_record_after_the_quick_size_names_the_same_problem(
    models: dict[str, LoadedModel],
) -> None:
    validator = models["churn"].validator
    good = dict(models["churn"].manifest.examples[0].record)
    records: list[Any] = [dict(good) for _ in range(QUICK_RECORDS + 5)]
    records[-1]["age"] = True
    with pytest.raises(InvalidInput) as caught:
        batch_from_records(validator, records)
    (problem,) = caught.value.problems
    assert (problem.index, problem.field) == (len(records) - 1, "age")
    assert problem.msg == "Input should be a valid integer, not a boolean"
