"""Property-based fuzzing of the validators through the real app: any JSON value in any field.

Every answer is either the correct prediction (checked against onnxruntime run directly, with no
service code) or a 4xx that names the field; never a 5xx, never NaN or Infinity in a body. The
app runs in-process (Starlette's TestClient drives the real ASGI stack with its lifespan), so a
few thousand examples take seconds.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.manifest import Feature, Manifest
from tests.reliability.helpers import (
    FUZZ,
    InProcessClient,
    Oracle,
    assert_finite_probabilities,
    assert_no_internals,
    strict_json,
    valid_for,
)

PREDICT = "/v1/models/churn/predict"
INFER = "/v2/models/churn/infer"
BATCH = 4
# orjson reads integers of 64 bits (signed or unsigned); wider ones are a parse error (a 400).
INTEGERS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
SCALARS = (
    st.none()
    | st.booleans()
    | INTEGERS
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture(scope="session")
def oracle(registry_dir: Path, churn: Manifest) -> Oracle:
    return Oracle(registry_dir / "churn" / churn.version, churn)


def near(feature: Feature) -> st.SearchStrategy[Any]:
    """Values at and around the edges of the feature's domain, where validators slip."""
    if feature.type == "category":
        names = feature.categories or []
        return (
            st.sampled_from(names)
            | st.sampled_from(names).map(lambda s: s.lower() if s != s.lower() else s.upper())
            | st.sampled_from(names).map(lambda s: f" {s}")
        )
    if feature.type == "bool":
        return st.sampled_from([True, False, 0, 1, "true", "false", 0.0, 1.0])
    low, high = feature.min if feature.min is not None else -1e6, feature.max or 1e6
    edges = [low, high, low - 1, high + 1, low - 1e-9, high + 1e-9, (low + high) / 2]
    numbers = st.floats(min_value=low - 2, max_value=high + 2) | st.integers(
        min_value=int(low) - 2, max_value=int(high) + 2
    )
    return st.sampled_from(edges) | numbers | numbers.map(str)


def values_for(feature: Feature) -> st.SearchStrategy[Any]:
    return near(feature) | JSON


@st.composite
def fuzzed_batches(
    draw: st.DrawFn, manifest: Manifest
) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """A few good records, one with some fields replaced: (batch, its index, the changes)."""
    fields = draw(
        st.lists(
            st.sampled_from(manifest.features), min_size=1, max_size=3, unique_by=lambda f: f.name
        )
    )
    changes = {f.name: draw(values_for(f)) for f in fields}
    index = draw(st.integers(min_value=0, max_value=BATCH - 1))
    batch = [dict(manifest.examples[i % len(manifest.examples)].record) for i in range(BATCH)]
    batch[index].update(changes)
    return batch, index, changes


@FUZZ
@given(data=st.data())
def test_any_value_in_any_field_is_predicted_correctly_or_named(
    app_client: InProcessClient, churn: Manifest, oracle: Oracle, data: st.DataObject
) -> None:
    batch, index, changes = data.draw(fuzzed_batches(churn))
    response = app_client.post(PREDICT, json={"records": batch})
    body = strict_json(response.text)
    features = {f.name: f for f in churn.features}
    bad = {name for name, value in changes.items() if not valid_for(features[name], value)}
    if not bad:
        assert response.status_code == 200, response.text
        assert_correct(body["predictions"], batch, churn, oracle)
        return
    assert response.status_code == 422, response.text
    named = {tuple(e["loc"]) for e in body["detail"]}
    # Every bad field is named, whatever its kind of problem, and nothing else.
    assert named == {("body", "records", index, name) for name in bad}, named
    assert_no_internals(response.text)


@FUZZ
@given(record=st.dictionaries(st.text(max_size=16), JSON, max_size=12), extra=JSON)
def test_any_record_object_gets_a_4xx_naming_the_record(
    app_client: InProcessClient, churn: Manifest, record: dict[str, Any], extra: Any
) -> None:
    """Arbitrary keys and values, plus an arbitrary second record: every problem is located."""
    good = churn.examples[0].record
    response = app_client.post(PREDICT, json={"records": [good, {**record}, extra]})
    assert response.status_code == 422, response.text
    locs = [e["loc"] for e in strict_json(response.text)["detail"]]
    assert locs and all(loc[:3] in (["body", "records", 1], ["body", "records", 2]) for loc in locs)
    assert_no_internals(response.text)


@FUZZ
@given(body=JSON)
def test_any_json_body_gets_a_4xx(app_client: InProcessClient, body: Any) -> None:
    text = json.dumps(body)
    response = app_client.post(PREDICT, content=text, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text
    detail = strict_json(response.text)["detail"]
    assert all(e["loc"][0] == "body" for e in detail)


@FUZZ
@given(
    body=st.binary(max_size=200),
    content_type=st.sampled_from(["application/json", "text/csv", "application/x+json"]),
)
def test_any_bytes_get_a_4xx_and_never_a_5xx(
    app_client: InProcessClient, body: bytes, content_type: str
) -> None:
    for path in (PREDICT, INFER):
        response = app_client.post(path, content=body, headers={"Content-Type": content_type})
        assert 400 <= response.status_code < 500 or response.status_code == 200, response.text
        assert_no_internals(response.text)


@FUZZ
@given(data=st.data())
def test_any_csv_cell_is_predicted_or_named(
    app_client: InProcessClient, churn: Manifest, data: st.DataObject
) -> None:
    feature = data.draw(st.sampled_from(churn.features))
    cell = data.draw(st.text(max_size=16) | near(feature).map(_cell))
    header = [f.name for f in churn.features]
    row = {**{k: _cell(v) for k, v in churn.examples[0].record.items()}, feature.name: cell}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerow([row[name] for name in header])
    response = app_client.post(
        PREDICT, content=out.getvalue().encode(), headers={"Content-Type": "text/csv"}
    )
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        locs = {tuple(e["loc"]) for e in strict_json(response.text)["detail"]}
        assert locs == {("body", "rows", 0, feature.name)}, locs
    else:
        assert response.headers["content-type"].startswith("text/csv")
        assert "nan" not in response.text.lower() and "inf" not in response.text.lower()


@st.composite
def fuzzed_tensors(
    draw: st.DrawFn, manifest: Manifest
) -> tuple[list[dict[str, Any]], Feature, str, Any]:
    """A valid V2 request of BATCH rows, with one key of one tensor (or one element) replaced."""
    records = [manifest.examples[i % len(manifest.examples)].record for i in range(BATCH)]
    inputs = [_tensor(f, [r[f.name] for r in records]) for f in manifest.features]
    position = draw(st.integers(min_value=0, max_value=len(inputs) - 1))
    feature = manifest.features[position]
    part = draw(st.sampled_from(["name", "shape", "datatype", "data", "element"]))
    value = draw(values_for(feature) if part == "element" else JSON)
    if part == "element":
        row = draw(st.integers(min_value=0, max_value=BATCH - 1))
        inputs[position]["data"][row] = value
    else:
        inputs[position][part] = value
    return inputs, feature, part, value


@FUZZ
@given(data=st.data())
def test_any_value_in_a_v2_tensor_is_predicted_or_named(
    app_client: InProcessClient, churn: Manifest, data: st.DataObject
) -> None:
    inputs, feature, part, value = data.draw(fuzzed_tensors(churn))
    response = app_client.post(INFER, json={"inputs": inputs})
    body = strict_json(response.text)
    if response.status_code == 200:
        (probabilities,) = (o for o in body["outputs"] if o["name"] == "probabilities")
        assert len(probabilities["data"]) == BATCH * len(churn.labels)
        assert all(0 <= p <= 1 for p in probabilities["data"])
        if part == "element":
            assert _fits_tensor(feature, inputs, value)
        return
    assert response.status_code in (400, 413), response.text
    message = body["error"]
    if part == "name":
        assert "input" in message, message
    elif part != "element" or not _fits_tensor(feature, inputs, value):
        assert repr(feature.name) in message, message
    else:
        raise AssertionError(f"a valid element was refused: {message}")
    assert_no_internals(response.text)


@pytest.mark.parametrize("datatype", [[], {}, ["FP32"]])
def test_a_v2_datatype_that_is_not_a_string_is_a_400(
    app_client: InProcessClient, churn: Manifest, datatype: Any
) -> None:
    record = churn.examples[0].record
    inputs = [_tensor(f, [record[f.name]]) for f in churn.features]
    numeric = next(t for t, f in zip(inputs, churn.features, strict=True) if f.type == "int")
    numeric["datatype"] = datatype
    response = app_client.post(INFER, json={"inputs": inputs})
    assert response.status_code == 400, response.text
    assert repr(numeric["name"]) in response.json()["error"]


def assert_correct(
    predictions: list[dict[str, Any]],
    batch: list[dict[str, Any]],
    manifest: Manifest,
    oracle: Oracle,
) -> None:
    """Probabilities equal onnxruntime's on the same values; the label follows the threshold."""
    assert len(predictions) == len(batch)
    assert_finite_probabilities(predictions, manifest.labels)
    expected = oracle.probabilities(batch)
    for prediction, row in zip(predictions, expected, strict=True):
        got = list(prediction["probabilities"].values())
        assert got == pytest.approx(row.tolist(), abs=1e-6)
        positive = prediction["probabilities"][manifest.positive_label]
        assert (prediction["label"] == manifest.positive_label) == (positive >= manifest.threshold)


def _tensor(feature: Feature, values: list[Any]) -> dict[str, Any]:
    datatype = {"category": "BYTES", "bool": "BOOL"}.get(feature.type, "FP32")
    return {"name": feature.name, "shape": [len(values), 1], "datatype": datatype, "data": values}


def _fits_tensor(feature: Feature, inputs: list[dict[str, Any]], value: Any) -> bool:
    """A replaced element is valid when it fits the feature and its tensor's datatype."""
    datatype = next(t["datatype"] for t in inputs if t["name"] == feature.name)
    if datatype == "FP32" and type(value) is bool:
        return False
    return valid_for(feature, value)


def _cell(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
