"""`python -m service score`: score a CSV file offline with a registry model, as the API would.

Exit codes: 0 every row was scored; 1 some rows had errors (they are reported and left out of
the output, the rest is scored; with --strict nothing is written); 2 bad usage, an unknown or
unloadable model, or an unreadable file (missing, not CSV, not UTF-8, no header or no rows).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import IO, BinaryIO, Never

from tqdm import tqdm

from service.blocks import BLOCK_BYTES, UnterminatedQuote, blocks, read_record
from service.errors import ArtefactError, InvalidInput
from service.layout import PointerError, is_task_name, read_pointer, task_dirs
from service.manifest import Manifest, ManifestError
from service.model import LoadedModel, load_model
from service.scorer import BlockError, BlockResult, BlockScorer, RowError
from service.table import layout
from service.table import rows as csv_rows

EXIT_OK, EXIT_ROW_ERRORS, EXIT_BAD_INPUT = 0, 1, 2
MAX_STDERR_ERRORS = 50
ERRORS_HEADER = ["line", "row", "column", "value", "error"]


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


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (argparse exits 2 itself on bad usage)."""
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    try:
        summary = score_file(find_version(args.models, args.model), args)
    except ScoreError as exc:
        sys.stderr.write(f"score: {exc}\n")
        return EXIT_BAD_INPUT
    if not args.quiet:
        _write_summary(summary, args, time.perf_counter() - started)
    return EXIT_ROW_ERRORS if summary.bad_rows else EXIT_OK


def find_version(models_dir: Path, name: str) -> Path:
    """The version folder `models_dir/<name>/current` names (not loaded yet)."""
    task_dir = models_dir / name
    if not is_task_name(name) or not task_dir.is_dir():
        known = ", ".join(d.name for d in task_dirs(models_dir)) or "none"
        raise ScoreError(f"no model {name!r} in {models_dir} (models there: {known})")
    try:
        return task_dir / read_pointer(task_dir)
    except PointerError as exc:
        raise ScoreError(str(exc)) from exc


def find_model(models_dir: Path, name: str) -> LoadedModel:
    """The current version of a task, loaded and self-checked as the server does."""
    return _load(find_version(models_dir, name))


def _load(folder: Path) -> LoadedModel:
    try:
        return load_model(folder, threads=1)
    except ArtefactError as exc:
        raise ScoreError(str(exc)) from exc


def score_file(folder: Path, args: argparse.Namespace) -> Summary:
    """Stream the input through the model into the output; bad rows go to the error report."""
    source = _open_input(args.input)
    with source, _Output(args.output) as output, _ErrorReport(args.errors) as report:
        try:
            header_bytes, rest = read_record(source)
        except UnterminatedQuote as exc:
            raise ScoreError(f"{args.input}: {exc}") from exc
        header = next(csv_rows(header_bytes), None)
        if header is None:
            raise ScoreError(f"{args.input}: empty file, a header row is required")
        try:
            manifest = Manifest.load(folder)
        except ManifestError as exc:
            raise ScoreError(str(exc)) from exc
        try:
            layout(manifest, header)  # a header problem stops the run before any worker starts
        except InvalidInput as exc:
            raise ScoreError(f"{args.input}: {exc}") from exc
        size = _size(source)
        # One block or less: starting worker processes would cost more than it saves.
        workers = args.workers if size is not None and size > args.block_bytes else 1
        with _pool(folder, header, workers) as pool:
            try:
                scorer = BlockScorer(_load(folder), header)
            except InvalidInput as exc:
                raise ScoreError(f"{args.input}: {exc}") from exc
            output.write(scorer.header())
            summary = Summary()
            lines = header_bytes.count(b"\n")
            with _progress(size, args.quiet) as progress:
                try:
                    for block, result in _results(scorer, pool, source, rest, args):
                        errors = [e.shifted(lines, summary.rows) for e in result.errors]
                        lines += block.count(b"\n")
                        summary.rows += result.rows
                        summary.bad_rows += len({e.row for e in errors})
                        progress.update(len(block))
                        if errors and args.strict:
                            report.add(errors[:1], args.input)
                            summary.stopped = True
                            output.discard()
                            return summary
                        report.add(errors, args.input)
                        output.write(result.output)
                except BlockError as exc:
                    raise ScoreError(f"{args.input}: line {lines + exc.line}: {exc}") from exc
        if summary.rows == 0:
            raise ScoreError(f"{args.input}: has a header but no data rows")
        return summary


@contextlib.contextmanager
def _pool(folder: Path, header: list[str], workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes, forked at once: before this process imports more or builds its own
    onnxruntime session, so each starts in milliseconds with nothing of onnxruntime's inherited.
    Each loads (and self-checks) its own copy of the model.
    """
    if workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(workers, get_context("fork"), _start_worker, (folder, header)) as pool:
        pool.submit(int)  # with fork, the first task starts every worker
        yield pool


def _results(
    scorer: BlockScorer,
    pool: ProcessPoolExecutor | None,
    source: BinaryIO,
    rest: bytes,
    args: argparse.Namespace,
) -> Iterator[tuple[bytes, BlockResult]]:
    """Block results in file order; with workers, a few blocks are in flight (bounded memory)."""
    try:
        stream = blocks(source, rest, args.block_bytes)
        if pool is None:
            for block in stream:
                yield block, scorer.score(block)
            return
        pending: deque[tuple[bytes, Future[BlockResult]]] = deque()
        try:
            for block in stream:
                pending.append((block, pool.submit(_score_in_worker, block)))
                if len(pending) > 2 * args.workers:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()
    except UnterminatedQuote as exc:
        raise ScoreError(f"{args.input}: {exc}") from exc
    except OSError as exc:
        raise ScoreError(f"{args.input}: cannot read ({exc.strerror})") from exc


_WORKER: BlockScorer | Exception | None = None


def _start_worker(folder: Path, header: list[str]) -> None:
    """Each worker process loads (and self-checks) its own copy of the model.

    A failure is kept for the first block rather than raised here (which would print a
    traceback per worker): the parent loads the same model and reports the problem in one line.
    """
    global _WORKER
    try:
        _WORKER = BlockScorer(load_model(folder, threads=1), header)
    except Exception as exc:
        _WORKER = exc


def _score_in_worker(block: bytes) -> BlockResult:
    if isinstance(_WORKER, Exception):
        raise _WORKER
    assert _WORKER is not None, "worker not started"
    return _WORKER.score(block)


class _Output:
    """The output file, written to a hidden file beside it and renamed into place at the end."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._partial = path.with_name(f".{path.name}.partial-{os.getpid()}") if path else None
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> _Output:
        if self._partial is None:
            self._handle = sys.stdout.buffer
            return self
        try:
            self._handle = self._partial.open("wb")
        except OSError as exc:
            raise ScoreError(f"{self.path}: cannot write ({exc.strerror})") from exc
        return self

    def write(self, data: bytes) -> None:
        assert self._handle is not None
        self._handle.write(data)

    def discard(self) -> None:
        """Nothing is left behind: used when --strict stops the run."""
        if self._partial is not None and self._handle is not None:
            self._handle.close()
            self._partial.unlink(missing_ok=True)
            self._handle = None

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if self._partial is None or self._handle is None:
            if self._handle is not None:
                self._handle.flush()
            return
        self._handle.close()
        if error is None and self.path is not None:
            os.replace(self._partial, self.path)
        else:
            self._partial.unlink(missing_ok=True)


class _ErrorReport:
    """Row errors as CSV in `--errors FILE`, else on stderr (the first few, then a count)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.shown = 0
        self.hidden = 0
        self._handle: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None

    def __enter__(self) -> _ErrorReport:
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
    where = f"line {error.line} (row {error.row})"
    if error.column is not None:
        where += f", column {error.column!r}"
    value = "" if error.value is None else f" (got {error.value[:80]!r})"
    return f"{where}: {error.message}{value}"


def _write_summary(summary: Summary, args: argparse.Namespace, seconds: float) -> None:
    target = args.output or "stdout"
    rate = summary.rows / seconds if seconds > 0 else 0.0
    if summary.stopped:
        sys.stderr.write(f"score: stopped at the first bad row (--strict); {target} not written\n")
        return
    sys.stderr.write(
        f"score: {summary.scored:,} of {summary.rows:,} rows scored, {summary.bad_rows:,} with "
        f"errors, in {seconds:.2f} s ({rate:,.0f} rows/s) -> {target}\n"
    )


def _progress(size: int | None, quiet: bool) -> tqdm[Never]:
    """Bytes read of the input, on stderr, only when stderr is a terminal (or never, --quiet)."""
    disable = True if quiet else None
    return tqdm(
        total=size, unit="B", unit_scale=True, unit_divisor=1024, disable=disable, file=sys.stderr
    )


def _open_input(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ScoreError(f"{path}: cannot read ({exc.strerror})") from exc


def _size(source: BinaryIO) -> int | None:
    with contextlib.suppress(OSError):
        return os.fstat(source.fileno()).st_size
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service score",
        description="Score a CSV file with a model of the registry, with the API's checks. "
        "Rows with errors are reported and left out; the others are written with the "
        "prediction columns appended.",
        epilog="exit codes: 0 all rows scored; 1 some rows had errors; "
        "2 bad usage, unknown model or unreadable file",
    )
    parser.add_argument("input", type=Path, help="CSV file with a header row")
    parser.add_argument("--model", required=True, help="task name, e.g. churn")
    parser.add_argument("-o", "--output", type=Path, help="scored CSV (default: stdout)")
    parser.add_argument("--errors", type=Path, help="write row errors to this CSV, not stderr")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad row")
    parser.add_argument("--models", type=Path, default=Path("models"), help="registry folder")
    parser.add_argument(
        "--workers",
        type=_positive,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per CPU; 1 scores in this process)",
    )
    parser.add_argument(
        "--block-bytes", type=_positive, default=BLOCK_BYTES, help=argparse.SUPPRESS
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value
