"""`service.codecs.v2`, the fast path for large v2 JSON bodies, against the general path.

Where the fast path reads a body it must give exactly the general path's batch (same float32
inputs to the bit, same categories, same out-of-range flags) and the same answer; anything else
it must leave to the general path (None), whose answer, or error, is then the caller's.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from service.codecs import parse_json
from service.codecs import v2 as tensor_json
from service.codecs.v2 import (
    QUICK_ROWS,
    Decoded,
    TensorsDecoder,
    batch_from_tensors,
    read_numbers,
    tensors_decoder,
)
from service.errors import ServiceError
from service.manifest import read_pointer
from service.model import LoadedModel, load_model
from service.validation import Batch, Validator
from tests.service.helpers import assert_same

MODELS = Path(__file__).resolve().parents[2] / "models"
LIMIT = 1000
Tensors = list[dict[str, Any]]


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model(MODELS / "churn" / read_pointer(MODELS / "churn"), 1)


@pytest.fixture(scope="module")
def general_only(model: LoadedModel) -> LoadedModel:
    """The same model with its fast path switched off: today's general path alone."""
    copy = dataclasses.replace(model, validator=Validator(model.manifest))
    tensor_json.tensors_decoder._built[copy.validator] = _Never(copy.validator)  # its decoder
    return copy


class _Never(TensorsDecoder):
    def decode(self, body: bytes, limit: int) -> Decoded | None:
        return None


def general(model: LoadedModel, body: bytes) -> Batch | None:
    """The general path's batch, or None where it refuses the body."""
    try:
        return batch_from_tensors(model.validator, parse_json(body).get("inputs"), LIMIT)
    except ServiceError:
        return None


def answer(model: LoadedModel, body: bytes) -> tuple[str, Any]:
    """What a request gets: the response body, or the error's type and message."""
    try:
        return "answer", tensor_json.answer(model, body, LIMIT).body
    except ServiceError as exc:
        return type(exc).__name__, str(exc)


def tensors(model: LoadedModel, rows: int) -> Tensors:
    """Bench-style tensors: FP64 numbers written as floats (`584.0`), BYTES categories."""
    examples = [e.record for e in model.manifest.examples]
    records = [examples[i % len(examples)] for i in range(rows)]
    return [
        {
            "name": f.name,
            "datatype": "BYTES" if f.type == "category" else "FP64",
            "shape": [rows],
            "data": [r[f.name] if f.type == "category" else float(r[f.name]) for r in records],
        }
        for f in model.manifest.features
    ]


def body_of(inputs: Tensors, **fields: Any) -> bytes:
    return orjson.dumps({"inputs": inputs, **fields})


def changed(inputs: Tensors, name: str, **changes: Any) -> Tensors:
    return [t | changes if t["name"] == name else t for t in inputs]


def with_data_text(inputs: Tensors, name: str, text: bytes) -> bytes:
    """The body with one tensor's data written as the given JSON text."""
    marker = "__data__"
    return body_of(changed(inputs, name, data=marker)).replace(b'"__data__"', text)


def test_a_large_body_takes_the_fast_path_with_the_general_paths_batch(
    model: LoadedModel,
) -> None:
    body = body_of(tensors(model, LIMIT))
    decoded = tensors_decoder(model.validator).decode(body, LIMIT)
    slow = general(model, body)
    assert decoded is not None and slow is not None
    assert_same(decoded.batch, slow)
    assert (decoded.id, decoded.outputs) == (None, None)


def test_random_bench_values_read_as_the_general_path_reads_them(model: LoadedModel) -> None:
    """10,000 rows of bench-like values (decimals of 0 to 2 places, ints as `584.0`)."""
    rng = np.random.default_rng(3)
    rows = 10_000
    inputs = tensors(model, rows)
    for tensor in inputs:
        feature = next(f for f in model.manifest.features if f.name == tensor["name"])
        if feature.type == "float":
            places = rng.integers(0, 3, rows)
            values = rng.uniform(0, feature.train_max or 1, rows)
            tensor["data"] = [round(float(v), int(p)) for v, p in zip(values, places, strict=True)]
        elif feature.type != "category":
            low, high = int(feature.min or 0), int(feature.max or 1)
            tensor["data"] = rng.integers(low, high + 1, rows).astype(float).tolist()
    body = body_of(inputs)
    decoded = tensors_decoder(model.validator).decode(body, rows)
    slow = batch_from_tensors(model.validator, parse_json(body)["inputs"], rows)
    assert decoded is not None
    assert_same(decoded.batch, slow)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda ts: ts[::-1], id="tensors in another order"),
        pytest.param(lambda ts: changed(ts, "age", shape=[40, 1]), id="shape [n, 1], flat data"),
        pytest.param(
            lambda ts: changed(ts, "age", datatype="INT64", data=[int(v) for v in ts[3]["data"]]),
            id="INT64 integers",
        ),
        pytest.param(lambda ts: changed(ts, "tenure", datatype="UINT8", data=[7] * 40), id="UINT8"),
        pytest.param(
            lambda ts: changed(ts, "age", data=[40, 41.0] * 20), id="integers with and without .0"
        ),
        pytest.param(lambda ts: changed(ts, "balance", datatype="FP32"), id="FP32"),
        pytest.param(
            lambda ts: changed(ts, "balance", parameters={"content_type": "np"}),
            id="other tensor parameters",
        ),
    ],
)
def test_other_valid_forms_take_the_fast_path_too(
    model: LoadedModel, general_only: LoadedModel, change: Callable[[Tensors], Tensors]
) -> None:
    body = body_of(change(tensors(model, 40)), id="r-1", outputs=[{"name": "label"}])
    decoded = tensors_decoder(model.validator).decode(body, LIMIT)
    slow = general(model, body)
    assert decoded is not None and slow is not None
    assert_same(decoded.batch, slow)
    assert (decoded.id, decoded.outputs) == ("r-1", [{"name": "label"}])
    assert answer(model, body) == answer(general_only, body)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"0.30000001192092896", 0.30000001192092896),  # 17 digits: float32(0.3) as a double
        (b"1.5e3", 1500.0),
        (b"1500E-0", 1500.0),
        (b" 1500 ", 1500.0),
        (b"-0.0", -0.0),
        (b"-0", 0.0),
        (b"12345.6789012345678", 12345.6789012345678),
    ],
)
def test_numbers_in_any_json_form_are_read_as_the_general_path_reads_them(
    model: LoadedModel, text: bytes, value: float
) -> None:
    """orjson reads the numbers on both paths; only the check of their types differs."""
    inputs = tensors(model, 20)
    body = with_data_text(inputs, "balance", b"[" + b",".join([text] * 20) + b"]")
    decoded = tensors_decoder(model.validator).decode(body, LIMIT)
    slow = general(model, body)
    assert decoded is not None and slow is not None
    assert_same(decoded.batch, slow)
    expected = np.full((20, 1), value, dtype=np.float32)
    assert decoded.batch.inputs["balance"].tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda ts: changed(ts, "age", shape=[40, 1], data=[[v] for v in ts[3]["data"]]),
            id="nested data",
        ),
        pytest.param(
            lambda ts: changed(ts, "has_cr_card", datatype="BOOL", data=[True] * 40), id="BOOL"
        ),
        pytest.param(lambda ts: changed(ts, "age", datatype="FP16"), id="unknown datatype"),
        pytest.param(lambda ts: changed(ts, "age", data=["40"] * 40), id="string in a number"),
        pytest.param(lambda ts: changed(ts, "age", data=[True] * 40), id="true in a number"),
        pytest.param(lambda ts: changed(ts, "age", data=[None] * 40), id="null in a number"),
        pytest.param(
            lambda ts: changed(ts, "age", datatype="INT64", data=[40.0] * 40),
            id="float in an INT tensor",
        ),
        pytest.param(
            lambda ts: changed(ts, "geography", data=["Mars", *ts[1]["data"][1:]]),
            id="unknown category",
        ),
        pytest.param(
            lambda ts: changed(ts, "geography", data=[1, *ts[1]["data"][1:]]),
            id="number in a category",
        ),
        pytest.param(lambda ts: changed(ts, "geography", datatype="FP64"), id="category not BYTES"),
        pytest.param(lambda ts: changed(ts, "age", data=[200.0] * 40), id="out of the domain"),
        pytest.param(lambda ts: changed(ts, "age", data=[40.5] * 40), id="fraction in an int"),
        pytest.param(lambda ts: changed(ts, "age", data=[40.0] * 39), id="too few elements"),
        pytest.param(lambda ts: changed(ts, "gender", data=["Male"] * 41), id="too many strings"),
        pytest.param(lambda ts: changed(ts, "age", shape=[41]), id="different row counts"),
        pytest.param(lambda ts: changed(ts, "age", shape=[20, 2]), id="shape [n, 2]"),
        pytest.param(lambda ts: changed(ts, "age", shape=[40, 1, 1]), id="shape [n, 1, 1]"),
        pytest.param(lambda ts: ts + ts[:1], id="duplicate tensor"),
        pytest.param(lambda ts: ts[1:], id="missing tensor"),
        pytest.param(lambda ts: [*ts, {**ts[0], "name": "surname"}], id="unknown tensor"),
        pytest.param(
            lambda ts: changed(ts, "age", parameters={"binary_data_size": 320}),
            id="binary data",
        ),
        pytest.param(lambda ts: changed(ts, "age", extra=1), id="unknown tensor field"),
        pytest.param(
            lambda ts: [{k: v for k, v in t.items() if k != "shape"} for t in ts], id="no shape"
        ),
    ],
)
def test_bodies_it_cannot_read_are_left_to_the_general_path(
    model: LoadedModel, general_only: LoadedModel, make: Callable[[Tensors], Tensors]
) -> None:
    body = body_of(make(tensors(model, 40)))
    assert tensors_decoder(model.validator).decode(body, LIMIT) is None
    assert answer(model, body) == answer(general_only, body)


@pytest.mark.parametrize(
    ("datatype", "number"),
    [
        ("INT64", b"18446744073709551617"),  # past 64 bits: a float for orjson
        ("INT64", b"4e1"),
        ("FP64", b"1e999"),  # overflows a double
        ("FP64", b'"40"'),
        ("FP64", b"[40]"),
    ],
)
def test_numbers_it_cannot_take_are_left_to_the_general_path(
    model: LoadedModel, general_only: LoadedModel, datatype: str, number: bytes
) -> None:
    inputs = changed(tensors(model, 40), "age", datatype=datatype)
    body = with_data_text(inputs, "age", b"[" + b",".join([number] * 40) + b"]")
    assert tensors_decoder(model.validator).decode(body, LIMIT) is None
    assert answer(model, body)[0] in {"BadTensor", "MalformedBody"}
    assert answer(model, body) == answer(general_only, body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="not an object"),
        pytest.param(b'{"inputs": []}', id="no inputs"),
        pytest.param(b'{"inputs": [], "extra": 1e999}', id="unknown field, overflowing"),
        pytest.param(b'{"inputs": [], "extra": "\xff"}', id="unknown field, bad UTF-8"),
        pytest.param(b'{"inputs": [{}', id="truncated"),
    ],
)
def test_bodies_that_are_no_tensors_are_left_to_the_general_path(
    model: LoadedModel, general_only: LoadedModel, body: bytes
) -> None:
    assert tensors_decoder(model.validator).decode(body, LIMIT) is None
    assert answer(model, body) == answer(general_only, body)


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("id", b'"\xff"'),  # bad UTF-8
        ("id", b'"\\ud800"'),  # a lone surrogate
        ("outputs", b"[1e999]"),  # overflows a double
        ("parameters", b'{"x": 1e999}'),
        ("model_name", b"1e999"),  # a field the protocol does not define
        ("model_name", b'"\xff"'),
    ],
)
def test_what_orjson_refuses_anywhere_is_left_to_the_general_path(
    model: LoadedModel, general_only: LoadedModel, field: str, text: bytes
) -> None:
    body = body_of(tensors(model, 40), **{field: "__x__"}).replace(b'"__x__"', text)
    assert tensors_decoder(model.validator).decode(body, LIMIT) is None
    assert answer(model, body)[0] == "MalformedBody"
    assert answer(model, body) == answer(general_only, body)


def test_invalid_utf8_in_a_category_is_left_to_the_general_path(
    model: LoadedModel, general_only: LoadedModel
) -> None:
    body = body_of(tensors(model, 40)).replace(b'"France"', b'"Fr\xe0nce"', 1)
    assert b"\xe0" in body
    assert tensors_decoder(model.validator).decode(body, LIMIT) is None
    assert answer(model, body) == answer(general_only, body)


def test_a_value_nested_deeper_than_orjson_reads_is_left_to_the_general_path(
    model: LoadedModel, general_only: LoadedModel, deep_recursion: None
) -> None:
    """msgspec's depth limit follows Python's recursion limit; orjson's is fixed at 1024."""
    depth = 1024  # one level inside the body's object: too deep for orjson there
    body = body_of(tensors(model, 40), id="__x__").replace(b'"__x__"', b"[" * depth + b"]" * depth)
    assert tensors_decoder(model.validator).decode(body, LIMIT) is None
    assert answer(model, body) == answer(general_only, body)


@pytest.fixture
def deep_recursion() -> Iterator[None]:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    yield
    sys.setrecursionlimit(limit)


@pytest.mark.parametrize("fields", [{"id": 7}, {"outputs": {"name": "label"}},
                                    {"outputs": [{"name": "logits"}]}])  # fmt: skip
def test_a_bad_id_or_outputs_gets_the_general_paths_error(
    model: LoadedModel, general_only: LoadedModel, fields: dict[str, Any]
) -> None:
    body = body_of(tensors(model, 40), **fields)
    assert tensors_decoder(model.validator).decode(body, LIMIT) is not None
    got = answer(model, body)
    assert got[0] == "BadTensor"
    assert got == answer(general_only, body)


def test_few_rows_are_left_to_the_general_path(model: LoadedModel) -> None:
    """Up to QUICK_ROWS rows the general path's plain-Python rules are the quicker."""
    assert (
        tensors_decoder(model.validator).decode(body_of(tensors(model, QUICK_ROWS)), LIMIT) is None
    )
    assert (
        tensors_decoder(model.validator).decode(body_of(tensors(model, QUICK_ROWS + 1)), LIMIT)
        is not None
    )


@pytest.mark.parametrize("rows", [1, QUICK_ROWS])
@pytest.mark.parametrize(
    ("datatype", "no", "yes"), [("FP64", 0.0, 1.0), ("INT64", 0, 1), ("BOOL", False, True)]
)
def test_a_few_rows_with_bools_in_any_datatype_take_the_quick_rules(
    model: LoadedModel, rows: int, datatype: str, no: Any, yes: Any
) -> None:
    """V2 declares bools FP32, so 0 and 1 must not send a one-record body down numpy's path."""
    inputs = tensors(model, rows)
    for f in model.manifest.features:
        if f.type == "bool":
            data = [yes if i % 2 else no for i in range(rows)]
            inputs = changed(inputs, f.name, datatype=datatype, data=data)
    validator = Validator(model.manifest)
    validator.assemble = _never_called  # type: ignore[method-assign]
    quick = batch_from_tensors(validator, inputs, LIMIT)
    assert_same(quick, batch_from_tensors(_vectorised(model), inputs, LIMIT))


def test_a_negative_zero_bool_keeps_its_sign(model: LoadedModel) -> None:
    bool_name = next(f.name for f in model.manifest.features if f.type == "bool")
    inputs = changed(tensors(model, 1), bool_name, data=[-0.0])
    batch = batch_from_tensors(model.validator, inputs, LIMIT)
    assert batch.inputs[bool_name].tobytes() == np.array([[-0.0]], dtype=np.float32).tobytes()
    assert_same(batch, batch_from_tensors(_vectorised(model), inputs, LIMIT))


def _never_called(*args: Any, **kwargs: Any) -> Batch:
    raise AssertionError("the vectorised path was taken")


def _vectorised(model: LoadedModel) -> Validator:
    """A validator whose plain-Python rules decline everything: numpy's path alone."""
    validator = Validator(model.manifest)
    validator.quick = lambda rows: None  # type: ignore[method-assign]
    return validator


def test_more_rows_than_the_limit_are_left_to_the_general_path(model: LoadedModel) -> None:
    body = body_of(tensors(model, 30))
    assert tensors_decoder(model.validator).decode(body, 29) is None
    assert tensors_decoder(model.validator).decode(body, 30) is not None


def _number_text() -> st.SearchStrategy[bytes]:
    """JSON numbers as clients write them: floats, integers with and without `.0`, negatives."""
    return st.one_of(
        st.floats(allow_nan=False, allow_infinity=False).map(orjson.dumps),
        st.floats(-1e6, 1e6).map(lambda v: orjson.dumps(round(v, 2))),
        st.integers(-(2**70), 2**70).map(lambda v: str(v).encode()),
        st.integers(-1000, 1000).map(lambda v: f"{v}.0".encode()),
        st.sampled_from([b"-0", b"-0.0", b"0", b"1e2", b"-1.5E-3", b"0.30000001192092896"]),
    )


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(_number_text(), min_size=1, max_size=30), whole=st.booleans())
def test_numbers_are_read_exactly_as_orjson_and_numpy_read_them(
    texts: list[bytes], whole: bool
) -> None:
    array = b"[" + b",".join(texts) + b"]"
    got = read_numbers([array], len(texts), [whole])
    values = orjson.loads(array)
    allowed = {int} if whole else {int, float}
    if not {type(v) for v in values} <= allowed:
        assert got is None
        return
    assert got is not None
    assert got.tobytes() == np.asarray(values, dtype=np.float64).tobytes()


@st.composite
def _bodies(draw: st.DrawFn, model: LoadedModel) -> bytes:
    """Bench-style bodies with a few changes, each one the fast path may read or decline."""
    rows = draw(st.sampled_from([QUICK_ROWS, QUICK_ROWS + 1, 40]))
    inputs = tensors(model, rows)
    features = {f.name: f for f in model.manifest.features}
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(inputs) - 1))
        tensor, feature = inputs[i], features[inputs[i]["name"]]
        action = draw(
            st.sampled_from(["int", "shape", "value", "category", "datatype", "drop", "extra"])
        )
        if action == "int" and feature.type != "category":
            integers = [
                int(v) if type(v) is float and abs(v) < 2**53 else v for v in tensor["data"]
            ]
            inputs[i] = tensor | {"data": integers, "datatype": draw(st.sampled_from(
                ["INT64", "INT32", "UINT16", "FP64"]))}  # fmt: skip
        elif action == "shape":
            inputs[i] = tensor | {"shape": draw(st.sampled_from(
                [[rows, 1], [rows + 1], [1, rows], [rows // 2, 2]]))}  # fmt: skip
        elif action == "value":
            data = list(tensor["data"])
            data[draw(st.integers(0, rows - 1))] = draw(
                st.one_of(
                    st.floats(-1e3, 1e6),
                    st.integers(-5, 1000),
                    st.sampled_from(["France", "x", True, None, [1], 1e300, 0.5]),
                )
            )
            inputs[i] = tensor | {"data": data}
        elif action == "category" and feature.type == "category":
            data = list(tensor["data"])
            data[0] = draw(st.sampled_from(feature.categories or []))
            inputs[i] = tensor | {"data": data}
        elif action == "datatype":
            inputs[i] = tensor | {"datatype": draw(st.sampled_from(["BYTES", "BOOL", "FP32"]))}
        elif action == "drop":
            del inputs[i]
            if not inputs:
                inputs = tensors(model, rows)
        elif action == "extra":
            inputs.append(inputs[i] | {"parameters": {"binary_data_size": 1}})
    if draw(st.booleans()):
        inputs = draw(st.permutations(inputs))
    return body_of(inputs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_whatever_it_reads_it_reads_as_the_general_path_does(
    model: LoadedModel, general_only: LoadedModel, data: st.DataObject
) -> None:
    body = data.draw(_bodies(model))
    decoded = tensors_decoder(model.validator).decode(body, LIMIT)
    event("fast path" if decoded is not None else "general path")
    if decoded is not None:
        slow = general(model, body)
        assert slow is not None, body
        assert_same(decoded.batch, slow)
    assert answer(model, body) == answer(general_only, body)
