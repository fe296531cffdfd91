"""`service.codecs.v1_json`, msgspec's fast path for v1 JSON bodies, against the general path.

Where the fast path reads a body it must give exactly the general path's batch (same float32
inputs to the bit, same categories, same out-of-range flags); anything else it must leave to the
general path (None), which reads it or names what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.codecs import parse_json
from service.codecs.v1_json import RecordsDecoder, column_reader, records_decoder, records_of
from service.errors import ServiceError
from service.manifest import read_pointer
from service.model import LoadedModel, load_model
from service.validation import Batch, Validator, batch_from_records
from tests.service.helpers import assert_same

MODELS = Path(__file__).resolve().parents[2] / "models"
LIMIT = 1000


@pytest.fixture(scope="module")
def churn() -> LoadedModel:
    return load_model(MODELS / "churn" / read_pointer(MODELS / "churn"), 1)


def general(model: LoadedModel, body: bytes) -> Batch | None:
    """The general path's batch, or None where it refuses the body."""
    try:
        return batch_from_records(model.validator, records_of(parse_json(body), LIMIT))
    except ServiceError:
        return None


def body_of(records: list[list[tuple[str, Any]]]) -> bytes:
    """JSON text written by hand, so a record may repeat a key."""
    encoded = [
        b"{" + b",".join(orjson.dumps(k) + b":" + _json(v) for k, v in pairs) + b"}"
        for pairs in records
    ]
    return b'{"records":[' + b",".join(encoded) + b"]}"


def _json(value: Any) -> bytes:
    """orjson's text, and Python's for integers past 64 bits (which orjson does not write)."""
    return (
        str(value).encode()
        if isinstance(value, int) and abs(value) >= 2**63
        else orjson.dumps(value)
    )


@pytest.mark.parametrize("size", [1, 16, 17, 500])
def test_valid_bodies_take_the_fast_path_with_the_general_paths_batch(
    churn: LoadedModel, size: int
) -> None:
    examples = [example.record for example in churn.manifest.examples]
    records = [examples[i % len(examples)] for i in range(size)]
    body = orjson.dumps({"records": records})
    fast = records_decoder(churn.validator).batch(body, LIMIT)
    slow = general(churn, body)
    assert fast is not None and slow is not None
    assert_same(fast, slow)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"records": []}',
        b'{"records": {}}',
        b'{"records": [], "extra": 1}',
        b'{"records": [{"age": 30}]}',
        b'{"records": [1]}',
        b'{"records": [{"age": NaN}]}',
        b'{"records": [{"age": 1e400}]}',
        b'{"records": [{"age": 30}',
        b'{"records": [{"geography": "\xff"}]}',  # bad UTF-8 in a string
    ],
)
def test_bodies_it_cannot_read_are_left_to_the_general_path(
    churn: LoadedModel, body: bytes
) -> None:
    assert records_decoder(churn.validator).batch(body, LIMIT) is None


@pytest.mark.parametrize("size", [1, 17])
def test_an_unknown_category_is_left_to_the_general_path_which_names_it(
    churn: LoadedModel, size: int
) -> None:
    """msgspec checks categories as it decodes them: a value not allowed is not decoded."""
    records = [dict(churn.manifest.examples[0].record) for _ in range(size)]
    records[-1]["geography"] = "Narnia"
    body = orjson.dumps({"records": records})
    assert records_decoder(churn.validator).batch(body, LIMIT) is None
    with pytest.raises(ServiceError, match="Input should be"):
        batch_from_records(churn.validator, records_of(parse_json(body), LIMIT))


def test_more_records_than_the_limit_are_left_to_the_general_path(churn: LoadedModel) -> None:
    record = churn.manifest.examples[0].record
    body = orjson.dumps({"records": [record] * 3})
    decoder = records_decoder(churn.validator)
    assert decoder.batch(body, 3) is not None
    assert decoder.batch(body, 2) is None


def _value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(-1e6, 1e6).map(lambda v: round(v, 2)),
        st.integers(-(2**70), 2**70),
        st.integers(0, 1000),
        st.booleans(),
        st.sampled_from(["France", "Spain", "Germany", "Male", "Female", " Spain", "x", ""]),
        st.none(),
        st.just([1]),
    )


@st.composite
def _records(draw: st.DrawFn, names: list[str], example: dict[str, Any]) -> list[Any]:
    """Records near the example: some values replaced, keys dropped, repeated or added."""
    records = []
    for _ in range(draw(st.integers(1, 20))):
        pairs = [(name, example[name]) for name in names]
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.integers(0, len(pairs) - 1))
            action = draw(st.sampled_from(["replace", "drop", "repeat", "extra"]))
            name = pairs[i][0]
            if action == "replace":
                pairs[i] = (name, draw(_value()))
            elif action == "drop":
                del pairs[i]
                if not pairs:
                    pairs = [(name, example[name])]
            elif action == "repeat":
                pairs.append((name, draw(_value())))
            else:
                pairs.append(("surname", "Smith"))
        records.append(pairs)
    return records


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_whatever_it_reads_it_reads_as_the_general_path_does(
    churn: LoadedModel, data: st.DataObject
) -> None:
    example = churn.manifest.examples[0].record
    names = [f.name for f in churn.manifest.features]
    # Repeat the records past the few-records rules, so both sizes of rules are compared.
    records = data.draw(_records(names, example)) * data.draw(st.sampled_from([1, 3]))
    body = body_of(records)
    fast = records_decoder(churn.validator).batch(body, LIMIT)
    if fast is None:
        return
    slow = general(churn, body)
    assert slow is not None, body
    assert_same(fast, slow)


def test_numbers_are_read_to_the_bit_as_orjson_reads_them(churn: LoadedModel) -> None:
    """Decimal text near the float32 rounding points and big integers: the same doubles."""
    rng = np.random.default_rng(7)
    record = dict(churn.manifest.examples[0].record)
    texts = [
        f"{v:.{d}f}"
        for v, d in zip(rng.uniform(0, 2e5, 2000), rng.integers(0, 12, 2000), strict=True)
    ]
    texts += [
        "0",
        "-0.0",
        "1e3",
        "1E+2",
        "123456.78901234567890123",
        "2.5e-3",
        "999999.99999999999",
        "-0",
        "-0e0",
        "-1e-400",
        "0.000000000000000000000000000001",
    ]
    pieces = [
        orjson.dumps({**record, "balance": 0.0}).replace(
            b'"balance":0.0', b'"balance":' + t.encode()
        )
        for t in texts
    ]
    body = b'{"records":[' + b",".join(pieces) + b"]}"
    fast = records_decoder(churn.validator).batch(body, 10_000)
    slow = batch_from_records(churn.validator, records_of(parse_json(body), 10_000))
    assert fast is not None
    assert_same(fast, slow)


@pytest.mark.parametrize("size", [1, 17])
@pytest.mark.parametrize(
    ("value", "read"), [(2**53 - 1, True), (2**53, False), (-(2**53), False), (1e300, False)]
)
def test_numbers_from_2_53_up_are_left_to_the_general_path(
    churn: LoadedModel, size: int, value: float, read: bool
) -> None:
    """Where a JSON integer and its double differ, the general path compares the integer itself
    with the bounds; so with no upper bound, the fast path reads only numbers below 2**53."""
    features = [
        f.model_copy(update={"max": None}) if f.name == "balance" else f
        for f in churn.manifest.features
    ]
    decoder = RecordsDecoder(Validator(churn.manifest.model_copy(update={"features": features})))
    records = [{**churn.manifest.examples[0].record, "balance": value}] * size
    batch = decoder.batch(orjson.dumps({"records": records}), LIMIT)
    assert (batch is not None) == read
    if batch is not None:
        assert batch.inputs["balance"][0, 0] == np.float32(value)


def test_the_column_reader_reads_every_field_in_order() -> None:
    """64 fields, as wide as the digits model: each column holds its field of every record."""
    record = msgspec.defstruct("Record", [(f"f{i}", int) for i in range(64)])
    records = [record(*(row * 100 + i for i in range(64))) for row in range(3)]
    columns = column_reader(64)(records)
    assert len(columns) == 64
    assert columns[0] == [0, 100, 200] and columns[63] == [63, 163, 263]
