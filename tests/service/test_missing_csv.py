"""Missing values in CSV: a blank cell, one of spaces or one of the manifest's NA words is a
missing value. A nullable feature's goes to the graph (NaN, or MISSING_CATEGORY for a category),
which imputes it, and the answer's `imputed` column names it; a required feature's is a 422
("Field required") listed with every other problem. Both readers (the csv module's and the block
reader of big bodies) give the same answers.

The loans model is trained by the real training code from the shared data set
(tests/missing_values.py) and served by the real server. Expected probabilities are onnxruntime's
own on the model file, fed NaN and MISSING_CATEGORY where cells are missing (the contract).
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.batch.scoring import BlockResult, BlockScorer
from service.codecs import csv as predict
from service.codecs import csv_blocks
from service.errors import ServiceError
from service.manifest import MISSING_CATEGORY, Feature, FeatureType, Manifest, read_pointer
from service.model import LoadedModel, load_model
from tests.missing_values import (
    MISSING_TOKENS,
    NULLABLE,
    REQUIRED,
    SPEC_TEXT,
    TASK,
    loans_frame,
    train_missing_model,
)
from tests.service.helpers import REPO, Server, assert_same
from training.spec import load_spec
from training.train import TrainOptions, train

PREDICT = f"/v1/models/{TASK}/predict"
CSV = {"Content-Type": "text/csv"}
FAST_MLP = {"max_iter": 40, "n_iter_no_change": 5}
BOOL_CELLS = {"yes": 1.0, "no": 0.0, "1": 1.0, "0": 0.0, "true": 1.0, "false": 0.0}
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Cells a hypothesis test writes into any column: missing in every spelling, and text that is
# not missing ("nan" is a number that is not finite, "x" no number at all).
ODD_CELLS = [*MISSING_TOKENS, "None", "NaN", " NA ", "\t", "nan", "inf", "x", "Mars"]


@dataclass(frozen=True)
class Registry:
    """A registry holding one model version trained by the real training code."""

    models_dir: Path
    manifest: Manifest

    @property
    def folder(self) -> Path:
        task = self.models_dir / self.manifest.name
        return task / read_pointer(task)

    def nullable(self, kind: FeatureType) -> Feature:
        """The first nullable feature of a type."""
        return next(f for f in self.manifest.features if f.nullable and f.type == kind)

    def column(self, feature: str | Feature) -> str:
        """The header the shared data set writes a feature under."""
        name = feature if isinstance(feature, str) else feature.name
        return header_of(self.manifest, loans_frame(1))[name]

    def appended(self) -> list[str]:
        labels = [f"p_{label}" for label in self.manifest.labels]
        return ["label", "probability", *labels, "out_of_range", "imputed"]


@pytest.fixture(scope="module")
def loans(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    models = tmp_path_factory.mktemp("loans") / "models"
    return Registry(models, train_missing_model(models).manifest)


@pytest.fixture(scope="module")
def loans_model(loans: Registry) -> LoadedModel:
    return load_model(loans.folder, 1)


@pytest.fixture(scope="module")
def loans_http(loans: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    log = tmp_path_factory.mktemp("loans-logs") / "server.log"
    server = Server(loans.models_dir, log, {"PREDICT_POLL_INTERVAL_SECONDS": "0"}).start()
    try:
        with server.client() as client:
            yield client
    finally:
        server.stop()


def body_of(frame: pd.DataFrame, newline: str = "\n") -> bytes:
    text: str = frame.to_csv(index=False, lineterminator=newline)
    return text.encode("utf-8")


def plain(frame: pd.DataFrame, manifest: Manifest) -> pd.DataFrame:
    """The frame as the block reader reads it: flags as 0/1 (it leaves yes/no to the csv
    module) and no cell of spaces (missing cells written exactly as an NA word or blank)."""
    headers = header_of(manifest, frame)
    flags = {headers[f.name] for f in manifest.features if f.type == "bool"}
    edited = frame.replace("  ", "")
    for column in flags:
        edited[column] = edited[column].replace({"yes": "1", "no": "0"})
    return edited


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def post(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post(PREDICT, content=body, headers=CSV)


def header_of(manifest: Manifest, frame: pd.DataFrame) -> dict[str, str]:
    """Each feature's column in the frame (the data set's headers are the spec's aliases)."""
    table = predict.layout(manifest, list(frame.columns))
    return {name: table.header[index] for name, index in table.positions.items()}


def is_missing(feature: Feature, cell: str, manifest: Manifest) -> bool:
    """The contract: blank, spaces or an NA word once stripped, unless it names a category."""
    text = cell.strip()
    missing = text == "" or text in {value.strip() for value in manifest.na_values}
    return missing and text not in (feature.categories or [])


def expected_imputed(manifest: Manifest, frame: pd.DataFrame) -> list[str]:
    """Per row, the nullable features whose cell is missing, joined as `out_of_range` is."""
    headers = header_of(manifest, frame)
    nullable = [f for f in manifest.features if f.nullable]
    return [
        ";".join(f.name for f in nullable if is_missing(f, row[headers[f.name]], manifest))
        for row in frame.to_dict(orient="records")
    ]


def reference(registry: Registry, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """onnxruntime's probabilities on the model file, a missing number fed as NaN and a missing
    category as MISSING_CATEGORY (the contract), every other cell as the CSV writes it."""
    manifest = registry.manifest
    model = str(registry.folder / "model.onnx")
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    headers = header_of(manifest, frame)
    feeds: dict[str, npt.NDArray[Any]] = {}
    for feature in manifest.features:
        cells = frame[headers[feature.name]].tolist()
        if feature.type == "category":
            values: list[Any] = [
                MISSING_CATEGORY if is_missing(feature, c, manifest) else c.strip() for c in cells
            ]
            feeds[feature.name] = np.array(values, dtype=object).reshape(-1, 1)
            continue
        read = BOOL_CELLS.__getitem__ if feature.type == "bool" else float
        values = [np.nan if is_missing(feature, c, manifest) else read(c.strip()) for c in cells]
        feeds[feature.name] = np.array(values, dtype=np.float32).reshape(-1, 1)
    (probabilities,) = session.run(["probabilities"], feeds)
    return np.asarray(probabilities, dtype=np.float64)


def check_answer(registry: Registry, frame: pd.DataFrame, text: str) -> list[dict[str, str]]:
    """The answer is the caller's rows, then the prediction columns with `imputed` last: the
    features left missing; and the probabilities are onnxruntime's for the rows as the contract
    feeds them."""
    rows = parse(text)
    assert list(rows[0]) == [*frame.columns, *registry.appended()]
    assert [{k: row[k] for k in frame.columns} for row in rows] == frame.to_dict(orient="records")
    assert [row["imputed"] for row in rows] == expected_imputed(registry.manifest, frame)
    columns = [f"p_{label}" for label in registry.manifest.labels]
    got = np.array([[float(row[column]) for column in columns] for row in rows])
    np.testing.assert_allclose(got, reference(registry, frame), atol=1e-6)
    return rows


def test_blank_and_na_cells_of_nullable_features_are_imputed_and_named(
    loans: Registry, loans_http: httpx.Client
) -> None:
    frame = loans_frame(60, seed=1)
    body = body_of(frame)
    assert len(body) < predict.BLOCKS_FROM_BYTES  # the csv module's reader
    response = post(loans_http, body)
    assert response.status_code == 200, response.text
    rows = check_answer(loans, frame, response.text)
    imputed = [row["imputed"] for row in rows]
    assert sum(";" in names for names in imputed) > 3  # rows with several missing features
    assert {name for names in imputed for name in names.split(";") if name} == set(NULLABLE)
    assert "" in imputed


@pytest.mark.parametrize("as_written", [True, False])
def test_a_big_body_with_blanks_is_answered_alike(
    loans: Registry, loans_http: httpx.Client, as_written: bool
) -> None:
    """Over 12 KiB: the block reader's size. As the data set writes it (yes/no flags, cells of
    spaces) the body goes to the csv module; `plain`, the block reader reads it."""
    frame = loans_frame(1500, seed=2)
    if not as_written:
        frame = plain(frame, loans.manifest)
    body = body_of(frame, "\r\n")
    assert len(body) >= predict.BLOCKS_FROM_BYTES
    response = post(loans_http, body)
    assert response.status_code == 200, response.text
    check_answer(loans, frame, response.text)


def test_the_block_reader_reads_missing_cells_written_exactly(
    loans: Registry, loans_model: LoadedModel
) -> None:
    """Blank and NA-word cells of nullable features are read from the bytes, to the batch of
    the csv module's path; cells of spaces, or a required feature's blank, are left to it."""
    frame = plain(loans_frame(400, seed=3), loans.manifest)
    header, _, lines = body_of(frame).decode().partition("\n")
    table = predict.layout(loans.manifest, header.split(","))
    rows = [line.split(",") for line in lines.splitlines()]
    split = csv_blocks.split(lines.encode(), len(table.header))
    assert split is not None
    fast = predict.batch_from_block(loans_model.validator, table, split)
    assert fast is not None
    slow = predict.batch_from_rows(loans_model.validator, table, rows, 0)
    assert_same(fast, slow)
    assert same_masks(fast.imputed, slow.imputed) and set(fast.imputed) == set(NULLABLE)
    number, category = loans.nullable("float"), loans.nullable("category")
    for feature, cell in ((number, "  "), (category, " NA"), (REQUIRED[0], "")):
        edited = frame.copy()
        edited.loc[5, loans.column(feature)] = cell
        lines = body_of(edited).decode().partition("\n")[2]
        split = csv_blocks.split(lines.encode(), len(table.header))
        assert split is not None
        assert predict.batch_from_block(loans_model.validator, table, split) is None


def test_a_required_cell_left_missing_is_named_with_every_other_problem(
    loans: Registry, loans_http: httpx.Client
) -> None:
    required, number, category = REQUIRED[0], loans.nullable("float"), loans.nullable("category")
    age, income, region = (loans.column(f) for f in (required, number, category))
    frame = loans_frame(8, seed=4)
    frame.loc[1, age] = ""
    frame.loc[2, region] = "Mars"
    frame.loc[3, age] = "NA"
    frame.loc[3, income] = "x"
    frame.loc[5, age] = "   "
    response = post(loans_http, body_of(frame))
    assert response.status_code == 422, response.text
    found = [(e["loc"][2], e["loc"][3], e["type"], e["input"]) for e in response.json()["detail"]]
    order = [loans.column(f) for f in loans.manifest.features]  # a row's problems, in this order
    assert found == sorted(
        [
            (1, age, "missing", ""),
            (2, region, "enum", "Mars"),
            (3, age, "missing", "NA"),
            (3, income, "float_parsing", "x"),
            (5, age, "missing", "   "),
        ],
        key=lambda problem: (problem[0], order.index(problem[1])),
    )
    messages = {e["type"]: e["msg"] for e in response.json()["detail"]}
    assert messages["missing"] == "Field required"
    assert messages["enum"].startswith(f"Input should be {(category.categories or [])[0]!r}")


def test_cells_of_spaces_are_missing_in_every_kind_of_feature(
    loans: Registry, loans_http: httpx.Client
) -> None:
    features = [loans.nullable(kind) for kind in ("float", "int", "bool", "category")]
    frame = loans_frame(6, seed=5)
    for feature in features:
        frame.loc[2, loans.column(feature)] = "   "
    response = post(loans_http, body_of(frame))
    assert response.status_code == 200, response.text
    rows = check_answer(loans, frame, response.text)
    assert set(rows[2]["imputed"].split(";")) >= {f.name for f in features}


@pytest.mark.parametrize(
    ("cell", "status"), [("nan", 422), ("inf", 422), ("-Infinity", 422), ("NaN", 200)]
)
def test_text_read_as_a_number_that_is_not_finite_is_an_error_not_a_missing_value(
    loans: Registry, loans_http: httpx.Client, cell: str, status: int
) -> None:
    """The cell `NaN` is one of the default NA words, so a missing value; `nan` and `inf` are
    not: they are numbers, not finite ones, refused as they are in a required feature."""
    feature = loans.nullable("float")
    frame = loans_frame(6, seed=6)
    frame.loc[4, loans.column(feature)] = cell
    response = post(loans_http, body_of(frame))
    assert response.status_code == status, response.text
    if status == 200:
        assert feature.name in parse(response.text)[4]["imputed"].split(";")
        return
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "rows", 4, loans.column(feature)]
    assert (problem["type"], problem["msg"]) == ("finite_number", "Input should be a finite number")


def test_a_row_both_out_of_range_and_imputed_has_both_cells(
    loans: Registry, loans_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block writer splices out_of_range before the imputed cell; the csv module's writer
    agrees, byte for byte."""
    number, category = loans.nullable("float"), loans.nullable("category")
    beyond = f"{(number.train_max or 0) + 1:g}"  # allowed, but outside the training range
    inside = f"{((number.train_min or 0) + (number.train_max or 0)) / 2:.1f}"
    assert float(beyond) <= (number.max or np.inf)
    frame = plain(loans_frame(400, seed=10), loans.manifest)
    frame[loans.column(number)] = frame[loans.column(number)].replace("", inside)
    first = (category.categories or [])[0]
    frame[loans.column(category)] = frame[loans.column(category)].replace("", first)
    edits = {3: (beyond, ""), 4: (beyond, first), 5: (inside, "")}
    for row, (value, cell) in edits.items():
        frame.loc[row, [loans.column(number), loans.column(category)]] = [value, cell]
    body = body_of(frame)
    answers = {r: read_table(loans_model, body, 10_000, r, monkeypatch) for r in ("blocks", "csv")}
    assert answers["blocks"] == answers["csv"]
    text = answers["blocks"][0]
    assert isinstance(text, bytes)
    rows = parse(text.decode())
    flags = [
        (number.name in rows[i]["out_of_range"].split(";"), rows[i]["imputed"].split(";"))
        for i in edits
    ]
    assert [(outside, category.name in imputed) for outside, imputed in flags] == [
        (True, True), (True, False), (False, True),
    ]  # fmt: skip


def test_a_csv_answer_carries_the_imputed_masks_of_each_chunk(loans_model: LoadedModel) -> None:
    """What the API counts in its metrics: `result.batch.imputed` of every part."""
    frame = loans_frame(50, seed=7)
    table, output = predict.answer(loans_model, body_of(frame), 16)
    assert output is None and len(table.parts) == 4  # streamed in chunks of 16 rows
    got: list[str] = []
    for part in table.parts:
        assert not part.batch.inputs  # only the flags are kept
        got += [";".join(names) for names in part.batch.imputed_flags()]
    assert got == expected_imputed(loans_model.manifest, frame)


def test_a_model_without_nullable_features_answers_without_an_imputed_column() -> None:
    """Its answer keeps its columns, even when the caller has a column named `imputed`."""
    churn = load_model(REPO / "models" / "churn" / read_pointer(REPO / "models" / "churn"), 1)
    assert not churn.validator.nullable
    record = churn.manifest.examples[0].record
    header = [*record, "imputed"]
    row = [str(int(v)) if isinstance(v, bool) else str(v) for v in record.values()]
    body = f"{','.join(header)}\n{','.join(row)},x\n".encode()
    table, output = predict.answer(churn, body, 100)
    assert output is not None
    assert output.decode().splitlines()[0] == ",".join(
        [*header, "label", "probability", "p_stayed", "p_churned", "out_of_range"]
    )
    assert not table.parts[0].batch.imputed


# ---- a category named like an NA word --------------------------------------------------------


@pytest.fixture(scope="module")
def na_word_category(loans: Registry, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The loans task with its nullable category's last category renamed "None", one of the
    default NA words, in the spec and in the data."""
    feature = loans.nullable("category")
    renamed = (feature.categories or [])[-1]
    assert SPEC_TEXT.count(f'"{renamed}"') == 1
    models = tmp_path_factory.mktemp("na-word") / "models"
    frame = loans_frame(seed=8)
    column = loans.column(feature)
    frame[column] = frame[column].replace(renamed, "None")
    with tempfile.TemporaryDirectory() as folder:
        spec, data = Path(folder) / f"{TASK}.toml", Path(folder) / f"{TASK}.csv"
        spec.write_text(SPEC_TEXT.replace(f'"{renamed}"', '"None"'), encoding="utf-8")
        frame.to_csv(data, index=False)
        options = TrainOptions(out=models, seed=0, data=data, mlp_overrides=FAST_MLP)
        return Registry(models, train(load_spec(spec), options).manifest)


def test_a_category_named_like_an_na_word_is_that_category(
    na_word_category: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cell `None` is that category (with spaces around too); `NA` and blank are missing. Both
    readers."""
    registry = na_word_category
    feature = registry.nullable("category")
    assert "None" in (feature.categories or [])
    model = load_model(registry.folder, 1)
    frame = plain(loans_frame(300, seed=9), registry.manifest)
    first = (feature.categories or [])[0]
    frame[registry.column(feature)] = ["None", "NA", first, "", " None "] * 60
    body = body_of(frame)
    answers = {r: read_table(model, body, 100, r, monkeypatch) for r in ("blocks", "csv")}
    assert answers["blocks"] == answers["csv"]
    text = answers["csv"][0]
    assert isinstance(text, bytes)
    rows = check_answer(registry, frame, text.decode())
    imputed = [feature.name in row["imputed"].split(";") for row in rows[:5]]
    assert imputed == [False, True, False, True, False]


# ---- both readers ----------------------------------------------------------------------------


def read_table(
    model: LoadedModel, body: bytes, chunk_rows: int, reader: str, patch: pytest.MonkeyPatch
) -> tuple[bytes, list[dict[str, Any]]] | tuple[str, str, Any]:
    """The answer's bytes and each part's imputed masks, or the error, with the block reader
    taking every body it can read ("blocks") or none ("csv")."""
    with patch.context() as patched:
        patched.setattr(predict, "BLOCKS_FROM_BYTES", 0 if reader == "blocks" else 1 << 40)
        try:
            table = predict.predict_table(model, body, chunk_rows)
        except ServiceError as exc:
            return type(exc).__name__, str(exc), getattr(exc, "problems", None)
        masks = [{k: v.tolist() for k, v in part.batch.imputed.items()} for part in table.parts]
        return b"".join(table.output()), masks


def same_masks(a: dict[str, npt.NDArray[np.bool_]], b: dict[str, npt.NDArray[np.bool_]]) -> bool:
    return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


Draw = Callable[[st.SearchStrategy[Any]], Any]


def edited_body(manifest: Manifest, draw: Draw) -> bytes:
    """Loans rows (blank in every spelling) with a few more odd cells anywhere, the required
    feature and the passthrough target included; LF or CRLF line ends."""
    frame = loans_frame(draw(st.integers(1, 60)), seed=draw(st.integers(0, 1000)))
    if draw(st.booleans()):  # often a body the block reader takes
        frame = plain(frame, manifest)
    for _ in range(draw(st.integers(0, 4))):
        row = draw(st.integers(0, len(frame) - 1))
        column = draw(st.sampled_from(list(frame.columns)))
        frame.loc[row, column] = draw(st.sampled_from(ODD_CELLS))
    return body_of(frame, draw(st.sampled_from(["\n", "\r\n"])))


@SETTINGS
@given(data=st.data(), chunk_rows=st.sampled_from([7, 10_000]))
def test_both_readers_answer_bodies_with_missing_cells_alike(
    loans_model: LoadedModel, data: st.DataObject, chunk_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = edited_body(loans_model.manifest, data.draw)
    blocks = read_table(loans_model, body, chunk_rows, "blocks", monkeypatch)
    assert blocks == read_table(loans_model, body, chunk_rows, "csv", monkeypatch)


@SETTINGS
@given(data=st.data())
def test_score_blocks_with_missing_cells_match_the_row_path(
    loans_model: LoadedModel, data: st.DataObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    header, _, block = edited_body(loans_model.manifest, data.draw).partition(b"\n")
    scorer = BlockScorer(loans_model, header.decode().strip().split(","))

    def score() -> BlockResult | tuple[str, str]:
        try:
            return scorer.score(block)
        except Exception as exc:
            return type(exc).__name__, str(exc)

    fast = score()
    with monkeypatch.context() as patch:
        patch.setattr(BlockScorer, "_score_cells", lambda self, block: None)
        slow = score()
    assert fast == slow


def test_the_shared_data_set_leaves_required_features_whole(loans: Registry) -> None:
    """What the tests above rely on: the data set blanks nullable features only."""
    frame = loans_frame()
    for name in REQUIRED:
        cells = frame[loans.column(name)].str.strip()
        assert not cells.isin(["", *MISSING_TOKENS]).any()
