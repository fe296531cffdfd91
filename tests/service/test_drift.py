"""Drift: records counted into the manifest's bins on every route, the PSI per feature over a
window (GET /v1/models/{task}/drift), the counters on /metrics, across reloads and workers."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.drift import EPSILON, WINDOW_CAPACITY, Tally, binning_of
from service.manifest import Manifest, normalize_header, read_pointer
from service.model import load_model
from service.validation import batch_from_records
from tests.service.helpers import Server, copy_registry, manifest_of
from tests.service.test_lifecycle import clone_version, point
from tests.service.test_metrics import samples, value
from training.generators import generate

StartServer = Callable[..., Server]
Record = dict[str, Any]
ROWS = 2000
AGE_SHIFT = 25
PREDICT = "/v1/models/churn/predict"
DRIFT = "/v1/models/churn/drift"


def churn_records(manifest: Manifest, rows: int, seed: int, age_shift: int = 0) -> list[Record]:
    """Customers generated like the training rows, every one `age_shift` years older (within
    the feature's domain), as JSON records."""
    frame = generate("churn", rows, seed=seed).frame
    frame.columns = [normalize_header(column) for column in frame.columns]
    age = manifest.feature("age")
    assert age.max is not None
    frame["age"] = np.minimum(frame["age"] + age_shift, age.max)
    kinds = {"bool": bool, "int": int, "float": float, "category": str}
    return [
        {f.name: kinds[f.type](row[f.name]) for f in manifest.features}
        for row in frame.to_dict("records")
    ]


def csv_body(manifest: Manifest, records: list[Record]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([f.name for f in manifest.features])
    for record in records:
        writer.writerow([int(v) if isinstance(v, bool) else v for v in record.values()])
    return out.getvalue().encode()


def v2_body(manifest: Manifest, records: list[Record]) -> dict[str, Any]:
    types = {"bool": "BOOL", "category": "BYTES"}
    return {
        "inputs": [
            {
                "name": f.name,
                "shape": [len(records), 1],
                "datatype": types.get(f.type, "FP32"),
                "data": [record[f.name] for record in records],
            }
            for f in manifest.features
        ]
    }


def direct_psi(counts: list[int] | list[float], shares: list[float]) -> float:
    """The PSI as the docs define it, from a window's counts and the manifest's shares."""
    actual = np.maximum(np.asarray(counts) / sum(counts), EPSILON)
    expected = np.maximum(np.asarray(shares), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def send(client: httpx.Client, manifest: Manifest, records: list[Record]) -> None:
    """A third each over v1 JSON (in batches), v1 CSV and V2 REST."""
    third = len(records) // 3
    json_part, csv_part, v2_part = records[:third], records[third : 2 * third], records[2 * third :]
    for start in range(0, len(json_part), 250):
        answer = client.post(PREDICT, json={"records": json_part[start : start + 250]})
        assert answer.status_code == 200, answer.text
    headers = {"Content-Type": "text/csv"}
    answer = client.post(PREDICT, content=csv_body(manifest, csv_part), headers=headers)
    assert answer.status_code == 200, answer.text
    answer = client.post("/v2/models/churn/infer", json=v2_body(manifest, v2_part))
    assert answer.status_code == 200, answer.text


def feature(answer: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in answer["features"] if f["name"] == name)
    return found


def bin_totals(client: httpx.Client, version: str, feature_name: str) -> float:
    found = samples(client)
    return sum(
        count
        for (name, labels), count in found.items()
        if name == "predict_feature_bin_total"
        and dict(labels).get("feature") == feature_name
        and dict(labels).get("version") == version
    )


@pytest.fixture(scope="module")
def drifted(
    registry_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Manifest]]:
    """One server that saw ROWS customers AGE_SHIFT years older, then ROWS like training."""
    churn = manifest_of(registry_dir, "churn")
    logs = tmp_path_factory.mktemp("drift-logs") / "server.log"
    server = Server(registry_dir, logs, {"PREDICT_POLL_INTERVAL_SECONDS": "0"}).start()
    with server.client() as client:
        send(client, churn, churn_records(churn, ROWS, seed=11, age_shift=AGE_SHIFT))
        send(client, churn, churn_records(churn, ROWS, seed=12))
    yield server, churn
    server.stop()


def test_recent_unshifted_records_are_all_stable(drifted: tuple[Server, Manifest]) -> None:
    server, churn = drifted
    with server.client() as client:
        answer = client.get(DRIFT, params={"window": str(ROWS)}).json()
    assert answer["window"]["records"] == ROWS
    assert answer["scope"] == "worker"
    assert answer["version"] == churn.version
    assert {f["name"]: f["status"] for f in answer["features"]} == dict.fromkeys(
        [f.name for f in churn.features], "stable"
    )


def test_older_customers_drift_age_only_with_the_psi_of_numpy(
    drifted: tuple[Server, Manifest],
) -> None:
    server, churn = drifted
    with server.client() as client:
        answer = client.get(DRIFT, params={"window": str(2 * ROWS)}).json()
    drifted_features = [f["name"] for f in answer["features"] if f["status"] == "drifted"]
    assert drifted_features == ["age"]
    for name in [f.name for f in churn.features]:
        found = feature(answer, name)
        distribution = churn.feature(name).distribution
        assert distribution is not None
        assert found["bins"] == distribution.bins
        assert found["reference_shares"] == distribution.shares
        assert sum(found["counts"]) == 2 * ROWS
        assert found["psi"] == pytest.approx(direct_psi(found["counts"], distribution.shares))
    assert feature(answer, "age")["psi"] >= 0.25
    prediction = answer["prediction"]
    assert churn.prediction_distribution is not None
    assert prediction["reference_shares"] == churn.prediction_distribution.shares
    assert sum(prediction["counts"]) == 2 * ROWS


def test_a_window_of_minutes_holds_every_recent_record(drifted: tuple[Server, Manifest]) -> None:
    server, _ = drifted
    with server.client() as client:
        for window in ("10m", "600s", "1h"):
            answer = client.get(DRIFT, params={"window": window}).json()
            assert answer["window"]["records"] == 2 * ROWS, window
            assert answer["window"]["complete"] is True
        default = client.get(DRIFT).json()
    assert default["window"]["requested"] == "10000"
    assert default["window"]["records"] == 2 * ROWS
    assert default["window"]["complete"] is False  # 10,000 asked, fewer seen


@pytest.mark.parametrize("window", ["abc", "0", "0m", "-5", "1.5h", str(WINDOW_CAPACITY + 1), "5w"])
def test_a_bad_window_is_a_422_naming_the_parameter(
    drifted: tuple[Server, Manifest], window: str
) -> None:
    server, _ = drifted
    with server.client() as client:
        answer = client.get(DRIFT, params={"window": window})
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["query", "window"]
    assert "window must be" in problem["msg"]


def test_counters_and_reference_shares_are_on_metrics(drifted: tuple[Server, Manifest]) -> None:
    server, churn = drifted
    with server.client() as client:
        answer = client.get(DRIFT, params={"window": str(2 * ROWS)}).json()
        found = samples(client)
    labels = {"model": "churn", "version": churn.version}
    age = churn.feature("age").distribution
    assert age is not None
    for bin_name, share, count in zip(
        age.bins, age.shares, feature(answer, "age")["counts"], strict=True
    ):
        series = {**labels, "feature": "age", "bin": bin_name}
        assert value(found, "predict_feature_bin_total", **series) == count
        assert value(found, "predict_feature_reference_share", **series) == pytest.approx(share)
    predictions = sum(v for (name, _), v in found.items() if name == "predict_prediction_bin_total")
    assert predictions == 2 * ROWS
    psi = value(found, "predict_feature_psi", **labels, feature="age")
    assert psi == pytest.approx(feature(answer, "age")["psi"])
    for name in [f.name for f in churn.features]:  # the PromQL of the docs, over all records
        bins = [dict(key) for metric, key in found if metric == "predict_feature_bin_total"]
        mine = [b for b in bins if b["feature"] == name and b["version"] == churn.version]
        counts = [value(found, "predict_feature_bin_total", **b) for b in mine]
        shares = [value(found, "predict_feature_reference_share", **b) for b in mine]
        assert direct_psi(counts, shares) == pytest.approx(feature(answer, name)["psi"])


def test_refused_records_are_not_counted(drifted: tuple[Server, Manifest]) -> None:
    server, churn = drifted
    records = churn_records(churn, 30, seed=13)
    bad = [*records[:29], {**records[29], "age": 7}]
    with server.client() as client:
        before = bin_totals(client, churn.version, "age")
        assert client.post(PREDICT, json={"records": bad}).status_code == 422
        headers = {"Content-Type": "text/csv"}
        refused = client.post(PREDICT, content=csv_body(churn, bad), headers=headers)
        assert refused.status_code == 422
        refused = client.post("/v2/models/churn/infer", json=v2_body(churn, bad))
        assert refused.status_code == 400
        assert bin_totals(client, churn.version, "age") == before == 2 * ROWS


def test_a_reload_starts_new_series_and_keeps_the_old_counts(
    registry_dir: Path, tmp_path: Path, start_server: StartServer
) -> None:
    models = copy_registry(registry_dir, tmp_path / "models")
    task_dir = models / "churn"
    old = read_pointer(task_dir)
    churn = manifest_of(models, "churn")
    server = start_server(models, PREDICT_POLL_INTERVAL_SECONDS="0.1")
    new = "29990101T000000Z"
    with server.client() as client:
        send(client, churn, churn_records(churn, 300, seed=21))
        clone_version(task_dir, old, new)
        point(task_dir, new)
        deadline = time.monotonic() + 30
        while client.get("/v1/models/churn").json()["version"] != new:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        send(client, churn, churn_records(churn, 90, seed=22))
        assert bin_totals(client, old, "age") == 300
        assert bin_totals(client, new, "age") == 90
        answer = client.get(DRIFT).json()
    assert answer["version"] == new
    assert answer["window"]["records"] == 90


def test_a_version_without_reference_serves_and_its_drift_is_refused(
    registry_dir: Path, tmp_path: Path, start_server: StartServer
) -> None:
    models = copy_registry(registry_dir, tmp_path / "models")
    task_dir = models / "churn"
    churn = manifest_of(models, "churn")
    old = "20000101T000000Z"

    def without_reference(manifest: dict[str, Any]) -> None:
        manifest.pop("prediction_distribution")
        for entry in manifest["features"]:
            entry.pop("distribution")

    clone_version(task_dir, read_pointer(task_dir), old, without_reference)
    point(task_dir, old)
    server = start_server(models)
    with server.client() as client:
        answer = client.post(PREDICT, json={"records": churn_records(churn, 5, seed=3)})
        assert answer.status_code == 200, answer.text
        refused = client.get(DRIFT)
        drift_series = [
            labels for (name, labels), _ in samples(client).items() if "bin" in dict(labels)
        ]
    assert drift_series  # the other tasks have reference distributions
    assert all(dict(labels)["model"] != "churn" for labels in drift_series)
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        f"model 'churn' version '{old}' has no reference distributions; retrain it"
    )


def test_two_workers_sum_their_counters(
    registry_dir: Path, tmp_path: Path, start_server: StartServer
) -> None:
    """Each worker pushes its counts every few seconds; /metrics from either shows the sum."""
    from tests.service.test_metrics_workers import WORKERS, _per_worker

    churn = manifest_of(registry_dir, "churn")
    metrics_dir = tmp_path / "metrics"
    server = start_server(registry_dir, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), **WORKERS)
    record = churn_records(churn, 1, seed=5)
    sent = 0
    age = ("counter", "predict_feature_bin_total", {"feature": "age"})
    deadline = time.monotonic() + 60
    while len(_per_worker(metrics_dir, *age)) < 2:  # until both workers pushed counts
        assert time.monotonic() < deadline, "the counts of both workers never showed"
        for _ in range(20):  # a fresh connection each, so both workers get some
            answer = httpx.post(f"{server.url}{PREDICT}", json={"records": record}, timeout=60)
            assert answer.status_code == 200
            sent += 1
        time.sleep(0.5)
    while True:
        with server.client() as client:
            if bin_totals(client, churn.version, "age") == sent:
                break
        assert time.monotonic() < deadline, "the counters never summed the records sent"
        time.sleep(0.5)


def test_the_window_ring_wraps_and_totals_keep_every_record(registry_dir: Path) -> None:
    task_dir = registry_dir / "churn"
    model = load_model(task_dir / read_pointer(task_dir), 1)
    rules = binning_of(model)
    assert rules is not None
    tally = Tally(rules, capacity=500)
    records = churn_records(model.manifest, 700, seed=8)
    expected = np.zeros(rules.size, dtype=np.int64)
    windows: list[np.ndarray[Any, Any]] = []
    for size in (1, 1, 3, 120, 250, 1, 600, 700, 64, 65):
        batch = batch_from_records(model.validator, records[:size])
        prediction = model.predict(batch)
        codes = rules.codes(batch.inputs, rules.answers(prediction), batch.size)
        expected += rules.counts(codes)
        windows.append(codes)
        tally.add(batch, prediction)
    assert tally.totals().tolist() == expected.tolist()
    last = np.concatenate(windows)[-500:]
    assert tally.window(records=500).counts.tolist() == rules.counts(last).tolist()
    assert tally.window(records=130).counts.tolist() == rules.counts(last[-130:]).tolist()
    assert tally.window(seconds=60).records == 500
    tally.retire()
    assert tally.totals().tolist() == expected.tolist()
    assert tally.window().records == 0
