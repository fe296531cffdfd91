"""Missing values in v1 JSON: a nullable feature null or left out is imputed by the model (the
prediction says which), a required one is a 422; the contract shows in GET /v1/models/{task},
the OpenAPI schema and the metrics; the load-time self-check holds the graph to the manifest.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.codecs import parse_json
from service.codecs.v1_json import records_decoder, records_of
from service.errors import SelfCheckFailed
from service.manifest import MANIFEST_FILE, Manifest
from service.model import load_model
from service.validation import Batch, batch_from_records
from tests.service.helpers import assert_same
from tests.service.missing_models import NullableModel, http, nullable, nullable_server
from tests.service.test_metrics import samples, value

__all__ = ["http", "nullable", "nullable_server"]  # fixtures, used by name

TOLERANCE = 1e-5
LIMIT = 10_000


def predict(http: httpx.Client, task: str, records: list[dict[str, Any]]) -> httpx.Response:
    return http.post(f"/v1/models/{task}/predict", json={"records": records})


def probabilities(manifest: Manifest, predictions: list[dict[str, Any]]) -> npt.NDArray[np.float64]:
    rows = [[p["probabilities"][label] for label in manifest.labels] for p in predictions]
    return np.array(rows, dtype=np.float64)


def test_null_and_absent_nullable_features_are_imputed(
    http: httpx.Client, nullable: NullableModel
) -> None:
    names = [f.name for f in nullable.nullable]
    assert {"float", "int", "bool", "category"} <= {f.type for f in nullable.nullable}
    full = nullable.full_record()
    left_out = {k: v for k, v in full.items() if k not in names}
    as_null = {**full, **dict.fromkeys(names)}
    one_null = {**full, names[0]: None}
    records = [full, left_out, as_null, one_null]

    response = predict(http, nullable.task, records)

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["imputed"] for p in predictions] == [[], names, names, names[:1]]
    got = probabilities(nullable.manifest, predictions)
    np.testing.assert_allclose(got, nullable.probabilities(records), atol=TOLERANCE)
    assert got[1].tolist() == got[2].tolist()  # left out or null: the same missing value


def test_a_missing_required_feature_is_named_with_every_other_problem_of_its_record(
    http: httpx.Client, nullable: NullableModel
) -> None:
    manifest = nullable.manifest
    required = next(f for f in manifest.features if not f.nullable)
    number = next(f for f in nullable.nullable if f.type == "float" and f.min is not None)
    category = next(f for f in nullable.nullable if f.type == "category")
    full = nullable.full_record()
    absent = {k: v for k, v in full.items() if k != required.name}
    absent[number.name] = -1.0  # below its min: a nullable feature's value is still checked
    absent[category.name] = "nowhere"
    flag = next(f for f in nullable.nullable if f.type == "bool")
    null = {**full, required.name: None, category.name: None, flag.name: None}

    response = predict(http, nullable.task, [full, absent, null])

    assert response.status_code == 422
    order = {f.name: i for i, f in enumerate(manifest.features)}
    found = {(d["loc"][2], d["loc"][3]): d for d in response.json()["detail"]}
    assert list(found) == sorted(found, key=lambda place: (place[0], order[place[1]]))
    assert {place: problem["type"] for place, problem in found.items()} == {
        (1, required.name): "missing",
        (1, number.name): "greater_than_equal",
        (1, category.name): "enum",
        (2, required.name): f"{required.type}_type",  # null in a required feature, as before
    }
    assert found[1, required.name]["msg"] == "Field required"
    assert found[2, required.name]["msg"].endswith(", not null")


def test_the_typed_decoder_and_the_checked_path_agree_on_missing_values(
    nullable: NullableModel,
) -> None:
    """msgspec's path (few records: plain Python or numpy; many: columns, or the byte matrix)
    gives the batch the checked record-by-record path gives, imputed masks included."""
    model = load_model(nullable.folder, 1)
    full = nullable.full_record()
    names = [f.name for f in nullable.nullable]
    category = next(f.name for f in nullable.nullable if f.type == "category")
    variants = [full, {**full, names[0]: None}, {k: v for k, v in full.items() if k != names[-1]}]
    variants.append({**full, category: ""})  # an empty category: missing too
    variants.append({**full, **dict.fromkeys(names)})
    variants.append({k: v for k, v in full.items() if k not in names})
    expected = [[], names[:1], names[-1:], [category], names, names]
    for size in (1, 3, 16, 17, 200, 5000):
        records = [variants[i % len(variants)] for i in range(size)]
        body = orjson.dumps({"records": records})
        fast = records_decoder(model.validator).batch(body, LIMIT)
        slow = batch_from_records(model.validator, records_of(parse_json(body), LIMIT))
        assert fast is not None, size
        assert_same(fast, slow)
        assert fast.imputed_flags() == slow.imputed_flags()
        assert slow.imputed_flags() == [expected[i % len(expected)] for i in range(size)]


@settings(max_examples=200, deadline=None)
@given(
    size=st.sampled_from([1, 2, 63, 64, 65, 300]),
    width=st.sampled_from([1, 3, 8, 9, 70]),
    seed=st.integers(0, 2**32 - 1),
)
def test_imputed_patterns_are_each_records_features(size: int, width: int, seed: int) -> None:
    """What the encoders write per record (the distinct lists, and an index into them) is the
    batch's own per-record list, for any number of records and of nullable features."""
    rng = np.random.default_rng(seed)
    masks = {f"f{j}": rng.uniform(size=size) < rng.uniform() for j in range(width)}
    batch = Batch(size, {}, {}, {name: mask for name, mask in masks.items() if mask.any()})
    if not batch.imputed:
        return
    lists, index = batch.imputed_patterns()
    assert [lists[i] for i in index.tolist()] == batch.imputed_flags()
    assert len({tuple(names) for names in lists}) == len(lists)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_pattern_of_missing_values_predicts_what_scikit_learn_predicts(
    http: httpx.Client, nullable: NullableModel, data: st.DataObject
) -> None:
    """Each record leaves any nullable features out or null; one record takes the plain Python
    rules, a few numpy's, and the answer is the matrix's or the per-record format's."""
    manifest = nullable.manifest
    names = [f.name for f in nullable.nullable]
    bases = [nullable.full_record(), *(e.record for e in manifest.examples)]
    size = data.draw(st.sampled_from([1, 2, 5, 20, 40]))
    records = []
    for _ in range(size):
        record = {**nullable.full_record(), **data.draw(st.sampled_from(bases))}
        for name in names:
            how = data.draw(st.sampled_from(["given", "null", "absent"]))
            if how == "null":
                record[name] = None
            elif how == "absent":
                record.pop(name, None)
        records.append(record)

    response = predict(http, nullable.task, records)

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    got = probabilities(manifest, predictions)
    np.testing.assert_allclose(got, nullable.probabilities(records), atol=TOLERANCE)
    for record, prediction in zip(records, predictions, strict=True):
        assert prediction["imputed"] == [n for n in names if record.get(n) is None]


def test_models_without_nullable_features_answer_an_empty_imputed_list(
    client: httpx.Client, churn: Manifest
) -> None:
    records = [example.record for example in churn.examples]
    response = predict(client, "churn", records)
    assert response.status_code == 200
    assert all(p["imputed"] == [] for p in response.json()["predictions"])
    absent = {k: v for k, v in records[0].items() if k != "age"}
    detail = predict(client, "churn", [absent]).json()["detail"]
    assert [(d["loc"][-1], d["msg"]) for d in detail] == [("age", "Field required")]


def test_imputed_values_are_counted_per_model_and_feature(
    http: httpx.Client, nullable: NullableModel
) -> None:
    """v1 JSON and V2 answers both count (CSV answers too, through the same call)."""
    names = [f.name for f in nullable.nullable]
    full = nullable.full_record()
    before = samples(http)
    predict(http, nullable.task, [{**full, names[0]: None}] * 3 + [full])
    body = {"inputs": _tensors(nullable.manifest, [{**full, names[-1]: None}, full])}
    assert http.post(f"/v2/models/{nullable.task}/infer", json=body).status_code == 200
    after = samples(http)

    def delta(feature: str) -> float:
        labels = {"model": nullable.task, "feature": feature}
        was = value(before, "predict_imputed_total", **labels)
        return value(after, "predict_imputed_total", **labels) - was

    assert [delta(name) for name in names] == [3] + [0] * (len(names) - 2) + [1]


def _tensors(manifest: Manifest, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One V2 tensor per feature (numbers as FP64), a missing value as null."""
    tensors = []
    for f in manifest.features:
        data = [record.get(f.name) for record in records]
        if f.type != "category":
            data = [None if v is None else float(v) for v in data]
        datatype = "BYTES" if f.type == "category" else "FP64"
        tensors.append({"name": f.name, "datatype": datatype, "shape": [len(data)], "data": data})
    return tensors


def test_the_model_description_says_which_features_may_be_missing(
    http: httpx.Client, nullable: NullableModel
) -> None:
    details = http.get(f"/v1/models/{nullable.task}").json()
    for feature, shown in zip(nullable.manifest.features, details["features"], strict=True):
        assert shown["nullable"] == feature.nullable
        assert shown["impute"] == feature.impute
        assert shown["impute_value"] == feature.impute_value
        assert shown["missing_indicator"] == feature.missing_indicator
        assert shown["train_missing_rate"] == feature.train_missing_rate
    assert details["na_values"] == nullable.manifest.na_values
    (summary,) = http.get("/v1/models").json()["models"]
    assert summary["nullable"] == [f.name for f in nullable.nullable]


def test_the_openapi_schema_documents_missing_values(
    http: httpx.Client, nullable: NullableModel
) -> None:
    schema = http.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    prefix = "".join(part.capitalize() for part in nullable.task.split("_"))
    record = components[f"{prefix}Record"]
    manifest = nullable.manifest
    assert record["required"] == [f.name for f in manifest.features if not f.nullable]
    for feature in manifest.features:
        prop = record["properties"][feature.name]
        if not feature.nullable:
            assert "null" not in prop["type"]
            continue
        assert "null" in prop["type"]
        assert prop["x-impute"] == feature.impute
        assert prop["x-impute-value"] == feature.impute_value
        assert "May be null or left out: the model then uses" in prop["description"]
        if feature.categories:
            assert prop["enum"] == [*feature.categories, "", None]
    prediction = components[f"{prefix}PredictResponse"]["properties"]["predictions"]["items"]
    imputed = prediction["properties"]["imputed"]
    assert imputed["items"]["enum"] == [f.name for f in nullable.nullable]
    assert "imputed" in components["PredictionOut"]["properties"]
    operation = schema["paths"][f"/v1/models/{nullable.task}/predict"]["post"]
    assert "| if missing |" in operation["description"]
    assert "| required |" in operation["description"]
    assert "median: " in operation["description"]
    example = operation["requestBody"]["content"]["text/csv"]["example"]
    assert example.splitlines()[0] == ",".join(f.name for f in manifest.features)
    infer = schema["paths"]["/v2/models/{task}/infer"]["post"]
    assert "`imputed` (BYTES [n])" in infer["description"]


def test_examples_may_leave_nullable_features_out(nullable: NullableModel) -> None:
    """The self-check runs the manifest's examples as requests: absent is missing there too."""
    manifest = nullable.manifest
    names = {f.name for f in nullable.nullable}
    assert any(names - set(example.record) for example in manifest.examples)
    load_model(nullable.folder, 1)


def test_a_manifest_whose_impute_value_the_graph_does_not_use_is_refused(
    nullable: NullableModel, tmp_path: Path
) -> None:
    folder = tmp_path / nullable.task / nullable.manifest.version
    shutil.copytree(nullable.folder, folder)
    data = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    feature = next(
        f for f in data["features"] if f["type"] == "float" and not f["missing_indicator"]
        and f["nullable"]
    )  # fmt: skip
    feature["impute_value"] = (feature["impute_value"] + 1) * 7
    (folder / MANIFEST_FILE).write_text(json.dumps(data), encoding="utf-8")

    with pytest.raises(
        SelfCheckFailed, match="missing values are not imputed as the manifest says"
    ):
        load_model(folder, 1)
