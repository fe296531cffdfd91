"""Prediction use cases, free of HTTP: JSON records in one run, CSV tables a chunk per run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from service.batch import Batch
from service.errors import InvalidInput, MalformedBody, Problem
from service.model import LoadedModel, Prediction
from service.records import batch_from_records
from service.render import prediction_cells, prediction_header
from service.table import Layout, batch_from_rows, chunks, encode_rows, layout, rows


@dataclass(frozen=True)
class Result:
    """A checked batch and the model's answer for it."""

    batch: Batch
    prediction: Prediction


def predict_records(model: LoadedModel, records: list[Any]) -> Result:
    """Validate once, build one array per feature, run the session once."""
    batch = batch_from_records(model.validator, records)
    return Result(batch, model.predict(batch))


@dataclass(frozen=True)
class TableResult:
    """A checked and predicted CSV: the parts (one per chunk) and how to write the answer."""

    model: LoadedModel
    body: bytes
    table: Layout
    parts: list[Result]
    chunk_rows: int
    first_rows: list[list[str]] | None

    @property
    def size(self) -> int:
        return sum(part.batch.size for part in self.parts)

    def output(self) -> Iterator[bytes]:
        """The caller's rows with the prediction columns appended, one encoded chunk at a time."""
        taken = {name.strip().lower() for name in self.table.header}
        yield encode_rows([self.table.header + prediction_header(self.model, taken)])
        if self.first_rows is not None:
            source: Iterator[list[str]] = iter(self.first_rows)
        else:
            source = rows(self.body)
            next(source)  # the header, written above
        for part, chunk in zip(self.parts, chunks(source, self.chunk_rows), strict=True):
            cells = prediction_cells(self.model, part.batch, part.prediction)
            yield encode_rows([row + extra for row, extra in zip(chunk, cells, strict=True)])


def predict_table(model: LoadedModel, body: bytes, chunk_rows: int) -> TableResult:
    """Check and predict a CSV a chunk at a time; keep only results (and the rows if one chunk)."""
    source = rows(body)
    header = next(source, None)
    if header is None:
        raise MalformedBody("CSV body is empty: a header row is required", "csv_invalid")
    table = layout(model.manifest, header)
    parts: list[Result] = []
    first_rows: list[list[str]] | None = None
    for chunk in chunks(source, chunk_rows):
        batch = batch_from_rows(model.validator, table, chunk, offset=len(parts) * chunk_rows)
        prediction = model.predict(batch)
        parts.append(Result(batch.without_inputs(), prediction))
        first_rows = chunk if len(parts) == 1 else None
    if not parts:
        msg = "CSV has a header but no data rows"
        raise InvalidInput([Problem(None, None, msg, "too_short")], ("body", "rows"))
    return TableResult(model, body, table, parts, chunk_rows, first_rows)
