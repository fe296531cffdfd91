"""Open Inference Protocol (KServe V2) REST: an unmodified tritonclient, plus raw error cases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import orjson
import pytest
import tritonclient.http as triton

from service.codecs.v2 import TensorsDecoder
from service.manifest import Manifest
from service.validation import Validator
from tests.service.helpers import Server

INFER = "/v2/models/churn/infer"


@pytest.fixture
def triton_client(server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield client
    client.close()


def tensors(manifest: Manifest, count: int) -> list[triton.InferInput]:
    """One numpy column per feature: float32 numbers, bool for bools, str objects for categories."""
    examples = [manifest.examples[i % len(manifest.examples)].record for i in range(count)]
    inputs = []
    for feature in manifest.features:
        values = [example[feature.name] for example in examples]
        array: npt.NDArray[Any]
        if feature.type == "category":
            array = np.array(values, dtype=np.object_).reshape(-1, 1)
            datatype = "BYTES"
        elif feature.type == "bool":
            array = np.array(values, dtype=np.bool_).reshape(-1, 1)
            datatype = "BOOL"
        else:
            array = np.array(values, dtype=np.float32).reshape(-1, 1)
            datatype = "FP32"
        tensor = triton.InferInput(feature.name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=False)
        inputs.append(tensor)
    return inputs


def test_tritonclient_health_and_metadata(
    triton_client: triton.InferenceServerClient, churn: Manifest
) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("churn")
    assert triton_client.is_model_ready("churn", churn.version)
    assert not triton_client.is_model_ready("nope")
    metadata = triton_client.get_model_metadata("churn")
    assert metadata["name"] == "churn"
    assert metadata["versions"] == [churn.version]
    assert metadata["platform"] == "onnxruntime_onnx"
    inputs = {i["name"]: i for i in metadata["inputs"]}
    assert list(inputs) == [f.name for f in churn.features]
    assert inputs["geography"]["datatype"] == "BYTES"
    assert inputs["age"] == {
        "name": "age",
        "datatype": "FP32",
        "shape": [-1, 1],
        "parameters": {"nullable": False},
    }
    # No `imputed` (nothing is nullable); `explanation` only when asked for (issue 21).
    assert [o["name"] for o in metadata["outputs"]] == ["label", "probabilities", "explanation"]
    outputs = {o["name"]: o for o in metadata["outputs"]}
    assert outputs["probabilities"]["shape"] == [-1, 2]
    assert outputs["label"]["datatype"] == "BYTES"
    assert triton_client.get_server_metadata()["name"] == "draftpick-serving"


def test_tritonclient_infer_returns_labels_and_probabilities(
    triton_client: triton.InferenceServerClient, churn: Manifest
) -> None:
    outputs = [
        triton.InferRequestedOutput("label", binary_data=False),
        triton.InferRequestedOutput("probabilities", binary_data=False),
    ]
    result = triton_client.infer("churn", tensors(churn, 5), outputs=outputs, request_id="req-7")
    probabilities = result.as_numpy("probabilities")
    expected = np.array([e.probabilities for e in churn.examples])
    assert probabilities.shape == (5, 2)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    labels = result.as_numpy("label")
    wanted = [churn.labels[int(p[1] >= churn.threshold)] for p in expected]
    assert [str(label) for label in labels.tolist()] == wanted
    assert result.get_response()["id"] == "req-7"


def test_tritonclient_can_ask_for_one_output_and_a_version(
    triton_client: triton.InferenceServerClient, digits: Manifest
) -> None:
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False)]
    result = triton_client.infer(
        "digits", tensors(digits, 3), model_version=digits.version, outputs=outputs
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]
    assert result.as_numpy("probabilities").shape == (3, 10)


def test_v2_server_endpoints(client: httpx.Client) -> None:
    assert client.get("/v2").json()["name"] == "draftpick-serving"
    assert client.get("/v2/").status_code == 200
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def body(manifest: Manifest, **changes: Any) -> dict[str, Any]:
    """A valid JSON infer request (flat data, shape [1]) with some tensors replaced."""
    record = manifest.examples[0].record
    inputs = []
    for feature in manifest.features:
        datatype = {"category": "BYTES", "bool": "BOOL"}.get(feature.type, "FP64")
        inputs.append({"name": feature.name, "shape": [1], "datatype": datatype,
                       "data": [record[feature.name]]})  # fmt: skip
    for name, tensor in changes.items():
        inputs = [t for t in inputs if t["name"] != name]
        if tensor is not None:
            inputs.append({"name": name, **tensor})
    return {"inputs": inputs}


def test_nested_data_int_types_and_extra_keys_are_accepted(
    client: httpx.Client, churn: Manifest
) -> None:
    age = churn.examples[0].record["age"]
    payload = body(churn, age={"shape": [1, 1], "datatype": "INT64", "data": [[age]]})
    payload |= {"id": "abc", "model_name": "churn", "parameters": {"x": 1}}
    response = client.post(INFER, json=payload)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["id"] == "abc" and answer["model_name"] == "churn"
    expected = churn.examples[0].probabilities
    assert answer["outputs"][1]["data"] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"agee": {"shape": [1], "datatype": "FP32", "data": [40]}}, "unexpected input 'agee'"),
        ({"age": None}, "missing input 'age'"),
        ({"age": {"shape": [1], "datatype": "BYTES", "data": ["40"]}}, "datatype BYTES"),
        ({"geography": {"shape": [1], "datatype": "FP32", "data": [1.0]}}, "should be BYTES"),
        ({"age": {"shape": [1], "datatype": "INT64", "data": [40.5]}}, "is not INT64"),
        ({"age": {"shape": [1], "datatype": "FP32", "data": ["40"]}}, "is not FP32"),
        (
            {"age": {"shape": [2], "datatype": "FP32", "data": [40]}},
            "1 data elements for shape [2]",
        ),
        ({"age": {"shape": [1, 2], "datatype": "FP32", "data": [40, 41]}}, "not [n] or [n, 1]"),
        ({"age": {"shape": [1], "datatype": "FP32", "data": [200]}}, "less than or equal to 100"),
        ({"age": {"shape": [1], "datatype": "FP32", "data": [40.5]}}, "fractional part"),
        ({"geography": {"shape": [1], "datatype": "BYTES", "data": ["Mars"]}}, "'France'"),
        ({"has_cr_card": {"shape": [1], "datatype": "FP32", "data": [2]}}, "0 or 1"),
        ({"age": {"shape": [1, 1], "datatype": "FP32", "data": [[40, 1]]}}, "nested data"),
        ({"age": {"shape": [2, 1], "datatype": "FP32", "data": [40, 41]}}, "different numbers"),
        (
            {
                "age": {
                    "shape": [1],
                    "datatype": "FP32",
                    "data": [],
                    "parameters": {"binary_data_size": 4},
                }
            },
            "binary tensor data",
        ),
    ],
)
def test_bad_tensors_are_400_with_a_protocol_error(
    client: httpx.Client, churn: Manifest, changes: dict[str, Any], words: str
) -> None:
    response = client.post(INFER, json=body(churn, **changes))
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"inputs": []}, "non-empty list"),
        ({"inputs": "x"}, "non-empty list"),
        ([], "JSON object"),
        ({"inputs": [{"shape": [1]}]}, "string 'name'"),
        ({"id": 5, "inputs": []}, "'id' must be a string"),
    ],
)
def test_bad_requests_are_400(client: httpx.Client, payload: Any, words: str) -> None:
    response = client.post(INFER, json=payload)
    assert response.status_code == 400
    assert words in response.json()["error"]


def test_unknown_output_and_binary_outputs_are_refused(
    client: httpx.Client, churn: Manifest
) -> None:
    unknown = client.post(INFER, json=body(churn) | {"outputs": [{"name": "logits"}]})
    assert unknown.status_code == 400 and "unknown output" in unknown.json()["error"]
    binary = body(churn) | {"outputs": [{"name": "label", "parameters": {"binary_data": True}}]}
    refused = client.post(INFER, json=binary)
    assert refused.status_code == 400 and "binary_data" in refused.json()["error"]


@pytest.mark.parametrize(
    ("outputs", "names"),
    [
        (None, ["label", "probabilities"]),
        ([], ["label", "probabilities"]),  # Triton: nothing requested, so every output
        ([{"name": "label"}], ["label"]),
        ([{"name": "probabilities"}, {"name": "label"}], ["probabilities", "label"]),
    ],
)
def test_requested_outputs_are_answered_in_the_order_asked(
    client: httpx.Client, churn: Manifest, outputs: Any, names: list[str]
) -> None:
    payload = body(churn) if outputs is None else body(churn) | {"outputs": outputs}
    response = client.post(INFER, json=payload)
    assert response.status_code == 200, response.text
    assert [o["name"] for o in response.json()["outputs"]] == names


@pytest.mark.parametrize("name", ["label", "probabilities"])
def test_an_output_requested_twice_is_refused(
    client: httpx.Client, churn: Manifest, name: str
) -> None:
    twice = [{"name": name}, {"name": "label" if name != "label" else "probabilities"}]
    twice.append({"name": name})
    response = client.post(INFER, json=body(churn) | {"outputs": twice})
    assert response.status_code == 400, response.text
    assert response.json() == {"error": f"output {name!r} is requested twice"}


def test_malformed_json_and_wrong_content_type(client: httpx.Client) -> None:
    malformed = client.post(INFER, content=b"{", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and "error" in malformed.json()
    as_csv = client.post(INFER, content=b"a,b", headers={"Content-Type": "text/csv"})
    assert as_csv.status_code == 415 and "application/json" in as_csv.json()["error"]


def test_unknown_model_or_version_is_404(client: httpx.Client, churn: Manifest) -> None:
    assert client.post("/v2/models/nope/infer", json=body(churn)).status_code == 404
    missing = client.post("/v2/models/churn/versions/0/infer", json=body(churn))
    assert missing.status_code == 404 and "no version '0'" in missing.json()["error"]
    assert client.get("/v2/models/nope").json() == {"error": "model 'nope' not found"}
    assert client.get("/v2/models/churn/versions/0/ready").status_code == 404
    assert client.get("/v2/no/such/route").json() == {"error": "Not Found"}


def test_batch_over_the_limit_is_413_naming_the_input(
    client: httpx.Client, churn: Manifest
) -> None:
    """The protocol's words (an input and its rows), not v1's `field 'records'`."""
    payload = body(churn, age={"shape": [10_001], "datatype": "FP32", "data": [40] * 10_001})
    response = client.post(INFER, json=payload)
    assert response.status_code == 413, response.text
    assert response.json() == {"error": "input 'age' has 10001 rows; at most 10000 per request"}


def large(manifest: Manifest, rows: int) -> dict[str, Any]:
    """A bench-style request: FP64 numbers written as floats, BYTES categories, shape [rows]."""
    records = [manifest.examples[i % len(manifest.examples)].record for i in range(rows)]
    inputs = []
    for f in manifest.features:
        values = [r[f.name] if f.type == "category" else float(r[f.name]) for r in records]
        datatype = "BYTES" if f.type == "category" else "FP64"
        inputs.append({"name": f.name, "datatype": datatype, "shape": [rows], "data": values})
    return {"inputs": inputs}


def post(client: httpx.Client, payload: dict[str, Any]) -> httpx.Response:
    """Compact JSON, as the bench and most clients write it (the fast path reads it)."""
    headers = {"Content-Type": "application/json"}
    return client.post(INFER, content=orjson.dumps(payload), headers=headers)


def test_a_large_body_gets_the_same_answer_on_either_path(
    client: httpx.Client, churn: Manifest
) -> None:
    """A field the protocol does not define sends a body to the general path (it is ignored)."""
    payload = large(churn, 1000)
    fast = post(client, payload)
    general = post(client, payload | {"comment": "read by the general path"})
    spaced = client.post(INFER, json=payload)  # ", " between values: types are checked
    assert fast.status_code == general.status_code == spaced.status_code == 200, fast.text
    assert fast.json() == general.json() == spaced.json()
    outputs = {o["name"]: o for o in fast.json()["outputs"]}
    assert outputs["probabilities"]["shape"] == [1000, 2]
    expected = [e.probabilities for e in churn.examples]
    got = np.array(outputs["probabilities"]["data"]).reshape(1000, 2)
    np.testing.assert_allclose(got[: len(expected)], expected, atol=1e-5)


def test_a_large_body_over_the_limit_is_413_naming_its_first_input(
    client: httpx.Client, churn: Manifest
) -> None:
    """Every input over the limit, in the compact form the fast path reads: the same 413."""
    response = post(client, large(churn, 10_001))
    assert response.status_code == 413, response.text
    first = churn.features[0].name
    assert response.json() == {
        "error": f"input {first!r} has 10001 rows; at most 10000 per request"
    }


@pytest.mark.parametrize(
    ("outputs", "status", "names"),
    [
        ([], 200, ["label", "probabilities"]),
        ([{"name": "probabilities"}], 200, ["probabilities"]),
        ([{"name": "label"}, {"name": "label"}], 400, None),
        ([{"name": "logits"}], 400, None),
    ],
)
def test_a_large_body_gets_the_same_outputs_answer_on_either_path(
    client: httpx.Client, churn: Manifest, outputs: Any, status: int, names: list[str] | None
) -> None:
    """The fast path reads these bodies (checked with its decoder) and hands `outputs` to the
    general path's rule, so both paths answer, or refuse, alike."""
    payload = large(churn, 1000) | {"outputs": outputs}
    assert TensorsDecoder(Validator(churn)).decode(orjson.dumps(payload), 10_000) is not None
    fast = post(client, payload)
    general = post(client, payload | {"comment": "read by the general path"})
    assert fast.status_code == general.status_code == status, fast.text[:300]
    assert fast.json() == general.json()
    if names is not None:
        assert [o["name"] for o in fast.json()["outputs"]] == names
    else:
        assert "output" in fast.json()["error"]


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("geography", "Mars", "input 'geography', element 500: Input should be"),
        ("age", 200.0, "input 'age', element 500: Input should be less than or equal to 100"),
        ("age", "40", "input 'age', element 500: '40' is not FP64"),
    ],
)
def test_a_bad_large_body_gets_the_general_paths_400(
    client: httpx.Client, churn: Manifest, name: str, value: Any, words: str
) -> None:
    payload = large(churn, 1000)
    tensor = next(t for t in payload["inputs"] if t["name"] == name)
    tensor["data"][500] = value
    response = post(client, payload)
    general = post(client, payload | {"comment": "read by the general path"})
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]
    assert response.json() == general.json()
