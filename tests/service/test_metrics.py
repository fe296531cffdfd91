"""/metrics in Prometheus text format changes as requests (and gRPC calls) are served."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.manifest import Manifest
from service.observability.metrics import Metrics


def samples(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_predictions_and_out_of_range_values(
    client: httpx.Client, churn: Manifest
) -> None:
    route = "/v1/models/{task}/predict"
    before = samples(client)
    records = [dict(churn.examples[0].record, age=100)] * 7
    predictions = client.post("/v1/models/churn/predict", json={"records": records}).json()
    client.post("/v1/models/churn/predict", json={"records": []})
    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"route": route, "model": "churn", "status": "200"}
    assert delta("predict_http_requests_total", **ok) == 1
    assert delta("predict_http_requests_total", **(ok | {"status": "422"})) == 1
    assert delta("predict_http_request_duration_seconds_count", **ok) == 1
    label = predictions["predictions"][0]["label"]
    assert delta("predict_predictions_total", model="churn", label=label) == 7
    assert delta("predict_out_of_range_total", model="churn", feature="age") == 7
    assert delta("predict_records_per_request_sum", route=route, model="churn") == 7
    assert value(after, "predict_model_info", model="churn", version=churn.version) == 1
    assert value(after, "predict_model_reloads_total", model="churn", result="success") == 1


def test_unknown_models_do_not_create_label_values(client: httpx.Client) -> None:
    client.post("/v1/models/not-a-model-xyz/predict", json={"records": []})
    assert "not-a-model-xyz" not in client.get("/metrics").text


def test_observe_grpc_counts_calls_and_their_latency_by_method_model_and_code() -> None:
    metrics = Metrics()
    metrics.observe_grpc("ModelInfer", "churn", "OK", 0.002)
    metrics.observe_grpc("ModelInfer", "churn", "OK", 0.2)
    metrics.observe_grpc("ModelInfer", "churn", "INVALID_ARGUMENT", 0.001)
    found = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }
    ok = {"method": "ModelInfer", "model": "churn", "code": "OK"}
    assert value(found, "predict_grpc_requests_total", **ok) == 2
    assert value(found, "predict_grpc_requests_total", **(ok | {"code": "INVALID_ARGUMENT"})) == 1
    assert value(found, "predict_grpc_request_duration_seconds_count", **ok) == 2
    assert value(found, "predict_grpc_request_duration_seconds_sum", **ok) == pytest.approx(0.202)
    bucket = "predict_grpc_request_duration_seconds_bucket"
    assert value(found, bucket, **ok, le="0.0025") == 1
    assert value(found, bucket, **ok, le="0.25") == 2
    assert value(found, bucket, **ok, le="+Inf") == 2
