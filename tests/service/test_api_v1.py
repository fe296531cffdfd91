"""v1 against a real server: listing, describing, predicting JSON records, request ids."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.manifest import Manifest


def records(manifest: Manifest, count: int) -> list[dict[str, Any]]:
    examples = [example.record for example in manifest.examples]
    return [dict(examples[i % len(examples)]) for i in range(count)]


def test_list_models_names_every_task_with_its_version(client: httpx.Client) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()["models"]}
    assert set(models) == {"churn", "digits", "draft_pick"}
    assert all(m["state"] == "ready" and m["version"] for m in models.values())
    assert models["churn"]["predict"] == "/v1/models/churn/predict"


def test_describe_model_returns_the_manifest_contract(
    client: httpx.Client, churn: Manifest
) -> None:
    body = client.get("/v1/models/churn").json()
    assert body["version"] == churn.version
    assert body["labels"] == churn.labels
    assert body["threshold"] == churn.threshold
    assert body["metrics"]["roc_auc"] == churn.metrics.roc_auc
    age = next(f for f in body["features"] if f["name"] == "age")
    assert (age["type"], age["unit"], age["min"], age["max"]) == ("int", "years", 18, 100)
    geography = next(f for f in body["features"] if f["name"] == "geography")
    assert geography["categories"] == ["France", "Germany", "Spain"]
    assert "data" not in body  # the training data's source path is not published


def test_predict_matches_the_probabilities_recorded_at_export(
    client: httpx.Client, churn: Manifest
) -> None:
    response = client.post("/v1/models/churn/predict", json={"records": records(churn, 5)})
    assert response.status_code == 200
    body = response.json()
    assert (body["model"], body["version"]) == ("churn", churn.version)
    assert body["request_id"] == response.headers["x-request-id"]
    for prediction, example in zip(body["predictions"], churn.examples, strict=True):
        expected = dict(zip(churn.labels, example.probabilities, strict=True))
        assert prediction["probabilities"] == pytest.approx(expected, abs=1e-5)
        positive = expected[churn.labels[1]]
        assert prediction["probability"] == pytest.approx(positive, abs=1e-5)
        wanted = churn.labels[1] if positive >= churn.threshold else churn.labels[0]
        assert prediction["label"] == wanted


def test_multiclass_probability_is_that_of_the_predicted_label(
    client: httpx.Client, digits: Manifest
) -> None:
    body = client.post("/v1/models/digits/predict", json={"records": records(digits, 3)}).json()
    for prediction in body["predictions"]:
        best = max(prediction["probabilities"], key=prediction["probabilities"].get)
        assert prediction["label"] == best
        assert prediction["probability"] == prediction["probabilities"][best]


def test_values_outside_the_training_range_are_flagged_but_predicted(
    client: httpx.Client, churn: Manifest
) -> None:
    age = churn.feature("age")
    assert age.train_max is not None and age.train_max < 100
    record = dict(churn.examples[0].record, age=100)
    body = client.post("/v1/models/churn/predict", json={"records": [record]}).json()
    assert body["predictions"][0]["out_of_range"] == ["age"]


def test_a_sane_caller_request_id_is_echoed_and_a_bad_one_replaced(
    client: httpx.Client, churn: Manifest
) -> None:
    payload = {"records": records(churn, 1)}
    mine = client.post("/v1/models/churn/predict", json=payload, headers={"X-Request-ID": "abc-1"})
    assert mine.headers["x-request-id"] == "abc-1" and mine.json()["request_id"] == "abc-1"
    odd = client.post("/v1/models/churn/predict", json=payload, headers={"X-Request-ID": "a b\tc"})
    assert odd.headers["x-request-id"] != "a b\tc" and len(odd.headers["x-request-id"]) == 32


def test_a_batch_of_10000_records_is_answered_in_order(
    client: httpx.Client, draft_pick: Manifest
) -> None:
    batch = records(draft_pick, 10_000)
    response = client.post("/v1/models/draft_pick/predict", json={"records": batch})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 10_000
    count = len(draft_pick.examples)
    for i in (0, 1, 9_999):
        expected = draft_pick.examples[i % count].probabilities
        assert list(predictions[i]["probabilities"].values()) == pytest.approx(expected, abs=1e-5)


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert {name: m["state"] for name, m in body["models"].items()} == dict.fromkeys(
        ("churn", "digits", "draft_pick"), "ready"
    )


def test_docs_show_one_predict_path_per_model_with_units_and_examples(
    client: httpx.Client, churn: Manifest
) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/v1/models/churn/predict"]["post"]
    example = operation["requestBody"]["content"]["application/json"]["example"]
    assert example["records"][0] == churn.examples[0].record
    record = schema["components"]["schemas"]["ChurnRecord"]
    assert record["properties"]["age"]["x-unit"] == "years"
    assert record["properties"]["age"]["maximum"] == 100
    assert record["properties"]["geography"]["enum"] == ["France", "Germany", "Spain"]
    assert record["additionalProperties"] is False
    assert "/v1/models/digits/predict" in schema["paths"]


def test_docs_title_each_record_property_with_the_feature_label(
    client: httpx.Client, churn: Manifest, draft_pick: Manifest
) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    churn_record = schemas["ChurnRecord"]["properties"]
    assert churn_record["has_cr_card"]["title"] == "Has a credit card"
    assert churn_record["num_of_products"]["title"] == "Number of products"
    assert churn_record["num_of_products"]["description"].startswith(
        "Number of bank products the customer holds. Unit: products."
    )
    draft_record = schemas["DraftPickRecord"]["properties"]
    assert draft_record["height_cm"]["title"] == "Height"
    for manifest, record in ((churn, churn_record), (draft_pick, draft_record)):
        assert {name: prop["title"] for name, prop in record.items()} == {
            f.name: f.label for f in manifest.features
        }
    operation = client.get("/openapi.json").json()["paths"]["/v1/models/churn/predict"]["post"]
    assert "| `has_cr_card` | Has a credit card | bool |" in operation["description"]


def test_documented_example_is_accepted(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    for name in ("churn", "digits", "draft_pick"):
        content = schema["paths"][f"/v1/models/{name}/predict"]["post"]["requestBody"]["content"]
        json_answer = client.post(
            f"/v1/models/{name}/predict", json=content["application/json"]["example"]
        )
        assert json_answer.status_code == 200, json_answer.text
        csv_answer = client.post(
            f"/v1/models/{name}/predict",
            content=content["text/csv"]["example"],
            headers={"Content-Type": "text/csv"},
        )
        assert csv_answer.status_code == 200, csv_answer.text


def test_cors_is_answered_for_a_configured_origin(client: httpx.Client) -> None:
    response = client.options(
        "/v1/models/churn/predict",
        headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://example.test"
