"""`python -m service score`: score a CSV or Parquet file offline with a registry model, as the
API would. Parquet in gives Parquet out (`service.batch.parquet`); row errors are CSV either way.
`--engine spark` runs the same scorer as an Apache Spark job instead (`service.batch.spark`).

Exit codes: 0 every row was scored; 1 some rows had errors (they are reported and left out of
the output, the rest is scored; with --strict nothing is written); 2 bad usage, an unknown or
unloadable model, an unreadable file (missing, not CSV, not UTF-8, not Parquet, no header or no
rows), or a file that changed while it was scored (with -o, the output file is then not written).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol

from service.batch.blocks import (
    BLOCK_BYTES,
    Handoff,
    SourceChanged,
    Ticket,
    UnterminatedQuote,
    blocks,
    read_record,
)
from service.batch.job import (
    CSV,
    PARQUET,
    ErrorReport,
    ScoreError,
    Summary,
    find_version,
    first_row,
    input_format,
    load_checked,
    load_manifest,
)
from service.batch.scoring import BlockError, BlockResult, BlockScorer
from service.codecs.csv import layout
from service.codecs.csv import rows as csv_rows
from service.errors import InvalidInput
from service.model import LoadedModel, keep_freed_memory, load_model

if TYPE_CHECKING:  # imported when a Parquet file is scored: pyarrow.parquet costs start-up
    from service.batch.parquet import Arrow, ArrowScorer

EXIT_OK, EXIT_ROW_ERRORS, EXIT_BAD_INPUT = 0, 1, 2
LOCAL, SPARK = "local", "spark"
PARQUET_MAGIC = b"PAR1"  # a Parquet file's first (and last) four bytes


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (argparse exits 2 itself on bad usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.engine == LOCAL:  # Spark takes the paths as given: URLs (s3a://...) included
        if args.master is not None:
            parser.error("--master is for --engine spark")
        args.input = Path(args.input)
        args.output = None if args.output is None else Path(args.output)
    started = time.perf_counter()
    try:
        summary = score_file(find_version(args.models, args.model), args)
    except ScoreError as exc:
        sys.stderr.write(f"score: {exc}\n")
        return EXIT_BAD_INPUT
    if not args.quiet:
        _write_summary(summary, args, time.perf_counter() - started)
    return EXIT_ROW_ERRORS if summary.bad_rows else EXIT_OK


def find_model(models_dir: Path, name: str) -> LoadedModel:
    """The current version of a task, loaded and self-checked as the server does."""
    return load_checked(find_version(models_dir, name))


def score_file(folder: Path, args: argparse.Namespace) -> Summary:
    """Stream the input through the model into the output; bad rows go to the error report."""
    if args.engine == SPARK:
        try:
            from service.batch import spark
        except ImportError as exc:
            raise ScoreError(
                f"--engine spark needs pyspark: pip install '.[spark]' ({exc})"
            ) from exc
        return spark.score_job(folder, args)
    if input_format(args) == PARQUET:
        return score_parquet(folder, args)
    source = _open_input(args.input)
    with source, _Output(args.output) as output, ErrorReport(args.errors) as report:
        origin = _position(source)  # where reading starts: workers read at offsets from it
        try:
            header_bytes, rest = read_record(source)
        except UnterminatedQuote as exc:
            raise ScoreError(f"{args.input}: {exc}") from exc
        if header_bytes.startswith(PARQUET_MAGIC):
            raise ScoreError(f"{args.input}: a Parquet file; score it with --format parquet")
        try:
            header = next(csv_rows(header_bytes), None)
        except InvalidInput as exc:  # a header that is not UTF-8 (a binary file, say)
            raise ScoreError(f"{args.input}: {exc}") from exc
        if header is None:
            raise ScoreError(f"{args.input}: empty file, a header row is required")
        manifest = load_manifest(folder)
        try:
            layout(manifest, header)  # a header problem stops the run before any worker starts
        except InvalidInput as exc:
            raise ScoreError(f"{args.input}: {exc}") from exc
        size = _size(source)
        # One block or less: starting worker processes would cost more than it saves. A pipe
        # (no size) is read in this process: workers read their blocks from the file itself.
        workers = args.workers if size is not None and size > args.block_bytes else 1
        handoff = _handoff(source, workers, args.block_bytes)
        with _pool(folder, header, workers, handoff, args.explain) as pool:
            try:
                scorer = BlockScorer(load_checked(folder), header, args.explain)
            except InvalidInput as exc:
                raise ScoreError(f"{args.input}: {exc}") from exc
            output.write(scorer.header())
            summary = Summary()
            lines = header_bytes.count(b"\n")
            with _progress(size, args.quiet) as progress:
                try:
                    for size_read, result, scored in _results(
                        scorer, (pool, handoff), source, (origin + len(header_bytes), rest), args
                    ):
                        errors = [e.shifted(lines, summary.rows) for e in result.errors]
                        lines += result.lines
                        summary.rows += result.rows
                        summary.bad_rows += len({e.row for e in errors})
                        progress.update(size_read)
                        if errors and args.strict:
                            report.add(first_row(errors), args.input)
                            summary.stopped = True
                            output.discard()
                            return summary
                        report.add(errors, args.input)
                        output.write(scored)
                except BlockError as exc:
                    raise ScoreError(f"{args.input}: line {lines + exc.line}: {exc}") from exc
        if summary.rows == 0:
            raise ScoreError(f"{args.input}: has a header but no data rows")
        return summary


def score_parquet(folder: Path, args: argparse.Namespace) -> Summary:
    """Score a Parquet file a record batch at a time (`--workers` batches at once, in threads)
    into a Parquet file renamed into place at the end; bad rows as for CSV."""
    from service.batch import parquet

    with _open_input(args.input) as handle:  # the usual message for a missing file
        before = os.fstat(handle.fileno())
    if not stat.S_ISREG(before.st_mode):
        raise ScoreError(f"{args.input}: Parquet is read from a file, not a pipe or a device")
    try:
        file = parquet.open_parquet(args.input)
    except parquet.ParquetUnreadable as exc:
        raise ScoreError(f"{args.input}: {exc}") from exc
    with file, _Output(args.output) as output, ErrorReport(args.errors) as report:
        try:
            parquet.arrow_layout(
                load_manifest(folder), file.schema_arrow
            )  # before loading the model
            scorer = parquet.ArrowScorer(load_checked(folder), file.schema_arrow, args.explain)
        except InvalidInput as exc:
            raise ScoreError(f"{args.input}: {exc}") from exc
        with parquet.writing(output.stream, scorer.schema) as writer:
            try:
                summary = _parquet_rows(scorer, file, writer, report, args)
            except parquet.ParquetUnreadable as exc:
                raise ScoreError(f"{args.input}: {exc}") from exc
        if summary.stopped:
            output.discard()
            return summary
        if summary.rows == 0:
            raise ScoreError(f"{args.input}: has no data rows")
        if _changed(args.input, before):
            raise ScoreError(f"{args.input}: the file changed while it was being scored")
        return summary


def _parquet_rows(
    scorer: ArrowScorer,
    file: Arrow,
    writer: Arrow,
    report: ErrorReport,
    args: argparse.Namespace,
) -> Summary:
    """The results in file order: rows written, errors reported with rows counted from the
    start of the file; with --strict, the first error stops the run."""
    from service.batch import parquet

    summary = Summary()
    batches = parquet.record_batches(file, args.batch_rows or parquet.BATCH_ROWS)
    with (
        contextlib.closing(parquet.scored(scorer, batches, args.workers)) as results,
        _progress(file.metadata.num_rows, args.quiet, "rows") as progress,
    ):
        for result in results:
            errors = [e.shifted(0, summary.rows) for e in result.errors]
            summary.rows += result.rows
            summary.bad_rows += len({e.row for e in errors})
            progress.update(result.rows)
            if errors and args.strict:
                report.add(first_row(errors), args.input)
                summary.stopped = True
                return summary
            report.add(errors, args.input)
            writer.write_batch(result.output)
    return summary


def _changed(path: Path, before: os.stat_result) -> bool:
    """The file is not the one whose footer was read (replaced, rewritten or grown)."""
    try:
        after = os.stat(path)
    except OSError:
        return True
    same = (after.st_ino, after.st_size, after.st_mtime_ns)
    return same != (before.st_ino, before.st_size, before.st_mtime_ns)


def _handoff(source: BinaryIO, workers: int, block_bytes: int) -> Handoff | None:
    """The shared slots for the workers' outputs: one per block in flight (see `_results`),
    each room for a scored block of four times the block size (churn's is 1.6 times).
    """
    if workers <= 1:
        return None
    return Handoff(source.fileno(), _in_flight(workers), 4 * block_bytes)


def _in_flight(workers: int) -> int:
    """Blocks submitted and not yet written: enough to keep every worker busy."""
    return 2 * workers + 1


@contextlib.contextmanager
def _pool(
    folder: Path, header: list[str], workers: int, handoff: Handoff | None, explain: bool = False
) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes, forked at once: before this process imports more or builds its own
    onnxruntime session, so each starts in milliseconds with nothing of onnxruntime's inherited.
    Each loads (and self-checks) its own copy of the model.
    """
    keep_freed_memory()  # before the fork, so the workers inherit it
    if workers <= 1 or handoff is None:
        yield None
        return
    with ProcessPoolExecutor(
        workers, get_context("fork"), _start_worker, (folder, header, handoff, explain)
    ) as pool:
        pool.submit(int)  # with fork, the first task starts every worker
        yield pool


# A block's size, its result and its scored bytes.
Scored = tuple[int, BlockResult, bytes | memoryview]
Pending = tuple[Ticket, Future[tuple[BlockResult, int | None]]]


def _results(
    scorer: BlockScorer,
    workers: tuple[ProcessPoolExecutor | None, Handoff | None],
    source: BinaryIO,
    start: tuple[int, bytes],
    args: argparse.Namespace,
) -> Iterator[Scored]:
    """Each block's size, result and scored bytes, in file order. With workers a few blocks
    are in flight (bounded memory); the scored bytes of one are valid until the next is asked for.

    `start` is where the first block begins in the file and the bytes of it already read.
    """
    pool, handoff = workers
    offset, rest = start
    try:
        stream = blocks(source, rest, args.block_bytes)
        if pool is None or handoff is None:
            for block in stream:
                result = scorer.score(block)
                yield len(block), result, result.output
            _check_end(source)
            return
        pending: deque[Pending] = deque()
        try:
            for index, block in enumerate(stream):
                ticket = handoff.ticket(index, offset, block)
                offset += len(block)
                pending.append((ticket, pool.submit(_score_in_worker, ticket)))
                if len(pending) >= handoff.slots:
                    yield _collected(handoff, *pending.popleft())
            _check_end(source)
            while pending:
                yield _collected(handoff, *pending.popleft())
        finally:
            for _, future in pending:
                future.cancel()
    except (UnterminatedQuote, SourceChanged) as exc:
        raise ScoreError(f"{args.input}: {exc}") from exc
    except OSError as exc:
        raise ScoreError(f"{args.input}: cannot read ({exc.strerror})") from exc


def _check_end(source: BinaryIO) -> None:
    """Once the whole input is read, a regular file must still end where reading ended. If it
    was cut short (workers may have read their blocks before the cut, the parent then met the
    new end early) or is still being written to, what was scored is not the file."""
    size = _size(source)
    if size is not None and size != source.tell():
        raise SourceChanged("the file changed while it was being scored")


def _collected(
    handoff: Handoff, ticket: Ticket, future: Future[tuple[BlockResult, int | None]]
) -> Scored:
    result, parked = future.result()
    scored = result.output if parked is None else handoff.parked(ticket, parked)
    return ticket.length, result, scored


_WORKER: BlockScorer | Exception | None = None
_HANDOFF: Handoff | None = None


def _start_worker(folder: Path, header: list[str], handoff: Handoff, explain: bool) -> None:
    """Each worker process loads (and self-checks) its own copy of the model.

    A failure is kept for the first block rather than raised here (which would print a
    traceback per worker): the parent loads the same model and reports the problem in one line.
    """
    global _WORKER, _HANDOFF
    _HANDOFF = handoff
    try:
        _WORKER = BlockScorer(load_model(folder, threads=1), header, explain)
    except Exception as exc:
        _WORKER = exc


def _score_in_worker(ticket: Ticket) -> tuple[BlockResult, int | None]:
    """The block's result, and the length of its output when that was parked in the slot."""
    if isinstance(_WORKER, Exception):
        raise _WORKER
    assert _WORKER is not None and _HANDOFF is not None, "worker not started"
    result = _WORKER.score(_HANDOFF.read(ticket))
    if _HANDOFF.park(ticket, result.output):
        return replace(result, output=b""), len(result.output)
    return result, None


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

    @property
    def stream(self) -> IO[bytes]:
        """The open file, for a writer that writes to it itself (Parquet's)."""
        assert self._handle is not None
        return self._handle

    def write(self, data: bytes | memoryview) -> None:
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


class _Progress(Protocol):
    def update(self, n: float) -> object: ...


class _NoProgress:
    def update(self, n: float) -> None:
        pass


def _progress(
    size: int | None, quiet: bool, unit: str = "B"
) -> contextlib.AbstractContextManager[_Progress]:
    """Bytes (or rows) read of the input, on stderr, only when stderr is a terminal (or never,
    --quiet).

    tqdm is imported only when the bar is shown: with its metadata lookups it is a noticeable
    part of the command's start-up, itself a large part of scoring a small file.
    """
    if quiet or not sys.stderr.isatty():
        return contextlib.nullcontext(_NoProgress())
    from tqdm import tqdm

    divisor = 1024 if unit == "B" else 1000
    return tqdm(total=size, unit=unit, unit_scale=True, unit_divisor=divisor, file=sys.stderr)


def _open_input(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ScoreError(f"{path}: cannot read ({exc.strerror})") from exc


def _position(source: BinaryIO) -> int:
    """The descriptor's offset: 0 for a file opened by name, but `/dev/fd/0` shares its offset
    with the caller on some systems."""
    with contextlib.suppress(OSError):
        return os.lseek(source.fileno(), 0, os.SEEK_CUR)
    return 0


def _size(source: BinaryIO) -> int | None:
    """The size of a regular file; None for a pipe, a terminal or a device."""
    with contextlib.suppress(OSError):
        status = os.fstat(source.fileno())
        return status.st_size if stat.S_ISREG(status.st_mode) else None
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service score",
        description="Score a CSV or Parquet file with a model of the registry, with the API's "
        "checks. Rows with errors are reported and left out; the others are written with the "
        "prediction columns appended. Parquet in gives Parquet out (-o required).",
        epilog="exit codes: 0 all rows scored; 1 some rows had errors; "
        "2 bad usage, unknown model, unreadable file or a file that changed during the run",
    )
    parser.add_argument(
        "input",
        help="CSV file with a header row, or Parquet file (with --engine spark: any path or URL "
        "Spark reads, a folder of part files included)",
    )
    parser.add_argument("--model", required=True, help="task name, e.g. churn")
    parser.add_argument(
        "--format",
        choices=(CSV, PARQUET),
        help="the input's format (default: parquet for .parquet/.pq files, else csv)",
    )
    parser.add_argument(
        "-o",
        "--output",
        help="scored file, in the input's format (default: stdout); with --engine spark a "
        "directory of part files, replaced when the job succeeds",
    )
    parser.add_argument("--errors", type=Path, help="write row errors to this CSV, not stderr")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad row")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="add contribution_<feature> columns: the change in P(positive label) (multi-class: "
        "P(predicted label)) when the feature is set to its training reference value",
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="registry folder")
    parser.add_argument(
        "--workers",
        type=_positive,
        default=os.cpu_count() or 1,
        help="worker processes, threads for Parquet (default: one per CPU; 1: no others)",
    )
    parser.add_argument(
        "--block-bytes", type=_positive, default=BLOCK_BYTES, help=argparse.SUPPRESS
    )
    parser.add_argument("--batch-rows", type=_positive, help=argparse.SUPPRESS)  # Parquet's
    parser.add_argument(
        "--engine",
        choices=(LOCAL, SPARK),
        default=LOCAL,
        help="local: this machine's processes; spark: an Apache Spark job (the `spark` extra)",
    )
    parser.add_argument(
        "--master",
        help="with --engine spark: the Spark master URL (default: local[WORKERS])",
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
