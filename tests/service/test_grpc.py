"""The Open Inference Protocol over gRPC, spoken by an unmodified tritonclient.grpc to the real
server (uvicorn on loopback, gRPC on its own port), against the committed models; its answers
and refusals against the REST V2 route's for the same tensors."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from service.manifest import Feature, Manifest, read_pointer
from tests.service.helpers import REPO, Server, copy_registry, free_port, manifest_of
from tests.service.missing_models import NullableModel, nullable
from tests.service.test_lifecycle import clone_version, point, served_version, wait_for

__all__ = ["nullable"]  # a fixture, used by name

MODELS = REPO / "models"
MAX_BODY_BYTES = 2 * 1024 * 1024  # a digits batch of 10,000 rows (2.6 MB raw) is over it
NUMPY_TYPES: dict[str, Any] = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "BYTES": np.object_,
}
Tensors = list[dict[str, Any]]


def start(models: Path, log: Path, **env: str) -> Server:
    grpc_port = free_port()
    server = Server(models, log, {"PREDICT_GRPC_PORT": str(grpc_port), **env}).start()
    server.grpc_address = f"127.0.0.1:{grpc_port}"  # type: ignore[attr-defined]
    return server


def address(server: Server) -> str:
    value: str = server.grpc_address  # type: ignore[attr-defined]
    return value


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("grpc") / "server.log"
    running = start(
        MODELS,
        log,
        PREDICT_POLL_INTERVAL_SECONDS="0",
        PREDICT_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(address(server)) as grpc_client:
        yield grpc_client


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as rest:
        yield rest


def manifest(task: str) -> Manifest:
    return Manifest.load(MODELS / task / read_pointer(MODELS / task))


def tensors(task: str, records: Sequence[dict[str, Any]]) -> Tensors:
    """REST V2 tensors of these records, with the datatypes the model's metadata declares."""
    found = []
    for feature in manifest(task).features:
        datatype = "BYTES" if feature.type == "category" else "FP32"
        data = [record[feature.name] for record in records]
        if feature.type == "bool":  # declared FP32: V2 clients send bools as 0 and 1
            data = [float(value) for value in data]
        shape = [len(data)]
        found.append({"name": feature.name, "datatype": datatype, "shape": shape, "data": data})
    return found


def triton_inputs(given_tensors: Tensors) -> list[triton.InferInput]:
    inputs = []
    for tensor in given_tensors:
        array = np.array(tensor["data"], dtype=NUMPY_TYPES[tensor["datatype"]])
        item = triton.InferInput(tensor["name"], list(array.shape), tensor["datatype"])
        item.set_data_from_numpy(array)
        inputs.append(item)
    return inputs


def typed_request(task: str, given_tensors: Tensors) -> service_pb2.ModelInferRequest:
    """The same tensors in `contents` (typed), as KServe's clients send them."""
    request = service_pb2.ModelInferRequest(model_name=task, id="typed-1")
    for tensor in given_tensors:
        item = request.inputs.add(
            name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"]
        )
        if tensor["datatype"] == "BYTES":
            item.contents.bytes_contents.extend(str(v).encode() for v in tensor["data"])
        else:
            item.contents.fp32_contents.extend(tensor["data"])
    return request


def rest_infer(http: httpx.Client, task: str, given_tensors: Tensors) -> httpx.Response:
    return http.post(f"/v2/models/{task}/infer", json={"inputs": given_tensors})


def rest_outputs(body: dict[str, Any]) -> tuple[list[str], npt.NDArray[np.float32]]:
    outputs = {output["name"]: output for output in body["outputs"]}
    probabilities = outputs["probabilities"]
    shape = probabilities["shape"]
    values = np.array(probabilities["data"], dtype=np.float32).reshape(shape)
    return outputs["label"]["data"], values


def test_metadata_and_readiness(client: triton.InferenceServerClient, http: httpx.Client) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("churn")
    server_metadata = client.get_server_metadata(as_json=True)
    assert server_metadata["name"] == http.get("/v2").json()["name"]
    for task in ("churn", "digits", "draft_pick"):
        metadata = client.get_model_metadata(task, as_json=True)
        rest = http.get(f"/v2/models/{task}").json()
        assert metadata["name"] == task and metadata["versions"] == rest["versions"]
        assert metadata["platform"] == rest["platform"] == "onnxruntime_onnx"
        for ours, theirs in (
            (metadata["inputs"], rest["inputs"]),
            (metadata["outputs"], rest["outputs"]),
        ):
            assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in ours] == [
                (t["name"], t["datatype"], t["shape"]) for t in theirs
            ]
    version = manifest("churn").version
    assert client.is_model_ready("churn", version)
    with pytest.raises(InferenceServerException) as unknown:
        client.is_model_ready("no_such_task")
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as other_version:
        client.get_model_metadata("churn", "19990101T000000Z")
    assert other_version.value.status() == "StatusCode.NOT_FOUND"


def test_raw_and_typed_contents_answer_as_rest(
    server: Server, client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    records = [dict(example.record) for example in manifest("churn").examples] * 3
    given_tensors = tensors("churn", records)
    rest = rest_infer(http, "churn", given_tensors)
    assert rest.status_code == 200, rest.text
    labels, probabilities = rest_outputs(rest.json())

    raw = client.infer("churn", triton_inputs(given_tensors), request_id="raw-1")
    assert raw.get_response().id == "raw-1"
    assert raw.get_response().model_version == manifest("churn").version
    assert len(raw.get_response().raw_output_contents) == 2  # raw in, raw out
    assert [label.decode() for label in raw.as_numpy("label")] == labels
    np.testing.assert_array_equal(raw.as_numpy("probabilities"), probabilities)

    with grpc.insecure_channel(address(server)) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        typed = stub.ModelInfer(typed_request("churn", given_tensors))
    assert typed.id == "typed-1" and not typed.raw_output_contents
    by_name = {output.name: output for output in typed.outputs}
    assert [v.decode() for v in by_name["label"].contents.bytes_contents] == labels
    assert list(by_name["probabilities"].shape) == [len(records), 2]
    np.testing.assert_array_equal(
        np.array(by_name["probabilities"].contents.fp32_contents, dtype=np.float32),
        probabilities.ravel(),
    )


def test_requested_outputs(client: triton.InferenceServerClient) -> None:
    records = [dict(manifest("draft_pick").examples[0].record)]
    result = client.infer(
        "draft_pick",
        triton_inputs(tensors("draft_pick", records)),
        outputs=[triton.InferRequestedOutput("label")],
    )
    assert result.as_numpy("label") is not None and result.as_numpy("probabilities") is None
    with pytest.raises(InferenceServerException) as error:
        client.infer(
            "draft_pick",
            triton_inputs(tensors("draft_pick", records)),
            outputs=[triton.InferRequestedOutput("shap_values")],
        )
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unknown output 'shap_values'" in str(error.value.message())


def test_bad_input_gets_the_rest_message_as_invalid_argument(
    client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    records = [dict(example.record) for example in manifest("churn").examples]
    records[0]["credit_score"] = -5.0
    records[1]["geography"] = "Atlantis"
    records[2]["age"] = 17.5
    given_tensors = tensors("churn", records)
    rest = rest_infer(http, "churn", given_tensors)
    assert rest.status_code == 400
    with pytest.raises(InferenceServerException) as error:
        client.infer("churn", triton_inputs(given_tensors))
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.value.message() == rest.json()["error"]
    assert "'credit_score', element 0" in rest.json()["error"]
    assert "(and " in rest.json()["error"] or "'age'" in rest.json()["error"]

    missing = [t for t in given_tensors if t["name"] != "age"]
    with pytest.raises(InferenceServerException) as absent:
        client.infer("churn", triton_inputs(missing))
    assert absent.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert absent.value.message() == rest_infer(http, "churn", missing).json()["error"]

    with pytest.raises(InferenceServerException) as unknown:
        client.infer("no_such_task", triton_inputs(given_tensors))
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    assert "no_such_task" in str(unknown.value.message())


def test_malformed_raw_contents_are_refused(server: Server) -> None:
    record = dict(manifest("churn").examples[0].record)
    request = service_pb2.ModelInferRequest(model_name="churn")
    for tensor in tensors("churn", [record]):
        request.inputs.add(name=tensor["name"], datatype=tensor["datatype"], shape=[1])
        if tensor["datatype"] == "BYTES":
            request.raw_input_contents.append(b"\x09\x00\x00\x00Fr")  # says 9 bytes, has 2
        else:
            request.raw_input_contents.append(b"\x00\x00\x80")  # 3 bytes: no whole FP32
    with grpc.insecure_channel(address(server)) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw" in str(error.value.details())


def test_oversized_message_is_refused(client: triton.InferenceServerClient) -> None:
    rows = 10_000
    features = manifest("digits").features
    pixels = np.zeros((rows, 1), dtype=np.float32)
    inputs = []
    for feature in features:
        item = triton.InferInput(feature.name, [rows, 1], "FP32")
        item.set_data_from_numpy(pixels)
        inputs.append(item)
    with pytest.raises(InferenceServerException) as error:
        client.infer("digits", inputs)
    assert error.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    # Under the limit, the same kind of batch is answered.
    small = []
    for feature in features:
        item = triton.InferInput(feature.name, [1_000, 1], "FP32")
        item.set_data_from_numpy(pixels[:1_000])
        small.append(item)
    assert client.infer("digits", small).as_numpy("label").shape == (1_000,)


def test_health_service(server: Server) -> None:
    with grpc.insecure_channel(address(server)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as error:
            health.Check(health_pb2.HealthCheckRequest(service="something.Else"))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_calls_are_counted_in_the_metrics_and_logged(
    server: Server, client: triton.InferenceServerClient, http: httpx.Client
) -> None:
    def count() -> float:
        line = 'predict_grpc_requests_total{code="OK",method="ModelInfer",model="draft_pick"}'
        for text in http.get("/metrics").text.splitlines():
            if text.startswith(line):
                return float(text.rsplit(" ", 1)[1])
        return 0.0

    def binned(feature: str) -> float:
        """Records counted into the drift bins of one feature (issue 21), over all its bins."""
        total = 0.0
        for text in http.get("/metrics").text.splitlines():
            if (
                text.startswith("predict_feature_bin_total{")
                and 'model="draft_pick"' in text
                and f'feature="{feature}"' in text
            ):
                total += float(text.rsplit(" ", 1)[1])
        return total

    before, before_binned = count(), binned("height_cm")
    records = [dict(manifest("draft_pick").examples[0].record)] * 4
    for _ in range(3):
        client.infer("draft_pick", triton_inputs(tensors("draft_pick", records)))
    assert count() == before + 3
    assert binned("height_cm") == before_binned + 12  # drift counts gRPC's records too
    client.infer(
        "draft_pick",
        triton_inputs(tensors("draft_pick", records)),
        request_id="r1",
        headers={"x-request-id": "trace-42"},
    )
    deadline = time.monotonic() + 5
    while '"request_id":"trace-42"' not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(line) for line in server.log().splitlines() if "trace-42" in line]
    assert lines, server.log()[-2000:]
    assert lines[0]["method"] == "gRPC" and lines[0]["status"] == "OK"
    assert lines[0]["route"] == "/inference.GRPCInferenceService/ModelInfer"
    assert lines[0]["model"] == "draft_pick"


def _values(feature: Feature) -> st.SearchStrategy[Any]:
    """Mostly valid values of one feature, sometimes not (out of range, unknown category)."""
    if feature.type == "category":
        return st.sampled_from([*(feature.categories or []), "Atlantis"])
    if feature.type == "bool":
        return st.sampled_from([0.0, 1.0, 1.0, 2.0])
    low, high = feature.min or 0.0, feature.max or 1e6
    valid = (
        st.integers(int(low), int(high)).map(float)
        if feature.type == "int"
        else st.floats(low, high, width=32)
    )
    return st.one_of(valid, valid, valid, st.floats(-1e7, 1e7, width=32))


CHURN = manifest("churn")
RECORD = st.fixed_dictionaries({f.name: _values(f) for f in CHURN.features})


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    records=st.one_of(st.lists(RECORD, min_size=1, max_size=1), st.lists(RECORD, max_size=30)),
    datatype=st.sampled_from(["FP32", "FP64", "INT64"]),
)
def test_grpc_and_rest_answer_the_same(
    records: list[dict[str, Any]],
    datatype: str,
    client: triton.InferenceServerClient,
    http: httpx.Client,
) -> None:
    """One record (gRPC's element-by-element path) or many, numbers as floats or integers."""
    if not records:
        records = [dict(CHURN.examples[0].record)]
    given_tensors = tensors("churn", records)
    for tensor in given_tensors:
        if tensor["datatype"] != "BYTES":
            whole = all(float(value).is_integer() for value in tensor["data"])
            if datatype != "INT64" or whole:
                tensor["datatype"] = datatype
            if tensor["datatype"] == "INT64":
                tensor["data"] = [int(value) for value in tensor["data"]]
    rest = rest_infer(http, "churn", given_tensors)
    if rest.status_code == 200:
        labels, probabilities = rest_outputs(rest.json())
        answer = client.infer("churn", triton_inputs(given_tensors))
        assert [label.decode() for label in answer.as_numpy("label")] == labels
        np.testing.assert_array_equal(answer.as_numpy("probabilities"), probabilities)
    else:
        assert rest.status_code == 400, rest.text
        with pytest.raises(InferenceServerException) as error:
            client.infer("churn", triton_inputs(given_tensors))
        assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert error.value.message() == rest.json()["error"]


def test_api_keys_guard_inference(tmp_path: Path) -> None:
    server = start(MODELS, tmp_path / "server.log", PREDICT_API_KEYS="grpc-key-1")
    try:
        records = [dict(manifest("churn").examples[0].record)]
        with triton.InferenceServerClient(address(server)) as keyed:
            assert keyed.is_server_ready()  # health and metadata stay open, as over REST
            with pytest.raises(InferenceServerException) as missing:
                keyed.infer("churn", triton_inputs(tensors("churn", records)))
            assert missing.value.status() == "StatusCode.UNAUTHENTICATED"
            with pytest.raises(InferenceServerException) as wrong:
                keyed.infer(
                    "churn",
                    triton_inputs(tensors("churn", records)),
                    headers={"authorization": "Bearer nope"},
                )
            assert wrong.value.status() == "StatusCode.PERMISSION_DENIED"
            answer = keyed.infer(
                "churn",
                triton_inputs(tensors("churn", records)),
                headers={"x-api-key": "grpc-key-1"},
            )
            assert answer.as_numpy("label").shape == (1,)
    finally:
        server.stop()


def test_hot_reload_under_grpc_load_fails_no_call(tmp_path: Path) -> None:
    models = copy_registry(MODELS, tmp_path / "models")
    old = manifest_of(models, "churn")
    server = start(models, tmp_path / "server.log", PREDICT_POLL_INTERVAL_SECONDS="0.2")
    failures: list[str] = []
    versions: list[str] = []
    stop = threading.Event()
    given_tensors = tensors("churn", [dict(old.examples[0].record)] * 10)

    def traffic() -> None:
        with triton.InferenceServerClient(address(server)) as load:
            inputs = triton_inputs(given_tensors)
            while not stop.is_set():
                try:
                    versions.append(load.infer("churn", inputs).get_response().model_version)
                except InferenceServerException as exc:
                    failures.append(str(exc))

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        new = "29990101T000000Z"
        clone_version(models / "churn", old.version, new)
        point(models / "churn", new)
        with server.client() as rest:
            wait_for(lambda: served_version(rest, "churn") == new)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.stop()
    assert failures == []
    assert versions[0] == old.version and versions[-1] == new
    assert len(versions) > 50


def test_two_workers_share_the_port(tmp_path: Path) -> None:
    server = start(MODELS, tmp_path / "server.log", PREDICT_WORKERS="2")
    try:
        records = [dict(manifest("digits").examples[0].record)]
        for _ in range(8):  # each client is a new connection, which the kernel may give either
            with triton.InferenceServerClient(address(server)) as fresh:
                assert fresh.infer("digits", triton_inputs(tensors("digits", records)))
    finally:
        server.stop()
    assert server.process is not None and server.process.returncode == 0


def test_a_taken_port_fails_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"PREDICT_GRPC_PORT": str(port), "PREDICT_PORT": str(free_port())}
        completed = subprocess.run(
            [sys.executable, "-m", "service"],
            cwd=REPO,
            env={**os.environ, **env, "PREDICT_MODELS_DIR": str(MODELS)},
            capture_output=True,
            timeout=60,
        )
    assert completed.returncode == 3
    assert f"cannot serve gRPC on 127.0.0.1:{port}" in completed.stderr.decode()


def test_examples_file_round_trips(client: triton.InferenceServerClient) -> None:
    """examples/infer.json, the README's V2 body, answered over gRPC too."""
    body = json.loads((REPO / "examples" / "infer.json").read_text())
    answer = client.infer("churn", triton_inputs(body["inputs"]))
    assert answer.as_numpy("label").shape == (1,)


def test_missing_values_are_nan_or_empty_and_answer_as_rest_nulls(
    nullable: NullableModel, tmp_path: Path
) -> None:
    """Protobuf has no null: a nullable number is NaN, a nullable category "" (as over REST)."""
    records = [nullable.full_record() for _ in range(4)]
    for i, feature in enumerate(nullable.nullable):
        records[i % 4][feature.name] = None
    features = nullable.manifest.features
    datatypes = {f.name: "BYTES" if f.type == "category" else "FP64" for f in features}
    rest_tensors = [
        {
            "name": f.name,
            "datatype": datatypes[f.name],
            "shape": [len(records)],
            "data": [
                r[f.name]
                if f.type in ("category", "float") or r[f.name] is None
                else float(r[f.name])
                for r in records
            ],
        }
        for f in features
    ]
    grpc_tensors = [
        {
            **tensor,
            "data": [
                ("" if tensor["datatype"] == "BYTES" else math.nan) if value is None else value
                for value in tensor["data"]
            ],
        }
        for tensor in rest_tensors
    ]
    server = start(nullable.models_dir, tmp_path / "server.log")
    try:
        with server.client() as rest_client:
            rest = rest_infer(rest_client, nullable.task, rest_tensors)
        assert rest.status_code == 200, rest.text
        outputs = {output["name"]: output for output in rest.json()["outputs"]}
        labels, probabilities = rest_outputs(rest.json())
        assert any(outputs["imputed"]["data"])
        with triton.InferenceServerClient(address(server)) as grpc_client:
            answer = grpc_client.infer(nullable.task, triton_inputs(grpc_tensors))
    finally:
        server.stop()
    assert [label.decode() for label in answer.as_numpy("label")] == labels
    np.testing.assert_array_equal(answer.as_numpy("probabilities"), probabilities)
    imputed = [value.decode() for value in answer.as_numpy("imputed")]
    assert imputed == outputs["imputed"]["data"]


def test_sigterm_drains_grpc_with_http(tmp_path: Path) -> None:
    """On SIGTERM gRPC stops with HTTP: every call that reached the service is answered, later
    ones are refused by gRPC itself (UNAVAILABLE, or CANCELLED for one racing the shutdown; the
    client may retry either elsewhere), and the exit is a clean 0."""
    server = start(MODELS, tmp_path / "server.log", PREDICT_GRACEFUL_TIMEOUT_SECONDS="10")
    given_tensors = tensors("churn", [dict(manifest("churn").examples[0].record)] * 50)
    answered: list[str] = []
    refused: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with triton.InferenceServerClient(address(server)) as load:
            inputs = triton_inputs(given_tensors)
            while not stop.is_set():
                try:
                    load.infer("churn", inputs, client_timeout=5)
                    answered.append("OK")
                except InferenceServerException as exc:
                    refused.append(str(exc.status()))
                    time.sleep(0.05)

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    assert server.process is not None
    started = time.monotonic()
    server.process.terminate()
    code = server.process.wait(timeout=30)
    took = time.monotonic() - started
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    server.stop()
    assert code == 0, server.log()[-2000:]
    assert took < 10
    assert answered
    assert set(refused) <= {"StatusCode.UNAVAILABLE", "StatusCode.CANCELLED"}, refused
    calls = [json.loads(line) for line in server.log().splitlines() if '"method":"gRPC"' in line]
    assert len(calls) == len(answered)
    assert {call["status"] for call in calls} == {"OK"}
