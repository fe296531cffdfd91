"""Every violation of every record in one answer (issue 18): a missing field or an unreadable
value no longer hides the record's other problems; an answer lists the first 100 problems, by
record, and counts the rest (`not_listed`). Through the real server for v1 JSON, CSV and V2; the
`score` command for CSV and Parquet files.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from service.batch import cli as score
from service.manifest import Manifest

PREDICT = "/v1/models/churn/predict"
INFER = "/v2/models/churn/infer"
CSV = {"Content-Type": "text/csv"}
GEOGRAPHY = "Input should be 'France', 'Germany' or 'Spain'"
AGE_MIN = "Input should be greater than or equal to 18"
AGE_MAX = "Input should be less than or equal to 100"
NOT_A_NUMBER = "Input should be a valid number, unable to parse string as a number"
# The bank churn file's headers (the features' aliases), in another order, plus an id column.
HEADER = [
    "RowNumber", "EstimatedSalary", "Geography", "Gender", "Age", "CreditScore", "Tenure",
    "Balance", "NumOfProducts", "HasCrCard", "IsActiveMember",
]  # fmt: skip
FEATURE_OF = {
    "EstimatedSalary": "estimated_salary", "Geography": "geography", "Gender": "gender",
    "Age": "age", "CreditScore": "credit_score", "Tenure": "tenure", "Balance": "balance",
    "NumOfProducts": "num_of_products", "HasCrCard": "has_cr_card",
    "IsActiveMember": "is_active_member",
}  # fmt: skip


def records(manifest: Manifest, count: int) -> list[dict[str, Any]]:
    examples = manifest.examples
    return [dict(examples[i % len(examples)].record) for i in range(count)]


def the_issues_record(manifest: Manifest) -> dict[str, Any]:
    """A record lacking its salary, from a country the model does not know."""
    record = dict(manifest.examples[0].record, geography="Italy")
    del record["estimated_salary"]
    return record


def refused(response: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    body: dict[str, Any] = response.json()
    return body


# ---- v1 JSON ---------------------------------------------------------------------------------


def test_json_a_missing_field_and_an_unknown_category_are_both_reported(
    client: httpx.Client, churn: Manifest
) -> None:
    batch = [churn.examples[0].record, the_issues_record(churn)]
    body = refused(client.post(PREDICT, json={"records": batch}))
    assert body == {
        "detail": [
            {
                "type": "enum",
                "loc": ["body", "records", 1, "geography"],
                "msg": GEOGRAPHY,
                "input": "Italy",
            },
            {
                "type": "missing",
                "loc": ["body", "records", 1, "estimated_salary"],
                "msg": "Field required",
                "input": None,
            },
        ]
    }


def test_json_every_kind_of_problem_of_every_record_is_reported_together(
    client: httpx.Client, churn: Manifest
) -> None:
    """A wrong type no longer hides a value out of range, nor a record that is not an object
    the other records' problems."""
    batch: list[Any] = records(churn, 4)
    batch[0].update(balance="1000", age=101, surname="Rossi")  # wrong type, range, unknown key
    batch[1] = [1, 2]
    batch[3].update(geography=None, tenure=11, has_cr_card=1)
    detail = refused(client.post(PREDICT, json={"records": batch}))["detail"]
    assert [(e["loc"][2:], e["type"]) for e in detail] == [
        ([0, "age"], "less_than_equal"),
        ([0, "balance"], "float_type"),
        ([0, "surname"], "extra_forbidden"),
        ([1], "dict_type"),
        ([3, "geography"], "string_type"),
        ([3, "tenure"], "less_than_equal"),
        ([3, "has_cr_card"], "bool_type"),
    ]


def test_json_a_value_breaking_two_rules_is_reported_for_each(
    client: httpx.Client, churn: Manifest
) -> None:
    detail = refused(client.post(PREDICT, json={"records": [dict(records(churn, 1)[0], age=17.5)]}))
    assert [e["type"] for e in detail["detail"]] == ["int_from_float", "greater_than_equal"]


def test_json_many_bad_records_list_exactly_100_problems_and_count_the_rest(
    client: httpx.Client, churn: Manifest
) -> None:
    batch = records(churn, 300)
    for index in range(0, 300, 2):  # 150 bad records, two problems each
        batch[index].update(age=5, geography="Mars")
    body = refused(client.post(PREDICT, json={"records": batch}))
    assert set(body) == {"detail", "not_listed"}
    assert len(body["detail"]) == 100
    assert body["not_listed"] == 300 - 100
    expected = [(i, name) for i in range(0, 100, 2) for name in ("geography", "age")]
    assert [tuple(e["loc"][2:]) for e in body["detail"]] == expected
    assert {e["msg"] for e in body["detail"]} == {GEOGRAPHY, AGE_MIN}


@pytest.mark.parametrize(("bad", "not_listed"), [(100, None), (101, 1)])
def test_json_the_count_appears_only_when_problems_are_left_out(
    client: httpx.Client, churn: Manifest, bad: int, not_listed: int | None
) -> None:
    batch = records(churn, 120)
    for record in batch[:bad]:
        record["age"] = 200
    body = refused(client.post(PREDICT, json={"records": batch}))
    assert len(body["detail"]) == 100
    assert body.get("not_listed") == not_listed


def test_json_missing_fields_of_many_records_are_capped_and_counted(
    client: httpx.Client, churn: Manifest
) -> None:
    batch = records(churn, 40)
    for record in batch:
        del record["age"], record["tenure"], record["balance"]  # 120 missing fields
    body = refused(client.post(PREDICT, json={"records": batch}))
    assert len(body["detail"]) == 100 and body["not_listed"] == 20
    assert body["detail"][99]["loc"] == ["body", "records", 33, "age"]
    assert {e["type"] for e in body["detail"]} == {"missing"}


# ---- v1 CSV ----------------------------------------------------------------------------------


def csv_rows(manifest: Manifest, count: int) -> list[list[str]]:
    def cell(value: Any) -> str:
        return str(int(value)) if isinstance(value, bool) else str(value)

    return [
        [f"id-{i}", *(cell(record[FEATURE_OF[h]]) for h in HEADER[1:])]
        for i, record in enumerate(records(manifest, count))
    ]


def csv_body(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows([HEADER, *rows])
    return out.getvalue()


def test_csv_an_empty_number_cell_and_an_unknown_category_are_both_reported(
    client: httpx.Client, churn: Manifest
) -> None:
    rows = csv_rows(churn, 3)
    rows[1][HEADER.index("EstimatedSalary")] = ""
    rows[1][HEADER.index("Geography")] = "Italy"
    rows[2][HEADER.index("Age")] = "old"
    rows[2][HEADER.index("Tenure")] = "11"
    body = refused(client.post(PREDICT, content=csv_body(rows), headers=CSV))
    assert body == {
        "detail": [
            {
                "type": "enum",
                "loc": ["body", "rows", 1, "Geography"],
                "msg": GEOGRAPHY,
                "input": "Italy",
            },
            {
                "type": "missing",
                "loc": ["body", "rows", 1, "EstimatedSalary"],
                "msg": "Field required",
                "input": "",
            },
            {
                "type": "float_parsing",
                "loc": ["body", "rows", 2, "Age"],
                "msg": NOT_A_NUMBER,
                "input": "old",
            },
            {
                "type": "less_than_equal",
                "loc": ["body", "rows", 2, "Tenure"],
                "msg": "Input should be less than or equal to 10",
                "input": "11",
            },
        ]
    }


def test_csv_many_bad_rows_list_exactly_100_problems_and_count_the_rest(
    client: httpx.Client, churn: Manifest
) -> None:
    rows = csv_rows(churn, 500)  # a body the block reader takes, until it meets a bad value
    for index in range(150):
        rows[index][HEADER.index("Age")] = "x"
        rows[index][HEADER.index("Geography")] = "Mars"
    body = refused(client.post(PREDICT, content=csv_body(rows), headers=CSV))
    assert len(body["detail"]) == 100 and body["not_listed"] == 200
    expected = [(i, name) for i in range(50) for name in ("Geography", "Age")]
    assert [tuple(e["loc"][2:]) for e in body["detail"]] == expected


def test_csv_problems_of_every_chunk_are_listed_then_counted(
    client: httpx.Client, churn: Manifest
) -> None:
    """A body of two chunks (10,000 rows each): after the first chunk's 60 problems the second,
    checked though nothing more is predicted, fills the list and counts the rest."""
    rows = csv_rows(churn, 12_000)
    bad = [*range(0, 120, 2), *range(11_000, 11_050)]
    for index in bad:
        rows[index][HEADER.index("Age")] = "150"
    body = refused(client.post(PREDICT, content=csv_body(rows), headers=CSV))
    assert [e["loc"][2] for e in body["detail"]] == bad[:100]
    assert body["not_listed"] == 10


# ---- V2 (Open Inference Protocol) -----------------------------------------------------------


def tensors(manifest: Manifest, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    inputs = []
    for feature in manifest.features:
        datatype = {"category": "BYTES", "bool": "BOOL"}.get(feature.type, "FP64")
        data = [row.get(feature.name) for row in rows]
        inputs.append({"name": feature.name, "datatype": datatype, "shape": [len(rows)],
                       "data": data})  # fmt: skip
    return inputs


def test_v2_a_null_element_and_an_unknown_category_are_both_reported(
    client: httpx.Client, churn: Manifest
) -> None:
    rows = records(churn, 2)
    rows[1].update(estimated_salary=None, geography="Italy")
    body = refused(client.post(INFER, json={"inputs": tensors(churn, rows)}), 400)
    assert body == {  # estimated_salary is required: null, its missing value, is refused
        "error": f"input 'geography', element 1: {GEOGRAPHY} (got 'Italy'); "
        "input 'estimated_salary', element 1: Field required (got null; the input is not "
        "nullable)",
        "details": [
            {
                "input": "geography",
                "element": 1,
                "type": "enum",
                "msg": GEOGRAPHY,
                "value": "Italy",
            },
            {
                "input": "estimated_salary",
                "element": 1,
                "type": "missing",
                "msg": "Field required",
                "value": None,
            },
        ],
    }


def test_v2_a_missing_input_does_not_hide_the_other_inputs_problems(
    client: httpx.Client, churn: Manifest
) -> None:
    rows = records(churn, 3)
    rows[2]["geography"] = "Italy"
    inputs = [t for t in tensors(churn, rows) if t["name"] != "estimated_salary"]
    age = next(t for t in inputs if t["name"] == "age")
    age["data"][0] = 101
    body = refused(client.post(INFER, json={"inputs": inputs}), 400)
    assert body["error"] == (
        "missing input 'estimated_salary'; "
        f"input 'age', element 0: {AGE_MAX} (got '101'); "
        f"input 'geography', element 2: {GEOGRAPHY} (got 'Italy')"
    )
    assert [(d["input"], d["element"], d["type"]) for d in body["details"]] == [
        ("estimated_salary", None, "missing"),
        ("age", 0, "less_than_equal"),
        ("geography", 2, "enum"),
    ]


def test_v2_a_malformed_input_and_another_inputs_bad_values_are_both_reported(
    client: httpx.Client, churn: Manifest
) -> None:
    inputs = tensors(churn, records(churn, 2))
    by_name = {t["name"]: t for t in inputs}
    by_name["balance"]["shape"] = [2, 2]
    by_name["tenure"]["datatype"] = "BYTES"
    by_name["gender"]["data"][1] = "Other"
    body = refused(client.post(INFER, json={"inputs": inputs}), 400)
    assert [(d["input"], d["element"], d["type"]) for d in body["details"]] == [
        ("balance", None, "shape"),
        ("tenure", None, "datatype"),
        ("gender", 1, "enum"),
    ]
    assert body["error"].startswith("input 'balance': shape [2, 2] is not [n] or [n, 1]; ")


def test_v2_a_single_problem_keeps_its_error_string(client: httpx.Client, churn: Manifest) -> None:
    rows = records(churn, 1)
    rows[0]["age"] = 200
    body = refused(client.post(INFER, json={"inputs": tensors(churn, rows)}), 400)
    assert body["error"] == f"input 'age', element 0: {AGE_MAX} (got '200')"
    assert len(body["details"]) == 1 and "not_listed" not in body


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "spaced"])
def test_v2_many_bad_rows_list_exactly_100_problems_and_count_the_rest(
    client: httpx.Client, churn: Manifest, compact: bool
) -> None:
    """Compact JSON is what the msgspec reader takes; it declines, and the general path names
    the problems, so either body gets the same answer."""
    rows = records(churn, 300)
    for row in rows[:120]:
        row.update(age=200, geography="Mars")
    payload = {"inputs": tensors(churn, rows)}
    if compact:
        headers = {"Content-Type": "application/json"}
        response = client.post(INFER, content=orjson.dumps(payload), headers=headers)
    else:
        response = client.post(INFER, json=payload)
    body = refused(response, 400)
    assert len(body["details"]) == 100 and body["not_listed"] == 140
    expected = [(i, name) for i in range(50) for name in ("geography", "age")]
    assert [(d["element"], d["input"]) for d in body["details"]] == expected
    assert body["error"].endswith(" (and 235 more)")
    assert body["error"].count("; ") == 4


# ---- score -----------------------------------------------------------------------------------


def run_score(registry: Path, source: Path, *args: str | Path) -> int:
    return score.main(["--models", str(registry), "--model", "churn", str(source), *map(str, args)])


def read_errors(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_score_csv_reports_every_violation_of_a_bad_row(
    registry_dir: Path, churn: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = csv_rows(churn, 5)
    rows[1][HEADER.index("EstimatedSalary")] = ""
    rows[1][HEADER.index("Geography")] = "Italy"
    rows[3][HEADER.index("Age")] = "x"
    rows[3][HEADER.index("Tenure")] = "-1"
    source = tmp_path / "in.csv"
    source.write_text(csv_body(rows), encoding="utf-8")
    errors = tmp_path / "errors.csv"

    assert run_score(registry_dir, source, "-o", tmp_path / "out.csv") == score.EXIT_ROW_ERRORS
    err = capsys.readouterr().err
    assert run_score(registry_dir, source, "-o", tmp_path / "o.csv", "--errors", errors) == 1

    assert [(e["line"], e["row"], e["column"], e["value"]) for e in read_errors(errors)] == [
        ("3", "1", "Geography", "Italy"),
        ("3", "1", "EstimatedSalary", ""),
        ("5", "3", "Age", "x"),
        ("5", "3", "Tenure", "-1"),
    ]
    assert f"line 3 (row 1), column 'Geography': {GEOGRAPHY} (got 'Italy')" in err
    assert "line 3 (row 1), column 'EstimatedSalary': Field required (got '')" in err
    assert "line 5 (row 3), column 'Tenure': Input should be greater than or equal to 0" in err
    assert "3 of 5 rows scored, 2 with errors" in err


def test_score_parquet_reports_every_violation_of_a_bad_row(
    registry_dir: Path, churn: Manifest, tmp_path: Path
) -> None:
    rows = records(churn, 4)
    rows[1].update(estimated_salary=None, geography="Italy")
    rows[2].update(age=5, balance=-1.0, gender="Other")
    columns = {h: [row[FEATURE_OF[h]] for row in rows] for h in HEADER[1:]}
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table(columns), source)
    errors = tmp_path / "errors.csv"

    code = run_score(registry_dir, source, "-o", tmp_path / "out.parquet", "--errors", errors)

    assert code == score.EXIT_ROW_ERRORS
    assert [(e["row"], e["column"], e["value"]) for e in read_errors(errors)] == [
        ("1", "Geography", "Italy"),
        ("1", "EstimatedSalary", ""),  # a null: missing, as an empty CSV cell is
        ("2", "Gender", "Other"),
        ("2", "Age", "5"),
        ("2", "Balance", "-1.0"),
    ]
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 2


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_score_strict_reports_every_violation_of_the_first_bad_row(
    registry_dir: Path,
    churn: Manifest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    rows = records(churn, 6)
    rows[2].update(age=5, geography="Italy")
    rows[4].update(age=-1)
    if kind == "csv":
        source = tmp_path / "in.csv"
        cells = [
            [f"id-{i}", *(str(row[FEATURE_OF[h]]) for h in HEADER[1:])]
            for i, row in enumerate(rows)
        ]
        source.write_text(csv_body(cells), encoding="utf-8")
    else:
        source = tmp_path / "in.parquet"
        pq.write_table(
            pa.table({h: [row[FEATURE_OF[h]] for row in rows] for h in HEADER[1:]}), source
        )
    out = tmp_path / f"out.{kind}"

    assert run_score(registry_dir, source, "-o", out, "--strict") == score.EXIT_ROW_ERRORS

    err = capsys.readouterr().err
    where = f"{source}: {'line 4 (row 2)' if kind == 'csv' else 'row 2'}"
    assert f"{where}, column 'Geography': {GEOGRAPHY} (got 'Italy')\n" in err
    assert f"{where}, column 'Age': {AGE_MIN} (got '5')\n" in err
    assert "row 4" not in err
    assert not out.exists()


def test_score_stderr_lists_100_errors_then_counts_the_rest(
    registry_dir: Path, churn: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = csv_rows(churn, 200)
    for row in rows[:70]:  # 140 errors
        row[HEADER.index("Age")] = "x"
        row[HEADER.index("Geography")] = "Mars"
    source = tmp_path / "in.csv"
    source.write_text(csv_body(rows), encoding="utf-8")

    assert run_score(registry_dir, source, "-o", tmp_path / "out.csv") == score.EXIT_ROW_ERRORS

    lines = capsys.readouterr().err.splitlines()
    listed = [line for line in lines if line.startswith(f"{source}: line ")]
    assert len(listed) == 100
    assert listed[-1].startswith(f"{source}: line 51 (row 49), column 'Age'")
    assert "... and 40 more errors (use --errors FILE for all)" in lines
