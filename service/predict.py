"""Prediction use cases, free of HTTP: JSON records in one run, CSV tables a chunk per run."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

from service import bytecells
from service.batch import Batch
from service.bytelines import scored_lines, writable
from service.errors import InvalidInput, MalformedBody, Problem
from service.model import LoadedModel, Prediction
from service.render import (
    plain_labels,
    prediction_cells,
    prediction_columns,
    prediction_header,
)
from service.table import (
    Layout,
    batch_from_block,
    batch_from_flat,
    batch_from_rows,
    check_bounds,
    chunks,
    encode_rows,
    layout,
    newlines,
    plain_cells,
    plain_lines,
    rows,
)

# Plain CSV is split a piece of about this many bytes at a time, so memory holds the body plus
# one piece and one chunk of lines, never the whole file as Python strings.
PIECE_BYTES = 1 << 20
# From this body size the bytes path beats the text path (measured: equal near 40 KB, about
# 900 churn rows; for one row the bytes path's some 100 numpy calls cost 3 ms, the text 0.9).
CELLS_FROM = 32 * 1024


@dataclass(frozen=True)
class Result:
    """A checked batch and the model's answer for it."""

    batch: Batch
    prediction: Prediction


@dataclass(frozen=True)
class Answer:
    """A result and the response body encoded from it (both made off the event loop)."""

    result: Result
    body: bytes


@dataclass(frozen=True)
class TableResult:
    """A checked and predicted CSV: the parts (one per chunk) and how to write the answer."""

    model: LoadedModel
    body: bytes
    table: Layout
    parts: list[Result]
    chunk_rows: int
    first_rows: list[list[str]] | None
    plain: bool = False
    # Read from bytes (`_cells_table`): each part's byte range in the body, and the split of a
    # lone part (a larger body is split again part by part as it is written, to bound memory).
    ranges: list[tuple[int, int]] | None = None
    split: bytecells.Block | None = None

    @property
    def size(self) -> int:
        return sum(part.batch.size for part in self.parts)

    def output(self) -> Iterator[bytes]:
        """The caller's rows with the prediction columns appended, one encoded chunk at a time."""
        taken = {name.strip().lower() for name in self.table.header}
        yield encode_rows([self.table.header + prediction_header(self.model, taken)])
        if self.ranges is not None:
            yield from self._scored_bytes(self.ranges)
            return
        if self.plain:
            lines = _plain_chunks(self.body, self.chunk_rows)
            next(lines)  # the header
            for part, block in zip(self.parts, lines, strict=True):
                extras = prediction_columns(self.model, part.batch, part.prediction)
                joined = zip(block, *extras, strict=True)
                yield ("\r\n".join(map(",".join, joined)) + "\r\n").encode("utf-8")
            return
        if self.first_rows is not None:
            source: Iterator[list[str]] = iter(self.first_rows)
        else:
            source = rows(self.body)
            next(source)  # the header, written above
        for part, chunk in zip(self.parts, chunks(source, self.chunk_rows), strict=True):
            cells = prediction_cells(self.model, part.batch, part.prediction)
            yield encode_rows([row + extra for row, extra in zip(chunk, cells, strict=True)])

    def _scored_bytes(self, ranges: list[tuple[int, int]]) -> Iterator[bytes]:
        """Each part's lines with its prediction cells, built as bytes (`service.bytelines`)."""
        width = len(self.table.header)
        for part, (first, stop) in zip(self.parts, ranges, strict=True):
            split = self.split or bytecells.split(self.body[first:stop], width)
            assert split is not None, "these bytes were split when they were checked"
            yield scored_lines(split, self.model, part.batch, part.prediction)


def predict_table(model: LoadedModel, body: bytes, chunk_rows: int) -> TableResult:
    """Check and predict a CSV a chunk at a time; keep only results (and the rows if one chunk)."""
    check_bounds(body)
    plain = _cells_table(model, body, chunk_rows) or _plain_table(model, body, chunk_rows)
    if plain is not None:
        return plain
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


def _cells_table(model: LoadedModel, body: bytes, chunk_rows: int) -> TableResult | None:
    """The usual CSV with nothing wrong in it, every chunk read from its bytes (`service.bytecells`)
    without splitting the text first. None at the first doubt; `_plain_table` then reads it.
    """
    if len(body) < CELLS_FROM:
        return None  # the text path is quicker for a few hundred rows
    if not (plain_labels(model) and writable(model)) or b"\n\n" in body or b"\n\r\n" in body:
        return None  # blank lines: chunks of lines would not be chunks of rows
    start = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    end = body.find(b"\n", start)
    if end < 0:
        return None
    try:
        header = plain_lines(body[start : end + 1].decode("utf-8"))
    except UnicodeDecodeError:
        return None
    if not header or len(header) != 1:
        return None
    try:
        table = layout(model.manifest, header[0].split(","))
    except InvalidInput:
        return None  # the text path reports it
    cuts = [end + 1, *_chunk_ends(body, end + 1, chunk_rows), len(body)]
    parts: list[Result] = []
    ranges = [(first, stop) for first, stop in pairwise(cuts) if first < stop]
    split: bytecells.Block | None = None
    for first, stop in ranges:
        chunk = body[first:stop]
        if not chunk.isascii():
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError:
                return None
        split = bytecells.split(chunk, len(table.header))
        batch = None if split is None else batch_from_block(model.validator, table, split)
        if batch is None:
            return None
        parts.append(Result(batch.without_inputs(), model.predict(batch)))
    if not parts:
        return None
    kept = split if len(parts) == 1 else None
    return TableResult(model, body, table, parts, chunk_rows, None, True, ranges, kept)


def _chunk_ends(body: bytes, start: int, rows: int) -> Iterator[int]:
    """Where each run of `rows` lines from `start` ends (just past its last newline)."""
    seen = 0  # newlines before the current piece
    for breaks in newlines(body, start):
        yield from (breaks[(rows - 1 - seen) % rows :: rows] + 1).tolist()
        seen += breaks.size


def _plain_table(model: LoadedModel, body: bytes, chunk_rows: int) -> TableResult | None:
    """`predict_table` for the usual CSV (no quotes, CRs or NULs; every row as wide as the
    header) that `_cells_table` did not take (a blank line, an odd number, a bad value):
    columns are slices of one flat list of text cells, and problems are named with their row.
    None when the file is anything else, and `predict_table`'s csv-module path then reads it.
    """
    if not plain_labels(model):
        return None
    try:
        source = _plain_chunks(body, chunk_rows)
        header = next(source)
    except (_NotPlain, StopIteration):
        return None
    if len(header) != 1:
        return None
    table = layout(model.manifest, header[0].split(","))
    width = len(table.header)
    parts: list[Result] = []
    try:
        for chunk in source:
            flat = plain_cells(chunk, width)
            if flat is None:
                return None
            offset = len(parts) * chunk_rows
            batch = batch_from_flat(model.validator, table, flat, len(chunk), offset)
            parts.append(Result(batch.without_inputs(), model.predict(batch)))
    except _NotPlain:
        return None
    if not parts:
        return None
    return TableResult(model, body, table, parts, chunk_rows, None, plain=True)


class _NotPlain(Exception):
    """The body needs the csv module: quotes, CRs, NULs or bytes that are not UTF-8."""


def _plain_chunks(body: bytes, size: int) -> Iterator[list[str]]:
    """The header line as a chunk of one, then chunks of `size` non-blank lines."""
    pending: list[str] = []
    start = 3 if body.startswith(codecs.BOM_UTF8) else 0
    header = True
    while start < len(body):
        end = body.find(b"\n", start + PIECE_BYTES)
        end = len(body) if end < 0 else end + 1
        try:
            text = body[start:end].decode("utf-8")
        except UnicodeDecodeError:
            raise _NotPlain from None
        lines = plain_lines(text)
        if lines is None:
            raise _NotPlain
        pending.extend(lines)
        start = end
        if header and pending:
            yield pending[:1]
            del pending[:1]
            header = False
        while len(pending) >= size:
            yield pending[:size]
            del pending[:size]
    if header and pending:
        yield pending[:1]
        del pending[:1]
    if pending:
        yield pending
