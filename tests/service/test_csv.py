"""CSV in, CSV out: headers by name or alias, passthrough columns, per-row errors, big files."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from service.manifest import Manifest

PREDICT = "/v1/models/churn/predict"
CSV = {"Content-Type": "text/csv"}
# Column headers as the well-known bank churn CSV writes them (the spec's aliases), plus an id.
HEADER = [
    "RowNumber", "CreditScore", "Geography", "Gender", "Age", "Tenure", "Balance",
    "NumOfProducts", "HasCrCard", "IsActiveMember", "EstimatedSalary",
]  # fmt: skip
FEATURES = [
    "credit_score", "geography", "gender", "age", "tenure", "balance", "num_of_products",
    "has_cr_card", "is_active_member", "estimated_salary",
]  # fmt: skip


def cells(record: dict[str, Any]) -> list[str]:
    return [str(int(v)) if isinstance(v, bool) else str(v) for v in (record[f] for f in FEATURES)]


def table(manifest: Manifest, count: int) -> list[list[str]]:
    examples = manifest.examples
    return [[f"id-{i}", *cells(examples[i % len(examples)].record)] for i in range(count)]


def encode(rows: list[list[str]], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    return out.getvalue()


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def errors(response: httpx.Response, status: int) -> list[dict[str, Any]]:
    assert response.status_code == status, response.text
    found: list[dict[str, Any]] = response.json()["detail"]
    return found


def test_csv_with_aliases_returns_the_rows_with_predictions_appended(
    client: httpx.Client, churn: Manifest
) -> None:
    response = client.post(PREDICT, content=encode(table(churn, 5)), headers=CSV)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = parse(response.text)
    assert list(rows[0]) == [
        *HEADER,
        "label",
        "probability",
        "p_stayed",
        "p_churned",
        "out_of_range",
    ]
    for i, (row, example) in enumerate(zip(rows, churn.examples, strict=True)):
        assert row["RowNumber"] == f"id-{i}"
        assert float(row["p_stayed"]) == pytest.approx(example.probabilities[0], abs=1e-5)
        assert float(row["probability"]) == pytest.approx(example.probabilities[1], abs=1e-5)
        assert row["label"] in churn.labels
        assert row["out_of_range"] == ""


def test_csv_and_json_give_the_same_answers(client: httpx.Client, churn: Manifest) -> None:
    payload = {"records": [e.record for e in churn.examples]}
    as_json = client.post(PREDICT, json=payload).json()["predictions"]
    as_csv = parse(client.post(PREDICT, content=encode(table(churn, 5)), headers=CSV).text)
    for j, c in zip(as_json, as_csv, strict=True):
        assert c["label"] == j["label"]
        assert float(c["probability"]) == j["probability"]


def test_headers_match_loosely_and_bools_accept_words(
    client: httpx.Client, churn: Manifest
) -> None:
    header = [" credit_score ", "GEOGRAPHY", "sex", "age", "tenure", "Balance", "Num Of Products",
              "has_cr_card", "active", "salary"]  # fmt: skip
    row = cells(churn.examples[0].record)
    rows = [[*row[:7], "Yes", "FALSE", row[9]], [*row[:7], "true", "0", row[9]]]
    response = client.post(PREDICT, content=encode(rows, header), headers=CSV)
    assert response.status_code == 200, response.text
    assert len(parse(response.text)) == 2


def test_out_of_range_features_are_listed_in_their_column(
    client: httpx.Client, churn: Manifest
) -> None:
    rows = table(churn, 1)
    rows[0][HEADER.index("Age")] = "100"
    answer = parse(client.post(PREDICT, content=encode(rows), headers=CSV).text)
    assert answer[0]["out_of_range"] == "age"


@pytest.mark.parametrize(
    ("column", "value", "kind"),
    [
        ("Age", "nan", "finite_number"),
        ("Balance", "inf", "finite_number"),
        ("Balance", "-Infinity", "finite_number"),
        ("Balance", "1e999", "finite_number"),
        ("Age", "forty", "float_parsing"),
        ("Age", "", "missing"),
        ("Age", "  ", "missing"),
        ("Age", "NA", "missing"),
        ("Geography", "", "missing"),
        ("HasCrCard", "?", "missing"),
        ("Age", "40.5", "int_from_float"),
        ("Geography", "Mars", "enum"),
        ("HasCrCard", "maybe", "bool_parsing"),
    ],
)
def test_a_bad_cell_names_its_row_and_column(
    client: httpx.Client, churn: Manifest, column: str, value: str, kind: str
) -> None:
    rows = table(churn, 4)
    rows[2][HEADER.index(column)] = value
    found = errors(client.post(PREDICT, content=encode(rows), headers=CSV), 422)
    assert found[0]["loc"] == ["body", "rows", 2, column]
    assert found[0]["type"] == kind
    assert found[0]["input"] == value


@pytest.mark.parametrize(
    ("cell", "msg"), [("nan", "Input should be a finite number"), ("NaN", "Field required")]
)
def test_nan_in_another_model_names_its_column(
    client: httpx.Client, draft_pick: Manifest, cell: str, msg: str
) -> None:
    """The cell `NaN` is one of the manifest's NA words, so a missing value (required here);
    `nan` is not, so it is read as a number, not a finite one."""
    header = [f.name for f in draft_pick.features]
    row = [str(draft_pick.examples[0].record[name]) for name in header]
    row[header.index("points_per_game")] = cell
    response = client.post(
        "/v1/models/draft_pick/predict", content=encode([row], header), headers=CSV
    )
    found = errors(response, 422)
    assert found[0]["loc"] == ["body", "rows", 0, "points_per_game"]
    assert found[0]["msg"] == msg


def test_a_missing_column_is_named_with_its_aliases(client: httpx.Client, churn: Manifest) -> None:
    header = [h for h in HEADER if h != "Tenure"]
    rows = [
        [c for h, c in zip(HEADER, row, strict=True) if h != "Tenure"] for row in table(churn, 1)
    ]
    found = errors(client.post(PREDICT, content=encode(rows, header), headers=CSV), 422)
    assert found[0]["loc"] == ["body", "header", "tenure"]
    assert "Tenure" in found[0]["msg"]


def test_two_columns_for_one_feature_are_refused(client: httpx.Client, churn: Manifest) -> None:
    header = [*HEADER, "age"]
    rows = [[*row, "40"] for row in table(churn, 1)]
    found = errors(client.post(PREDICT, content=encode(rows, header), headers=CSV), 422)
    assert found[0]["loc"] == ["body", "header", "age"]
    assert found[0]["type"] == "duplicate_column"


def test_a_ragged_row_is_a_malformed_csv(client: httpx.Client, churn: Manifest) -> None:
    rows = table(churn, 3)
    rows[1] = rows[1][:-1]
    found = errors(client.post(PREDICT, content=encode(rows), headers=CSV), 400)
    assert found[0]["loc"] == ["body", "rows", 1]


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"", 400), (b"\xff\xfe\x00bad", 400), (b'a,"b\n1,2', 400), (",".join(HEADER).encode(), 422)],
)
def test_empty_undecodable_or_rowless_csv_is_refused(
    client: httpx.Client, body: bytes, status: int
) -> None:
    assert client.post(PREDICT, content=body, headers=CSV).status_code == status


def test_prediction_columns_are_prefixed_when_the_caller_already_has_them(
    client: httpx.Client, churn: Manifest
) -> None:
    header = [*HEADER, "Label"]
    rows = [[*row, "stayed"] for row in table(churn, 2)]
    answer = parse(client.post(PREDICT, content=encode(rows, header), headers=CSV).text)
    assert answer[0]["Label"] == "stayed"
    assert {"predicted_label", "predicted_probability", "predicted_out_of_range"} <= set(answer[0])


def test_a_file_bigger_than_one_batch_is_streamed_back_whole(
    client: httpx.Client, churn: Manifest
) -> None:
    rows = table(churn, 25_000)  # three chunks of max_batch_records (10,000)
    response = client.post(PREDICT, content=encode(rows), headers=CSV)
    assert response.status_code == 200
    answer = parse(response.text)
    assert len(answer) == 25_000
    assert [answer[i]["RowNumber"] for i in (0, 10_000, 24_999)] == ["id-0", "id-10000", "id-24999"]
    assert answer[24_999]["label"] == answer[4]["label"]


def test_a_bad_row_in_a_later_chunk_is_named_by_its_index_in_the_file(
    client: httpx.Client, churn: Manifest
) -> None:
    rows = table(churn, 12_000)
    rows[11_000][HEADER.index("Age")] = "200"
    found = errors(client.post(PREDICT, content=encode(rows), headers=CSV), 422)
    assert found[0]["loc"] == ["body", "rows", 11_000, "Age"]
