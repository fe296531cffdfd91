"""Missing values in the Open Inference Protocol: a `null` element (or an empty BYTES string) of
a nullable input is imputed and listed in the `imputed` output; a null in a required input is a
400 naming input, element and rule; the metadata says which inputs may be missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton

from service.codecs import v2
from service.codecs.probabilities import FLAG_SEPARATOR
from service.manifest import Manifest
from service.model import LoadedModel, load_model
from tests.service.helpers import Server, assert_same
from tests.service.missing_models import NullableModel, http, nullable, nullable_server
from tests.service.test_missing_json import TOLERANCE

__all__ = ["http", "nullable", "nullable_server"]  # fixtures, used by name

DATATYPES = {"float": "FP32", "int": "INT64", "bool": "BOOL", "category": "BYTES"}


def tensors(
    manifest: Manifest, records: list[dict[str, Any]], datatypes: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """One tensor per feature, a missing value (absent or None) as a null element."""
    chosen = {**DATATYPES, **(datatypes or {})}
    return [
        {
            "name": f.name,
            "datatype": chosen[f.type],
            "shape": [len(records), 1],
            "data": [record.get(f.name) for record in records],
        }
        for f in manifest.features
    ]


def infer(http: httpx.Client, task: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(f"/v2/models/{task}/infer", json=body)


def outputs_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return {output["name"]: output for output in response.json()["outputs"]}


@pytest.mark.parametrize(
    "datatypes",
    [{}, {"float": "FP64", "int": "FP32", "bool": "FP32"}, {"int": "INT32", "bool": "FP64"}],
)
def test_null_elements_of_nullable_inputs_are_imputed(
    http: httpx.Client, nullable: NullableModel, datatypes: dict[str, str]
) -> None:
    manifest = nullable.manifest
    names = [f.name for f in manifest.features if f.nullable]
    full = nullable.full_record()
    if "bool" in datatypes:  # a bool as a number, as the metadata declares it (FP32)
        full = {k: float(v) if isinstance(v, bool) else v for k, v in full.items()}
    records = [full, {**full, **dict.fromkeys(names)}] + [{**full, name: None} for name in names]

    outputs = outputs_of(
        infer(http, nullable.task, {"inputs": tensors(manifest, records, datatypes)})
    )

    assert list(outputs) == ["label", "probabilities", "imputed"]
    assert outputs["imputed"]["datatype"] == "BYTES"
    assert outputs["imputed"]["shape"] == [len(records)]
    assert outputs["imputed"]["data"] == ["", FLAG_SEPARATOR.join(names), *names]
    got = np.array(outputs["probabilities"]["data"], dtype=np.float64).reshape(len(records), -1)
    np.testing.assert_allclose(got, nullable.probabilities(records), atol=TOLERANCE)


def test_an_empty_string_is_a_missing_category_too(
    http: httpx.Client, nullable: NullableModel
) -> None:
    manifest = nullable.manifest
    category = next(f for f in manifest.features if f.nullable and f.type == "category")
    full = nullable.full_record()
    records = [{**full, category.name: ""}, {**full, category.name: None}]
    outputs = outputs_of(infer(http, nullable.task, {"inputs": tensors(manifest, records)}))
    assert outputs["imputed"]["data"] == [category.name, category.name]
    probabilities = outputs["probabilities"]["data"]
    width = len(manifest.labels)
    assert probabilities[:width] == probabilities[width:]


def test_a_null_in_a_required_input_is_named_with_every_other_problem(
    http: httpx.Client, nullable: NullableModel
) -> None:
    manifest = nullable.manifest
    required = next(f for f in manifest.features if not f.nullable)
    number = next(f for f in nullable.nullable if f.type == "float" and f.min == 0)
    category = next(f for f in nullable.nullable if f.type == "category")
    full = nullable.full_record()
    records = [full, {**full, required.name: None, number.name: -5.0}, {**full, category.name: "x"}]

    response = infer(http, nullable.task, {"inputs": tensors(manifest, records)})

    assert response.status_code == 400
    body = response.json()
    ge = "Input should be greater than or equal to 0"
    enum = body["details"][-1]["msg"]
    problems = {
        required.name: f"input {required.name!r}, element 1: Field required (got null; the "
        "input is not nullable)",
        number.name: f"input {number.name!r}, element 1: {ge} (got '-5.0')",
        category.name: f"input {category.name!r}, element 2: {enum} (got 'x')",
    }
    order = [f.name for f in manifest.features if f.name in problems]
    by_element = sorted(order, key=lambda name: name == category.name)  # element 1, then 2
    assert body["error"] == "; ".join(problems[name] for name in by_element)
    details = {detail["input"]: detail for detail in body["details"]}
    assert details[required.name] == {
        "input": required.name,
        "element": 1,
        "type": "missing",
        "msg": "Field required",
        "value": None,
    }
    assert details[number.name]["type"] == "greater_than_equal"
    assert details[category.name]["type"] == "enum"


def test_a_null_in_a_required_bytes_input_is_refused(client: httpx.Client, churn: Manifest) -> None:
    category = next(f for f in churn.features if f.type == "category")
    records: list[dict[str, Any]] = [dict(churn.examples[0].record)]
    records.append({**records[0], category.name: None})
    response = infer(client, "churn", {"inputs": tensors(churn, records)})
    assert response.status_code == 400
    assert response.json()["error"] == (
        f"input {category.name!r}, element 1: Field required (got null; the input is not nullable)"
    )


def test_metadata_says_which_inputs_may_be_missing_and_offers_imputed(
    http: httpx.Client, nullable: NullableModel
) -> None:
    metadata = http.get(f"/v2/models/{nullable.task}").json()
    for feature, tensor in zip(nullable.manifest.features, metadata["inputs"], strict=True):
        assert tensor["name"] == feature.name
        if feature.nullable:
            assert tensor["parameters"] == {
                "nullable": True,
                "impute": feature.impute,
                "impute_value": feature.impute_value,
            }
        else:
            assert tensor["parameters"] == {"nullable": False}
    outputs = {output["name"]: output for output in metadata["outputs"]}
    assert outputs["imputed"] == {"name": "imputed", "datatype": "BYTES", "shape": [-1]}
    # `explanation` (issue 21) follows, returned only with `explain`.
    assert [output["name"] for output in metadata["outputs"]][-2:] == ["imputed", "explanation"]


def test_imputed_is_returned_when_asked_for_by_name_and_only_where_it_exists(
    http: httpx.Client, client: httpx.Client, nullable: NullableModel, churn: Manifest
) -> None:
    manifest = nullable.manifest
    name = next(f.name for f in manifest.features if f.nullable)
    records = [{**nullable.full_record(), name: None}]
    body = {"inputs": tensors(manifest, records), "outputs": [{"name": "imputed"}]}
    assert list(outputs_of(infer(http, nullable.task, body))) == ["imputed"]
    body["outputs"] = [{"name": "probabilities"}]
    assert list(outputs_of(infer(http, nullable.task, body))) == ["probabilities"]

    plain = {"inputs": tensors(churn, [churn.examples[0].record])}
    assert list(outputs_of(infer(client, "churn", plain))) == ["label", "probabilities"]
    response = infer(client, "churn", {**plain, "outputs": [{"name": "imputed"}]})
    assert response.status_code == 400
    assert response.json()["error"] == (
        "unknown output 'imputed'; the model's outputs are ['label', 'probabilities']"
    )


@pytest.fixture(scope="module")
def model(nullable: NullableModel) -> LoadedModel:
    return load_model(nullable.models_dir / nullable.task / nullable.manifest.version, 1)


@pytest.mark.parametrize("rows", [3, 60, 400])
def test_the_fast_reader_and_the_general_path_agree_on_nulls(
    model: LoadedModel, nullable: NullableModel, rows: int
) -> None:
    """Large bodies are read by msgspec, which takes nulls (and an empty category) of nullable
    inputs as the general path does; a few rows are the general path's."""
    manifest = nullable.manifest
    names = [f.name for f in manifest.features if f.nullable]
    full = nullable.full_record()
    variants = [full, *({**full, name: None} for name in names), {**full, names[-1]: ""}]
    records = [variants[i % len(variants)] for i in range(rows)]
    datatypes = {"float": "FP64", "int": "INT32", "bool": "FP32"}
    inputs = tensors(manifest, records, datatypes)
    for tensor in inputs:
        if tensor["datatype"] == "FP32":  # a bool as a number
            tensor["data"] = [None if v is None else float(v) for v in tensor["data"]]
    body = orjson.dumps({"inputs": inputs})

    fast = v2.tensors_decoder(model.validator).decode(body, 10_000)
    general = v2.batch_from_tensors(model.validator, inputs, 10_000)

    assert (fast is not None) == (rows > v2.QUICK_ROWS and len(body) >= v2.SMALL_BODY)
    if fast is not None:
        assert_same(fast.batch, general)
        assert fast.batch.imputed_flags() == general.imputed_flags()
    expected = [[], *([name] for name in names), names[-1:]]
    assert general.imputed_flags() == [expected[i % len(variants)] for i in range(rows)]


@pytest.fixture
def triton_client(nullable_server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=nullable_server.url.removeprefix("http://"))
    yield client
    client.close()


def test_tritonclient_sends_an_empty_category_and_reads_imputed(
    triton_client: triton.InferenceServerClient, nullable: NullableModel
) -> None:
    """numpy cannot hold a null in a float tensor, so a standard client leaves a category
    empty; the `imputed` output reads as any BYTES output."""
    manifest = nullable.manifest
    category = next(f for f in manifest.features if f.nullable and f.type == "category")
    records = [nullable.full_record(), {**nullable.full_record(), category.name: ""}]
    inputs = []
    for feature in manifest.features:
        values = [record[feature.name] for record in records]
        dtype = np.object_ if feature.type == "category" else np.float32
        array = np.array(values, dtype=dtype).reshape(-1, 1)
        tensor = triton.InferInput(feature.name, list(array.shape), DATATYPES["category"]
                                   if feature.type == "category" else "FP32")  # fmt: skip
        tensor.set_data_from_numpy(array, binary_data=False)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput("imputed", binary_data=False)]
    result = triton_client.infer(nullable.task, inputs, outputs=outputs)
    assert [str(v) for v in result.as_numpy("imputed").tolist()] == ["", category.name]
