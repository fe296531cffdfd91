"""Scoring one block of CSV records for batch scoring: the API's CSV checks, row by row errors.

The checks and the model run are the v1 CSV endpoint's own (`codecs.csv.batch_from_rows`,
`LoadedModel.predict`); what differs is what happens to a bad row. The API refuses the whole body,
while a batch job sets the bad rows aside, reports them, and scores the rest.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from service.codecs import csv_blocks
from service.codecs.csv import (
    Layout,
    batch_from_block,
    batch_from_rows,
    encode_rows,
    layout,
    plain_labels,
    prediction_columns,
    prediction_header,
)
from service.codecs.csv_blocks import scored_lines, writable
from service.errors import InvalidInput, Problem
from service.explanations import check_explainable, explain
from service.model import LoadedModel, Prediction
from service.validation import Batch

# When a block fails, its rows are retried in groups this large, so one bad row costs the re-check
# of a small group rather than of the whole block.
GROUP_ROWS = 256


class BlockError(Exception):
    """The block is not readable CSV (bad UTF-8 or quoting); `line` is counted within the block."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(line, message)  # both in args, so the error survives a worker's pickling
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class RowError:
    """One broken rule of one row: `row` counts data rows from 0 (as the API's `loc`); `line` is
    the CSV line the record starts on (None for a file without lines, such as Parquet)."""

    line: int | None
    row: int
    column: str | None
    value: str | None
    message: str

    def shifted(self, lines: int, rows: int) -> RowError:
        """The same error with its line and row counted from the start of the file."""
        line = None if self.line is None else self.line + lines
        return RowError(line, self.row + rows, self.column, self.value, self.message)


@dataclass(frozen=True)
class BlockResult:
    """The scored rows as CSV bytes, the number of data rows read, and the rows set aside;
    `lines` counts the block's newlines, so errors in later blocks can name their line.
    """

    output: bytes
    rows: int
    errors: list[RowError]
    lines: int = 0


class BlockScorer:
    """Scores blocks of one CSV file (one header) with one model; built once per process. With
    `explain`, each row also gets its contributions (`service.explanations`)."""

    def __init__(self, model: LoadedModel, header: list[str], explain: bool = False) -> None:
        self.model = model
        self.table: Layout = layout(model.manifest, header)
        self.explain = explain
        if explain:
            check_explainable(model)
        self._plain_labels = plain_labels(model)
        self._byte_lines = self._plain_labels and writable(model)

    def header(self) -> bytes:
        """The caller's header plus the prediction columns, named as the v1 CSV endpoint does."""
        taken = {name.strip().lower() for name in self.table.header}
        appended = prediction_header(self.model, taken, self.explain)
        return encode_rows([self.table.header + appended])

    def score(self, block: bytes) -> BlockResult:
        """Check and predict every record of `block`; bad rows are reported, not written."""
        # Bad UTF-8 is reported before anything is scored; ASCII is decoded only if the bytes
        # path does not take the block.
        decoded = None if block.isascii() else _decode(block)
        fast = self._score_cells(block)
        if fast is not None:
            return replace(fast, lines=_newlines(block))
        text = decoded if decoded is not None else block.decode("ascii")
        rows = _parse(text)
        parts, problems = self._check(rows)
        plain = self._plain_labels and '"' not in text and "\r" not in text
        lines: list[str] = []
        for indices, batch in parts:
            part = rows if len(parts) == 1 and not problems else [rows[i] for i in indices]
            lines.extend(self._render(part, batch, plain))
        output = ("\r\n".join(lines) + "\r\n").encode("utf-8") if lines else b""
        errors = _row_errors(text, rows, problems, self.table)
        return BlockResult(output, len(rows), errors, _newlines(block))

    def _score_cells(self, block: bytes) -> BlockResult | None:
        """A clean plain block read from its bytes (`cells.batch_from_block`) and written as
        bytes (`lines.scored_lines`); else None: the row path then reads it and names problems.
        """
        if not self._byte_lines:
            return None
        split = csv_blocks.split(block, len(self.table.header))
        if split is None:
            return None
        batch = batch_from_block(self.model.validator, self.table, split)
        if batch is None:
            return None
        output = scored_lines(split, self.model, batch, self._predict(batch))
        return BlockResult(output, batch.size, [])

    def _extras(self, batch: Batch) -> list[list[str]]:
        """The prediction columns as text: label, probability, p_<label>..., out_of_range."""
        return prediction_columns(self.model, batch, self._predict(batch))

    def _predict(self, batch: Batch) -> Prediction:
        return explain(self.model, batch) if self.explain else self.model.predict(batch)

    def _check(self, rows: list[list[str]]) -> tuple[list[tuple[list[int], Batch]], list[Problem]]:
        """The whole block in one check when it is clean; else group by group (`checked_parts`)."""
        validator, table = self.model.validator, self.table

        def check(indices: list[int] | None) -> Batch:
            if indices is None:  # only whether the block is clean matters: no problem listed
                return batch_from_rows(validator, table, rows, 0, limit=0)
            return batch_from_rows(validator, table, [rows[i] for i in indices], 0, limit=None)

        return checked_parts(len(rows), check)

    def _render(self, rows: list[list[str]], batch: Batch, plain: bool) -> list[str]:
        """Rows with the prediction cells appended, in the v1 CSV endpoint's exact format."""
        extras = zip(*self._extras(batch), strict=True)
        if plain:
            return [
                ",".join(row) + "," + ",".join(extra)
                for row, extra in zip(rows, extras, strict=True)
            ]
        encoded = encode_rows([row + list(extra) for row, extra in zip(rows, extras, strict=True)])
        return encoded.decode("utf-8").removesuffix("\r\n").split("\r\n") if encoded else []


def _newlines(block: bytes) -> int:
    """`block.count(b"\n")`, quicker as one numpy comparison."""
    return int(np.count_nonzero(np.frombuffer(block, dtype=np.uint8) == csv_blocks.NEWLINE))


def _decode(block: bytes) -> str:
    try:
        return block.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = block.count(b"\n", 0, exc.start) + 1
        raise BlockError(line, f"not valid UTF-8 ({exc.reason})") from exc


def _parse(text: str) -> list[list[str]]:
    """Records of the block; blank lines are skipped, as the v1 CSV endpoint skips them."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        return [row for row in reader if row]
    except csv.Error as exc:
        raise BlockError(reader.line_num, str(exc)) from exc


def checked_parts(
    size: int, check: Callable[[list[int] | None], Batch]
) -> tuple[list[tuple[list[int], Batch]], list[Problem]]:
    """The rows in one check when they are clean; else group by group, dropping bad rows.

    `check(indices)` checks those rows and raises InvalidInput with every problem of every bad
    row (no limit), indexed within what it was given; `check(None)` checks all `size` rows and
    need list no problem (it only tells whether they are clean). Returns the checked parts, in
    row order, and the problems indexed by row; used for CSV blocks and Arrow batches alike.
    """
    if not size:
        return [], []
    try:
        return [(list(range(size)), check(None))], []
    except InvalidInput:
        pass
    parts: list[tuple[list[int], Batch]] = []
    problems: list[Problem] = []
    for start in range(0, size, GROUP_ROWS):
        indices = list(range(start, min(start + GROUP_ROWS, size)))
        while indices:
            try:
                batch = check(indices)
            except InvalidInput as exc:
                indices = _drop_reported(indices, exc.problems, problems)
                continue
            parts.append((indices, batch))
            break
    return parts, problems


def _drop_reported(
    indices: list[int], reported: list[Problem], problems: list[Problem]
) -> list[int]:
    """Record the problems against block row numbers and return the rows not yet blamed."""
    named = [p for p in reported if p.index is not None and 0 <= p.index < len(indices)]
    if not named:  # a problem that names no row: blame the whole group rather than loop forever
        first = reported[0]
        named = [Problem(j, first.field, first.msg, first.type) for j in range(len(indices))]
    blamed = {p.index for p in named}
    problems.extend(Problem(indices[p.index or 0], p.field, p.msg, p.type, p.input) for p in named)
    return [row for j, row in enumerate(indices) if j not in blamed]


def _row_errors(
    text: str, rows: list[list[str]], problems: list[Problem], table: Layout
) -> list[RowError]:
    """Problems as errors naming the line each record starts on (only computed when needed)."""
    if not problems:
        return []
    starts = _record_lines(text)
    problems.sort(key=lambda p: p.index or 0)
    return [_row_error(p, starts, rows, len(table.header)) for p in problems]


def _row_error(problem: Problem, starts: list[int], rows: list[list[str]], width: int) -> RowError:
    index = problem.index or 0
    message = problem.msg
    if len(rows[index]) != width:  # the shared message counts rows within the group checked
        message = width_message(len(rows[index]), width)
    value = None if problem.input is None else str(problem.input)
    return RowError(starts[index], index, problem.field, value, message)


def width_message(cells: int, width: int) -> str:
    """A row of the wrong number of cells, as `score` reports it (Spark's malformed lines too)."""
    return f"the row has {cells} cells, the header has {width}"


def _record_lines(text: str) -> list[int]:
    """The line (from 1 within the block) on which each non-blank record starts."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    starts: list[int] = []
    previous = 0
    for row in reader:
        if row:
            starts.append(previous + 1)
        previous = reader.line_num
    return starts
