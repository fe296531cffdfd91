"""Every bad v1 input gets a 4xx that names the record, the field and the rule (never a 500)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.manifest import Manifest

PREDICT = "/v1/models/churn/predict"


def record(manifest: Manifest, **changes: Any) -> dict[str, Any]:
    return {**manifest.examples[0].record, **changes}


def detail(response: httpx.Response, status: int) -> list[dict[str, Any]]:
    assert response.status_code == status, response.text
    errors: list[dict[str, Any]] = response.json()["detail"]
    return errors


def post_records(client: httpx.Client, *items: Any) -> httpx.Response:
    return client.post(PREDICT, json={"records": list(items)})


@pytest.mark.parametrize(
    ("field", "value", "kind", "words"),
    [
        ("age", "40", "int_type", "not a string"),
        ("age", 40.5, "int_from_float", "fractional"),
        ("age", True, "int_type", "not a boolean"),
        ("age", None, "int_type", "not null"),
        ("balance", "1000", "float_type", "not a string"),
        ("balance", False, "float_type", "not a boolean"),
        ("balance", [1.0], "float_type", "not an array"),
        ("has_cr_card", 1, "bool_type", "not a number"),
        ("has_cr_card", "true", "bool_type", "not a string"),
        ("geography", 3, "string_type", "not a number"),
        ("geography", "Mars", "enum", "'France', 'Germany' or 'Spain'"),
        ("age", 17, "greater_than_equal", "greater than or equal to 18"),
        ("age", 101, "less_than_equal", "less than or equal to 100"),
        ("balance", -0.01, "greater_than_equal", "greater than or equal to 0"),
        ("balance", "NaN", "float_type", "not a string"),
    ],
)
def test_bad_value_names_record_field_and_rule(
    client: httpx.Client, churn: Manifest, field: str, value: Any, kind: str, words: str
) -> None:
    good = record(churn)
    errors = detail(post_records(client, good, record(churn, **{field: value})), 422)
    assert errors[0]["loc"] == ["body", "records", 1, field]
    assert errors[0]["type"] == kind
    assert words in errors[0]["msg"]


def test_whole_numbers_written_as_floats_are_accepted_for_int_fields(
    client: httpx.Client, churn: Manifest
) -> None:
    assert post_records(client, record(churn, age=40.0)).status_code == 200


def test_missing_and_unknown_fields_are_named(client: httpx.Client, churn: Manifest) -> None:
    incomplete = record(churn, surname="Smith")
    del incomplete["tenure"]
    errors = detail(post_records(client, record(churn), incomplete), 422)
    assert {(tuple(e["loc"]), e["type"]) for e in errors} == {
        (("body", "records", 1, "tenure"), "missing"),
        (("body", "records", 1, "surname"), "extra_forbidden"),
    }


def test_problems_in_several_records_are_all_reported_in_record_order(
    client: httpx.Client, churn: Manifest
) -> None:
    batch = [record(churn) for _ in range(6)]
    batch[5]["geography"] = "Atlantis"
    batch[2]["age"] = 5
    errors = detail(post_records(client, *batch), 422)
    assert [e["loc"] for e in errors] == [
        ["body", "records", 2, "age"],
        ["body", "records", 5, "geography"],
    ]


def test_a_record_that_is_not_an_object_is_named(client: httpx.Client, churn: Manifest) -> None:
    errors = detail(post_records(client, record(churn), [1, 2]), 422)
    assert errors[0]["loc"] == ["body", "records", 1] and errors[0]["type"] == "dict_type"


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        ({"records": []}, ["body", "records"], "too_short"),
        ({}, ["body", "records"], "missing"),
        ({"records": {"age": 1}}, ["body", "records"], "list_type"),
        ({"records": [], "extra": 1}, ["body", "extra"], "extra_forbidden"),
        ([1, 2], ["body"], "model_attributes_type"),
    ],
)
def test_bad_envelope_is_named(client: httpx.Client, body: Any, loc: list[Any], kind: str) -> None:
    errors = detail(client.post(PREDICT, json=body), 422)
    assert (errors[0]["loc"], errors[0]["type"]) == (loc, kind)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "nan"])
def test_non_finite_numbers_in_any_json_spelling_are_rejected(
    client: httpx.Client, churn: Manifest, literal: str
) -> None:
    text = json.dumps({"records": [record(churn, balance=12345.5)]}).replace("12345.5", literal)
    response = client.post(PREDICT, content=text, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_python_json_nan_is_rejected(client: httpx.Client, churn: Manifest) -> None:
    text = json.dumps({"records": [record(churn, balance=float("nan"))]})  # writes a bare NaN
    response = client.post(PREDICT, content=text, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "NaN" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("text", ['{"records": [', "", "not json", '{"records": [{"age": 1,}]}'])
def test_malformed_json_is_a_400(client: httpx.Client, text: str) -> None:
    response = client.post(PREDICT, content=text, headers={"Content-Type": "application/json"})
    errors = detail(response, 400)
    assert errors[0]["loc"] == ["body"] and errors[0]["type"] == "json_invalid"


def test_batch_over_the_limit_is_a_413(client: httpx.Client, churn: Manifest) -> None:
    response = post_records(client, *([record(churn)] * 10_001))
    errors = detail(response, 413)
    assert errors[0]["loc"] == ["body", "records"]
    assert "10000" in errors[0]["msg"]


def test_body_over_the_byte_limit_is_refused_from_content_length(client: httpx.Client) -> None:
    oversized = b" " * (3 * 1024 * 1024 + 1)
    response = client.post(PREDICT, content=oversized, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "bytes" in response.json()["detail"]


def test_body_over_the_byte_limit_is_refused_while_streaming(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to check up front
        for _ in range(64):
            yield b" " * (256 * 1024)

    response = client.post(PREDICT, content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_unsupported_content_type_is_a_415(
    client: httpx.Client, churn: Manifest, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"records": [record(churn)]})
    response = client.post(PREDICT, content=body, headers=headers)
    assert response.status_code == 415
    assert "application/json or text/csv" in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/nope/predict",
        "/v1/models/Churn/predict",
        "/v1/models/..%2F..%2Fetc%2Fpasswd/predict",
        "/v1/models/%2E%2E/predict",
        "/v1/models/churn%00/predict",
    ],
)
def test_unknown_models_are_404_and_never_looked_up_on_disk(
    client: httpx.Client, churn: Manifest, path: str
) -> None:
    response = client.post(path, json={"records": [record(churn)]})
    assert response.status_code == 404
    assert client.get(path.removesuffix("/predict")).status_code == 404
