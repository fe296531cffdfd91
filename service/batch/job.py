"""What one run of the `score` command is, whichever engine scores it (local processes, or Spark
in `service.batch.spark`): its model (found in the registry and loaded), its formats, its
summary, its report of the rows set aside, and the error that stops it."""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from service.batch.scoring import RowError
from service.errors import ArtefactError
from service.manifest import (
    Manifest,
    ManifestError,
    PointerError,
    is_task_name,
    read_pointer,
    task_dirs,
)
from service.model import LoadedModel, load_model
from service.validation import MAX_PROBLEMS

MAX_STDERR_ERRORS = MAX_PROBLEMS  # as the API lists: the first 100, then a count
ERRORS_HEADER = ["line", "row", "column", "value", "error"]
CSV, PARQUET = "csv", "parquet"
PARQUET_SUFFIXES = (".parquet", ".pq")
FORMAT_NAMES = {CSV: "CSV", PARQUET: "Parquet"}


class ScoreError(Exception):
    """An expected failure that stops the run: reported in one line, exit code 2."""


@dataclass
class Summary:
    """What a run did, for the closing line and the exit code."""

    rows: int = 0
    bad_rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    stopped: bool = False

    @property
    def scored(self) -> int:
        return self.rows - self.bad_rows


def find_version(models_dir: Path, name: str) -> Path:
    """The version folder `models_dir/<name>/current` names (not loaded yet)."""
    task_dir = models_dir / name
    if not is_task_name(name) or not task_dir.is_dir():
        known = ", ".join(d.name for d in task_dirs(models_dir)) or "none"
        raise ScoreError(f"no model {name!r} in {models_dir} (models there: {known})")
    try:
        return task_dir / read_pointer(task_dir)
    except PointerError as exc:
        raise ScoreError(f"{task_dir}: {exc}") from exc


def load_manifest(folder: Path) -> Manifest:
    """The version's manifest (read before the model, to check the input's columns first)."""
    try:
        return Manifest.load(folder)
    except ManifestError as exc:
        raise ScoreError(str(exc)) from exc


def load_checked(folder: Path) -> LoadedModel:
    """The version folder loaded and self-checked as the server does; ScoreError if it cannot be."""
    try:
        return load_model(folder, threads=1)
    except ArtefactError as exc:
        raise ScoreError(str(exc)) from exc


def input_format(args: argparse.Namespace) -> str:
    """The input's format (`--format`, else its extension), checked against the output's: its
    extension if it has one of the two, else the input's. Both must be the same, and Parquet is
    written to a file only (a reader seeks to its footer, so stdout would not do)."""
    source = args.format or _format_of(args.input, CSV)
    target = source if args.output is None else _format_of(args.output, source)
    if target == PARQUET and args.output is None:
        raise ScoreError("Parquet output is not written to stdout: give -o FILE.parquet")
    if source != target:
        raise ScoreError(
            f"{FORMAT_NAMES[source]} input and {FORMAT_NAMES[target]} output: the output must "
            f"have the input's format (give -o a .{source} name, or convert the input first)"
        )
    return source


def _format_of(path: Path | str, default: str) -> str:
    suffix = Path(str(path).rstrip("/")).suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return PARQUET
    return CSV if suffix == ".csv" else default


def first_row(errors: list[RowError]) -> list[RowError]:
    """Every error of the first bad row (what --strict reports before it stops)."""
    return [e for e in errors if e.row == errors[0].row]


class ErrorReport:
    """Row errors as CSV in `--errors FILE` (every one), else on stderr (the first
    MAX_STDERR_ERRORS, then a count); a row breaking several rules has an error for each."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.shown = 0
        self.hidden = 0
        self._handle: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None

    def __enter__(self) -> ErrorReport:
        if self.path is not None:
            try:
                self._handle = self.path.open("w", encoding="utf-8", newline="")
            except OSError as exc:
                raise ScoreError(f"{self.path}: cannot write ({exc.strerror})") from exc
            self._writer = csv.DictWriter(self._handle, ERRORS_HEADER)
            self._writer.writeheader()
        return self

    def add(self, errors: list[RowError], source: Path) -> None:
        if self._writer is not None:
            self._writer.writerows(
                {
                    "line": e.line,
                    "row": e.row,
                    "column": e.column,
                    "value": e.value,
                    "error": e.message,
                }
                for e in errors
            )
            return
        for error in errors:
            if self.shown < MAX_STDERR_ERRORS:
                sys.stderr.write(f"{source}: {_describe(error)}\n")
                self.shown += 1
            else:
                self.hidden += 1

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if self._handle is not None:
            self._handle.close()
        if self.hidden:
            sys.stderr.write(f"... and {self.hidden} more errors (use --errors FILE for all)\n")


def _describe(error: RowError) -> str:
    where = f"row {error.row}" if error.line is None else f"line {error.line} (row {error.row})"
    if error.column is not None:
        where += f", column {error.column!r}"
    value = "" if error.value is None else f" (got {error.value[:80]!r})"
    return f"{where}: {error.message}{value}"
