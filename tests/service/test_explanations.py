"""Explanations (`explain=true`) against a real server: contributions equal a direct onnxruntime
computation, a value at its reference contributes nothing, a feature that decides the label
ranks first; every API form (v1 JSON and CSV, V2 REST and gRPC, `score --explain`) and the
refusals (no reference values, a bad `explain`, too many records)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pandas as pd
import pytest

from service.explanations import MAX_EXPLAINED_ROWS
from service.manifest import MISSING_CATEGORY, Manifest, read_pointer
from tests.service.helpers import REPO, Server, copy_registry, free_port, manifest_of
from training.spec import load_spec
from training.train import TrainOptions, train

GATE_SPEC = """
name = "gate"
title = "Gate"
description = "Open when the signal is over 5; noise and colour do not matter."

[target]
name = "open"
labels = ["closed", "open"]
values = [0, 1]
positive = "open"

[mlp]
hidden_layer_sizes = [16]
learning_rate_init = 0.01

[[features]]
name = "signal"
type = "float"
min = 0
max = 10

[[features]]
name = "noise"
type = "float"
min = 0
max = 10
impute = "median"

[[features]]
name = "color"
type = "category"
categories = ["red", "green", "blue"]
"""
LEGACY = "legacy"  # churn, its manifest written before reference values existed
TOLERANCE = 2e-6  # float32 probabilities, rounded to 7 decimals in JSON


@pytest.fixture(scope="module")
def models(registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's registry, plus `gate` (one feature decides the label) and `legacy`."""
    target = copy_registry(registry_dir, tmp_path_factory.mktemp("explain") / "models")
    _train_gate(target)
    _legacy_copy(target / "churn", target / LEGACY)
    return target


@pytest.fixture(scope="module")
def server(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    grpc_port = free_port()
    env = {"PREDICT_GRPC_PORT": str(grpc_port), "PREDICT_POLL_INTERVAL_SECONDS": "0"}
    log = tmp_path_factory.mktemp("explain-logs") / "server.log"
    running = Server(models, log, env).start()
    running.grpc_address = f"127.0.0.1:{grpc_port}"  # type: ignore[attr-defined]
    yield running
    running.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def test_contributions_equal_a_direct_onnxruntime_computation(
    client: httpx.Client, models: Path
) -> None:
    for task in ("churn", "digits"):
        manifest = manifest_of(models, task)
        records = [example.record for example in manifest.examples[:3]]
        body = _predict(client, task, records)
        for record, prediction in zip(records, body["predictions"], strict=True):
            expected = direct_contributions(models, manifest, record)
            got = {entry["feature"]: entry["contribution"] for entry in prediction["explanation"]}
            assert list(got) and set(got) == set(expected)
            for name, value in expected.items():
                assert got[name] == pytest.approx(value, abs=TOLERANCE), (task, name)


def test_entries_carry_the_label_value_and_reference_largest_first(
    client: httpx.Client, churn: Manifest
) -> None:
    record = churn.examples[0].record
    (prediction,) = _predict(client, "churn", [record])["predictions"]
    explanation = prediction["explanation"]
    sizes = [abs(entry["contribution"]) for entry in explanation]
    assert sizes == sorted(sizes, reverse=True)
    for entry in explanation:
        feature = churn.feature(entry["feature"])
        assert entry["label"] == feature.label
        assert entry["reference"] == feature.reference
        assert entry["value"] == record[feature.name]  # as sent: 42 stays 42, True stays True
    assert set(prediction) >= {"label", "probability", "probabilities", "out_of_range"}


def test_a_value_at_its_reference_contributes_nothing(
    client: httpx.Client, churn: Manifest
) -> None:
    record = {f.name: _reference_value(f) for f in churn.features}
    (prediction,) = _predict(client, "churn", [record])["predictions"]
    assert all(entry["contribution"] == 0.0 for entry in prediction["explanation"])
    moved = {**record, "age": 80}
    (prediction,) = _predict(client, "churn", [moved])["predictions"]
    by_name = {entry["feature"]: entry["contribution"] for entry in prediction["explanation"]}
    assert by_name["age"] != 0.0
    assert all(value == 0.0 for name, value in by_name.items() if name != "age")


def test_the_feature_that_decides_the_label_ranks_first(client: httpx.Client, models: Path) -> None:
    gate = manifest_of(models, "gate")
    reference = float(gate.feature("signal").reference or 0.0)
    signal = 9.5 if reference < 5 else 0.5  # far across the boundary from the reference
    records = [
        {"signal": signal, "noise": noise, "color": color}
        for noise, color in ((1.0, "red"), (5.0, "green"), (9.0, "blue"))
    ]
    for prediction in _predict(client, "gate", records)["predictions"]:
        first, *others = prediction["explanation"]
        assert first["feature"] == "signal"
        assert abs(first["contribution"]) > 0.2
        assert all(abs(other["contribution"]) < abs(first["contribution"]) for other in others)


def test_a_missing_value_is_explained_against_the_reference(
    client: httpx.Client, models: Path
) -> None:
    gate = manifest_of(models, "gate")
    record: dict[str, Any] = {"signal": 7.0, "color": "red"}  # noise missing: imputed
    (prediction,) = _predict(client, "gate", [record])["predictions"]
    assert prediction["imputed"] == ["noise"]
    noise = next(entry for entry in prediction["explanation"] if entry["feature"] == "noise")
    assert noise["value"] is None
    expected = direct_contributions(models, gate, record)["noise"]
    assert noise["contribution"] == pytest.approx(expected, abs=TOLERANCE)


def test_without_explain_the_answer_is_unchanged(client: httpx.Client, churn: Manifest) -> None:
    records = [example.record for example in churn.examples[:3]]
    plain = client.post("/v1/models/churn/predict", json={"records": records}).json()
    off = client.post(
        "/v1/models/churn/predict", params={"explain": "false"}, json={"records": records}
    ).json()
    explained = _predict(client, "churn", records)
    assert plain["predictions"] == off["predictions"]
    assert all("explanation" not in p for p in plain["predictions"])
    for before, after in zip(plain["predictions"], explained["predictions"], strict=True):
        assert {k: v for k, v in after.items() if k != "explanation"} == before


def test_csv_gets_a_contribution_column_per_feature(client: httpx.Client, churn: Manifest) -> None:
    records = [example.record for example in churn.examples]
    header = ",".join(f.name for f in churn.features)
    lines = [",".join(str(record[f.name]) for f in churn.features) for record in records]
    small = "\n".join([header, *lines]) + "\n"
    big = "\n".join([header, *lines * 300]) + "\n"  # over the block reader's threshold
    answers = []
    for text in (small, big):
        response = client.post(
            "/v1/models/churn/predict",
            params={"explain": "true"},
            content=text.encode(),
            headers={"content-type": "text/csv"},
        )
        assert response.status_code == 200, response.text
        answers.append(list(csv.DictReader(io.StringIO(response.text))))
    small_rows, big_rows = answers
    assert big_rows[: len(small_rows)] == small_rows  # both CSV readers write the same cells
    names = [f"contribution_{f.name}" for f in churn.features]
    columns = list(small_rows[0])
    assert columns[-len(names) :] == names
    assert columns[-len(names) - 1] == "out_of_range"
    explained = _predict(client, "churn", records)["predictions"]
    for row, prediction in zip(small_rows, explained, strict=True):
        for entry in prediction["explanation"]:
            cell = row[f"contribution_{entry['feature']}"]
            assert float(cell) == pytest.approx(entry["contribution"], abs=1e-7)
            assert "e" not in cell and cell != "-0.0"  # fixed point, never an exponent


def test_v2_rest_returns_an_explanation_tensor(
    client: httpx.Client, churn: Manifest, models: Path
) -> None:
    import tritonclient.http as triton_http

    metadata = client.get("/v2/models/churn").json()
    outputs = {o["name"]: o for o in metadata["outputs"]}
    assert outputs["explanation"]["datatype"] == "FP32"
    assert outputs["explanation"]["shape"] == [-1, len(churn.features)]
    assert "explain" in outputs["explanation"]["parameters"]["note"]
    records = [example.record for example in churn.examples[:3]]
    triton = triton_http.InferenceServerClient(url=client.base_url.netloc.decode())
    try:
        result = triton.infer("churn", _http_inputs(churn, records), parameters={"explain": True})
        plain = triton.infer("churn", _http_inputs(churn, records))
    finally:
        triton.close()
    explanation = result.as_numpy("explanation")
    assert explanation is not None and explanation.shape == (3, len(churn.features))
    assert plain.as_numpy("explanation") is None
    for row, record in zip(explanation, records, strict=True):
        expected = direct_contributions(models, churn, record)
        assert row.tolist() == pytest.approx([expected[f.name] for f in churn.features], abs=1e-5)


def test_grpc_returns_an_explanation_tensor(server: Server, churn: Manifest, models: Path) -> None:
    import tritonclient.grpc as triton_grpc

    records = [example.record for example in churn.examples[:2]]
    with triton_grpc.InferenceServerClient(server.grpc_address) as triton:  # type: ignore[attr-defined]
        inputs = []
        for feature in churn.features:
            column = _column(feature.name, feature.type, records)
            tensor = triton_grpc.InferInput(feature.name, list(column.shape), _datatype(column))
            tensor.set_data_from_numpy(column)
            inputs.append(tensor)
        result = triton.infer("churn", inputs, parameters={"explain": True})
        with pytest.raises(Exception, match="explain"):
            triton.infer("churn", inputs, parameters={"explain": "maybe"})
    explanation = result.as_numpy("explanation")
    assert explanation is not None and explanation.dtype == np.float32
    assert explanation.shape == (2, len(churn.features))
    for row, record in zip(explanation, records, strict=True):
        expected = direct_contributions(models, churn, record)
        assert row.tolist() == pytest.approx([expected[f.name] for f in churn.features], abs=1e-5)


def test_score_explain_writes_the_contribution_columns(
    client: httpx.Client, churn: Manifest, models: Path, tmp_path: Path
) -> None:
    source = REPO / "examples" / "customers.csv"
    scored = tmp_path / "scored.csv"
    _score(models, source, scored, "--explain")
    rows = list(csv.DictReader(io.StringIO(scored.read_text(encoding="utf-8"))))
    api = client.post(
        "/v1/models/churn/predict",
        params={"explain": "true"},
        content=source.read_bytes(),
        headers={"content-type": "text/csv"},
    )
    assert rows == list(csv.DictReader(io.StringIO(api.text)))  # the API's exact cells
    parquet_in, parquet_out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pd.read_csv(source).to_parquet(parquet_in)
    _score(models, parquet_in, parquet_out, "--explain")
    frame = pd.read_parquet(parquet_out)
    for feature in churn.features:
        column = f"contribution_{feature.name}"
        cells = [float(row[column]) for row in rows]
        assert frame[column].tolist() == pytest.approx(cells, abs=1e-7)
    plain = tmp_path / "plain.csv"
    _score(models, source, plain)
    assert "contribution_" not in plain.read_text(encoding="utf-8")


def test_score_explain_refuses_a_version_without_references(models: Path, tmp_path: Path) -> None:
    source = tmp_path / "legacy.csv"
    shutil.copy(REPO / "examples" / "customers.csv", source)
    done = _run_score(models, source, tmp_path / "out.csv", "--explain", model=LEGACY)
    assert done.returncode == 2
    assert "no reference values to explain against; retrain it" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_version_without_references_serves_but_refuses_to_explain(
    client: httpx.Client, churn: Manifest
) -> None:
    records = [example.record for example in churn.examples[:2]]
    url = f"/v1/models/{LEGACY}/predict"
    assert client.post(url, json={"records": records}).status_code == 200
    refused = client.post(url, params={"explain": "true"}, json={"records": records})
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["query", "explain"]
    assert problem["msg"].endswith("has no reference values to explain against; retrain it")
    assert LEGACY in problem["msg"]
    csv_body = (REPO / "examples" / "customers.csv").read_bytes()
    refused = client.post(
        url, params={"explain": "1"}, content=csv_body, headers={"content-type": "text/csv"}
    )
    assert refused.status_code == 422 and "retrain it" in refused.text
    v2 = client.post(
        f"/v2/models/{LEGACY}/infer",
        json={"inputs": _v2_inputs(churn, records), "parameters": {"explain": True}},
    )
    assert v2.status_code == 400 and "retrain it" in v2.json()["error"]
    metadata = client.get(f"/v2/models/{LEGACY}").json()
    assert "explanation" not in [o["name"] for o in metadata["outputs"]]


def test_an_invalid_explain_value_is_refused_naming_the_parameter(
    client: httpx.Client, churn: Manifest
) -> None:
    records = [churn.examples[0].record]
    refused = client.post(
        "/v1/models/churn/predict", params={"explain": "maybe"}, json={"records": records}
    )
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["query", "explain"]
    assert "maybe" in problem["msg"]
    for value in ("maybe", 1, None):
        v2 = client.post(
            "/v2/models/churn/infer",
            json={"inputs": _v2_inputs(churn, records), "parameters": {"explain": value}},
        )
        assert v2.status_code == 400
        assert "'explain'" in v2.json()["error"]


def test_too_many_records_to_explain_is_a_413_naming_the_limit(
    client: httpx.Client, digits: Manifest
) -> None:
    limit = MAX_EXPLAINED_ROWS // (len(digits.features) + 1)
    records = [digits.examples[i % len(digits.examples)].record for i in range(limit + 1)]
    refused = client.post(
        "/v1/models/digits/predict", params={"explain": "true"}, json={"records": records}
    )
    assert refused.status_code == 413
    assert f"at most {limit} records" in refused.text
    fits = _predict(client, "digits", records[:limit])
    assert len(fits["predictions"]) == limit


# ---- helpers ----------------------------------------------------------------------------------


def direct_contributions(
    models: Path, manifest: Manifest, record: dict[str, Any]
) -> dict[str, float]:
    """P(record) - P(record with one feature at its reference), each row run on its own."""
    task_dir = models / manifest.name
    session = ort.InferenceSession(
        str(task_dir / read_pointer(task_dir) / manifest.onnx.file),
        providers=["CPUExecutionProvider"],
    )

    def probabilities(values: dict[str, Any]) -> npt.NDArray[np.float32]:
        feeds: dict[str, npt.NDArray[Any]] = {}
        for feature in manifest.features:
            value = values.get(feature.name)
            if feature.type == "category":
                text = MISSING_CATEGORY if value is None else str(value)
                feeds[feature.name] = np.array([[text]], dtype=object)
            else:
                number = np.nan if value is None else float(value)
                feeds[feature.name] = np.array([[number]], dtype=np.float32)
        (result,) = session.run(["probabilities"], feeds)
        row: npt.NDArray[np.float32] = result[0]
        return row

    own = probabilities(record)
    column = manifest.positive_index if manifest.kind == "binary" else int(np.argmax(own))
    return {
        feature.name: float(own[column])
        - float(probabilities({**record, feature.name: feature.reference})[column])
        for feature in manifest.features
    }


def _predict(client: httpx.Client, task: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(
        f"/v1/models/{task}/predict", params={"explain": "true"}, json={"records": records}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _reference_value(feature: Any) -> Any:
    """A feature's reference as a JSON record value of its type."""
    if feature.type == "bool":
        return bool(feature.reference)
    if feature.type == "int":
        return int(feature.reference)
    return feature.reference


def _column(name: str, kind: str, records: list[dict[str, Any]]) -> npt.NDArray[Any]:
    values = [record[name] for record in records]
    if kind == "category":
        return np.array(values, dtype=np.object_).reshape(-1, 1)
    return np.array(values, dtype=np.float32).reshape(-1, 1)


def _datatype(column: npt.NDArray[Any]) -> str:
    return "BYTES" if column.dtype == np.object_ else "FP32"


def _http_inputs(manifest: Manifest, records: list[dict[str, Any]]) -> list[Any]:
    import tritonclient.http as triton_http

    inputs = []
    for feature in manifest.features:
        column = _column(feature.name, feature.type, records)
        tensor = triton_http.InferInput(feature.name, list(column.shape), _datatype(column))
        tensor.set_data_from_numpy(column, binary_data=False)
        inputs.append(tensor)
    return inputs


def _v2_inputs(manifest: Manifest, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": f.name,
            "datatype": "BYTES" if f.type == "category" else "FP32",
            "shape": [len(records), 1],
            "data": [r[f.name] if f.type == "category" else float(r[f.name]) for r in records],
        }
        for f in manifest.features
    ]


def _run_score(
    models: Path, source: Path, output: Path, *flags: str, model: str = "churn"
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "service", "score", str(source), "--model", model]
    command += ["--models", str(models), "-o", str(output), "--quiet", "--workers", "1", *flags]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def _score(models: Path, source: Path, output: Path, *flags: str) -> None:
    done = _run_score(models, source, output, *flags)
    assert done.returncode == 0, done.stderr


def _train_gate(models: Path) -> None:
    """Train `gate` with the real training code: the label is `signal > 5`, nothing else."""
    rng = np.random.default_rng(0)
    rows = 600
    signal = rng.uniform(0, 10, rows).round(2)
    noise = rng.uniform(0, 10, rows).round(2).astype(object)
    noise[rng.uniform(size=rows) < 0.1] = ""  # some missing: the median is imputed
    frame = pd.DataFrame(
        {
            "signal": signal,
            "noise": noise,
            "color": rng.choice(["red", "green", "blue"], rows),
            "open": (signal > 5).astype(int),
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        spec, data = Path(folder) / "gate.toml", Path(folder) / "gate.csv"
        spec.write_text(GATE_SPEC, encoding="utf-8")
        frame.to_csv(data, index=False)
        overrides = {"max_iter": 80, "n_iter_no_change": 10}
        options = TrainOptions(out=models, data=data, cv_folds=0, jobs=1, mlp_overrides=overrides)
        result = train(load_spec(spec), options)
    assert result.promoted, result.message
    assert all(f.reference is not None for f in result.manifest.features)


def _legacy_copy(source: Path, target: Path) -> None:
    """The served churn version as task `legacy`, its manifest without reference values."""
    version = read_pointer(source)
    shutil.copytree(source / version, target / version, ignore=shutil.ignore_patterns("report"))
    path = target / version / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["name"] = LEGACY
    for feature in manifest["features"]:
        feature.pop("reference", None)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    (target / "current").write_text(version, encoding="utf-8")
