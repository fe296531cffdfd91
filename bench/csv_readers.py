"""`python -m bench.csv_readers`: pyarrow against the project's CSV code (issue 17), in one run.

Issue 17 asks whether pyarrow's CSV reader and writer can replace the hand-written ones. Two
measurements, each side by side, alternating the sides, reporting medians:

1. Batch scoring of generated churn rows: `python -m service score` (byte-level reader, worker
   processes) against a pyarrow pipeline defined here (streaming `open_csv` with string columns,
   Arrow casts, the service's Validator, one `session.run` per batch, `write_csv`, batches in a
   thread pool), each run a fresh process timed from outside; outputs compared byte for byte.
   The same pipeline also runs Parquet in -> Parquet out.
2. The v1 API's CSV work in process (decode, check, predict, encode) on bodies of 1 to 10,000
   rows: today's `predict_table` against the stdlib `csv` module and pyarrow (one thread); this
   gives the size from which pyarrow is the quicker reader.

The pipeline is the happy path only (a failed cast or an unknown category stops it): enough to
time the libraries. Only light modules are imported at the top, because each pyarrow run is a
fresh `python -m bench.csv_readers --pipeline ...` process whose start-up is timed (the bench
helpers import training, which imports scikit-learn).
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import io
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pcsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from service.codecs.csv import (
    encode_rows,
    layout,
    parse_cells,
    prediction_cells,
    prediction_header,
)
from service.codecs.probabilities import FLAG_SEPARATOR, needs_repr, rounded
from service.model import LoadedModel, load_model
from service.validation import Batch

REPO = Path(__file__).resolve().parents[1]  # as bench.runner.REPO, whose import pulls in training
CACHE = REPO / "bench" / ".cache" / "csv_readers"
BEGIN = (
    "<!-- csv-readers:{rows}:begin (written by `python -m bench.csv_readers`; "
    "edit outside these markers) -->"
)
END = "<!-- csv-readers:{rows}:end -->"
BLOCK_BYTES = 4 << 20  # CSV bytes per batch of the streaming reader
PARQUET_BATCH_ROWS = 65_536  # about as many rows as a CSV block
API_SIZES = (1, 100, 300, 1_000, 3_000, 10_000)
WRITE_OPTIONS = pcsv.WriteOptions(include_header=False, quoting_style="none", eol="\r\n")
PIPELINES = ("csv", "csv-reader-threads", "parquet")
Arrow = Any  # a pyarrow array, batch or table (untyped)
# Runs a timed command from a small process: a child forked from this one (hundreds of MiB
# once training is imported) would report that size as its peak RSS, which survives exec.
LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
cpu = usage.ru_utime + usage.ru_stime
print(wall, cpu, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


class ArrowScorer:
    """Scores Arrow batches of one file (or body) with one model: checks, one run, the answer."""

    def __init__(self, model: LoadedModel, header: list[str]) -> None:
        self.model = model
        self.positions = layout(model.manifest, header).positions
        self.names = [f"c{i}" for i in range(len(header))]
        self.out_names = header + prediction_header(model, {h.strip().lower() for h in header})
        self.header_line = encode_rows([self.out_names])
        self.labels = pa.array(model.manifest.labels)
        self.allowed = {
            f.name: (pa.array(f.categories), np.asarray(f.categories, dtype=object))
            for f in model.validator.categorical
        }

    def read_options(self, threads: bool) -> Arrow:
        return pcsv.ReadOptions(
            column_names=self.names, skip_rows=1, use_threads=threads, block_size=BLOCK_BYTES
        )

    def convert_options(self) -> Arrow:
        """Every column as text: pass-through cells are written back as they came."""
        types = dict.fromkeys(self.names, pa.string())
        return pcsv.ConvertOptions(column_types=types, strings_can_be_null=False)

    def csv_bytes(self, batch: Arrow) -> bytes:
        """The batch's rows with the prediction cells appended, as CSV lines."""
        columns = [*batch.columns, *self.appended(self.check(batch), text=True)]
        sink = io.BytesIO()
        table = pa.Table.from_arrays(columns, names=[f"o{i}" for i in range(len(columns))])
        pcsv.write_csv(table, sink, WRITE_OPTIONS)
        return sink.getvalue()

    def parquet_schema(self, schema: Arrow) -> Arrow:
        kinds = [pa.string(), *[pa.float64()] * (1 + len(self.model.manifest.labels)), pa.string()]
        for name, kind in zip(self.out_names[len(schema) :], kinds, strict=True):
            schema = schema.append(pa.field(name, kind))
        return schema

    def parquet_batch(self, batch: Arrow) -> Arrow:
        columns = [*batch.columns, *self.appended(self.check(batch), text=False)]
        return pa.RecordBatch.from_arrays(columns, schema=self.parquet_schema(batch.schema))

    def check(self, batch: Arrow) -> Batch:
        """Numbers cast by Arrow, categories looked up by Arrow, then the service's own rules."""
        validator = self.model.validator
        raw = {f.name: batch.column(self.positions[f.name]) for f in validator.features}
        numbers = [pc.cast(raw[f.name], pa.float64()).to_numpy() for f in validator.numeric]
        matrix = np.vstack(numbers) if numbers else np.empty((0, batch.num_rows))
        categories = {f.name: self._category(f.name, raw[f.name]) for f in validator.categorical}
        return validator.assemble(batch.num_rows, matrix, categories, raw, known_categories=True)

    def appended(self, batch: Batch, text: bool) -> list[Arrow]:
        """label, probability, p_<label>..., out_of_range: text for CSV, numbers for Parquet."""
        prediction = self.model.predict(batch)
        values = rounded(prediction.probabilities)
        as_column = _probability_text if text else pa.array
        columns = [as_column(np.ascontiguousarray(column)) for column in values.T]
        if self.model.manifest.kind == "binary":
            chosen = columns[self.model.manifest.positive_index]
        else:
            chosen = as_column(values[np.arange(len(values)), prediction.classes])
        labels = pc.take(self.labels, pa.array(prediction.classes))
        return [labels, chosen, *columns, _flags(batch)]

    def _category(self, name: str, column: Arrow) -> npt.NDArray[np.object_]:
        """The allowed values themselves, by index (so the Validator need not check them again)."""
        allowed, objects = self.allowed[name]
        index = pc.index_in(column, value_set=allowed)
        if index.null_count:
            raise ValueError(f"{name}: a value outside the manifest's categories")
        found: npt.NDArray[np.object_] = objects[index.to_numpy()]
        return found


def score_csv(folder: Path, source: Path, target: Path, width: int, reader_threads: bool) -> None:
    """The pyarrow pipeline from CSV to CSV: `width` batches at a time, written in order."""
    model = load_model(folder, threads=1)
    with source.open("rb") as file:
        scorer = ArrowScorer(model, read_header(file))
    options = scorer.read_options(reader_threads)
    reader = pcsv.open_csv(source, options, convert_options=scorer.convert_options())
    with target.open("wb") as out:
        out.write(scorer.header_line)
        in_order(reader, scorer.csv_bytes, out.write, width)


def score_parquet(folder: Path, source: Path, target: Path, width: int) -> None:
    """The same pipeline from Parquet to Parquet (input columns kept, predictions as numbers)."""
    model = load_model(folder, threads=1)
    parquet = pq.ParquetFile(source)
    scorer = ArrowScorer(model, parquet.schema_arrow.names)
    batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS)
    with pq.ParquetWriter(target, scorer.parquet_schema(parquet.schema_arrow)) as writer:
        in_order(batches, scorer.parquet_batch, writer.write_batch, width)


def in_order(
    batches: Iterable[Arrow], work: Callable[[Arrow], Any], write: Callable[[Any], object], n: int
) -> None:
    """Work on `n` batches at once in threads (Arrow and onnxruntime release the GIL) while the
    next is read; write the results in input order."""
    pending: deque[Future[Any]] = deque()
    with ThreadPoolExecutor(n) as pool:
        for batch in batches:
            pending.append(pool.submit(work, batch))
            if len(pending) > n:
                write(pending.popleft().result())
        for future in pending:
            write(future.result())


def arrow_answer(model: LoadedModel, body: bytes) -> bytes:
    """An API CSV body answered by pyarrow (one thread: a request is small)."""
    scorer = ArrowScorer(model, read_header(io.BytesIO(body)))
    options = scorer.read_options(threads=False)
    source = pa.BufferReader(body)
    reader = pcsv.open_csv(source, options, convert_options=scorer.convert_options())
    return scorer.header_line + b"".join(map(scorer.csv_bytes, reader))


def stdlib_answer(model: LoadedModel, body: bytes) -> bytes:
    """An API CSV body answered with the stdlib `csv` module both ways, through the same rules."""
    text = io.StringIO(body.decode("utf-8-sig"), newline="")
    header, *rows = (row for row in csv.reader(text, strict=True) if row)
    positions = layout(model.manifest, header).positions
    columns = list(zip(*rows, strict=True))
    validator = model.validator
    raw = {f.name: list(columns[positions[f.name]]) for f in validator.features}
    matrix = np.vstack([parse_cells(f, raw[f.name])[0] for f in validator.numeric])
    categories = {f.name: raw[f.name] for f in validator.categorical}
    batch = validator.assemble(len(rows), matrix, categories, raw)
    cells = prediction_cells(model, batch, model.predict(batch))
    out_header = header + prediction_header(model, {h.strip().lower() for h in header})
    return encode_rows([out_header, *(row + extra for row, extra in zip(rows, cells, strict=True))])


def read_header(file: BinaryIO) -> list[str]:
    text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    try:
        return next(csv.reader(text))
    finally:
        text.detach()


def _probability_text(values: npt.NDArray[np.float64]) -> Arrow:
    """Arrow's shortest round-trip text, which is `repr`'s but for whole numbers ("1", not "1.0")
    and exponent forms; those few cells are written by `repr`, as the service writes them."""
    text = pc.cast(pa.array(values), pa.string())
    odd = needs_repr(values) | (values == np.trunc(values))
    if odd.any():
        fixed = pa.array([repr(value) for value in values[odd].tolist()], pa.string())
        text = pc.replace_with_mask(text, pa.array(odd), fixed)
    return text


def _flags(batch: Batch) -> Arrow:
    """out_of_range: the features outside the training range; empty for most rows."""
    cells = np.full(batch.size, None, dtype=object)
    for row, names in batch.flagged():
        cells[row] = FLAG_SEPARATOR.join(names)
    return pc.fill_null(pa.array(cells, pa.string()), "")


# ---- batch scoring: fresh processes, timed from outside -------------------------------------


@dataclass
class Side:
    """One way of scoring the file, and what its runs measured."""

    name: str
    command: list[str]
    output: Path
    start_code: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)
    peaks: list[int] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    same: list[bool] = field(default_factory=list)


def batch_sides(folder: Path, source: Path, parquet: Path, workers: int) -> list[Side]:
    today = [sys.executable, "-m", "service", "score", "--models", str(REPO / "models")]
    today += ["--model", "churn", "--workers", str(workers), str(source), "-o"]
    ours = [sys.executable, "-m", "bench.csv_readers", "--workers", str(workers), "--pipeline"]
    arrow_start = "import os, bench.csv_readers; os._exit(0)"
    today_start = "import os, service.batch.cli; os._exit(0)"
    sides = [Side(f"today: `service score`, {workers} worker processes", today,
                  CACHE / "out-today.csv", today_start)]  # fmt: skip
    made = {
        "csv": (f"pyarrow CSV, {workers} threads", source, "csv"),
        "csv-reader-threads": ("pyarrow CSV, the reader's threads, 1 thread", source, "csv"),
        "parquet": (f"pyarrow Parquet -> Parquet, {workers} threads", parquet, "parquet"),
    }
    for kind, (name, src, suffix) in made.items():
        command = [*ours, kind, str(folder), str(src)]
        sides.append(Side(name, command, CACHE / f"out-{kind}.{suffix}", arrow_start))
    return sides


def run_batch(
    sides: list[Side], repeats: int, reference: Path, predictions: Callable[[], Arrow]
) -> None:
    """Every side once per round, the order reversed every other round; each output checked."""
    for round_ in range(repeats):
        for side in sides if round_ % 2 == 0 else sides[::-1]:
            busy = _machine_cpu()
            wall, cpu, peak = _timed([*side.command, str(side.output)], side.output)
            side.others.append(max(0.0, _machine_cpu() - busy - cpu))
            side.walls.append(wall)
            side.cpus.append(cpu)
            side.peaks.append(peak)
            if not reference.exists():
                os.replace(side.output, reference)  # today's first output (round 0 starts there)
                side.same.append(True)
            elif side.output.suffix == ".parquet":
                written = pq.read_table(side.output, columns=predictions().column_names)
                side.same.append(written.equals(predictions()))
            else:
                side.same.append(filecmp.cmp(side.output, reference, shallow=False))
            side.output.unlink(missing_ok=True)
            side.starts.append(_timed([sys.executable, "-c", side.start_code], None)[0])


def _timed(command: list[str], output: Path | None) -> tuple[float, float, int]:
    """Wall s, CPU s and peak RSS KiB (the largest process of the tree) of one fresh process;
    the old output is removed first, outside the timing."""
    if output is not None:
        output.unlink(missing_ok=True)
    launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, *command]
    done = subprocess.run(launcher, cwd=REPO, capture_output=True, text=True, check=False)
    wall, cpu, peak, code = done.stdout.split() if done.returncode == 0 else ("", "", "", "?")
    if code != "0":
        raise SystemExit(f"{shlex.join(command)}: exit {code}: {done.stderr[-2000:]}")
    return float(wall), float(cpu), int(peak)


def _machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (/proc/stat), to show what else ran."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def batch_table(sides: list[Side], rows: int) -> str:
    best, base = min(sides[0].walls), statistics.median(sides[0].walls)
    lines = [
        "| side | wall s (min / median) | rows/s (median) | x today (best / median) "
        "| CPU s (median) | others' CPU s (median) | peak RSS MiB | start-up s | output |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for side in sides:
        low, middle = min(side.walls), statistics.median(side.walls)
        cpu, others = statistics.median(side.cpus), statistics.median(side.others)
        lines.append(
            f"| {side.name} | {low:.2f} / {middle:.2f} | {rows / middle:,.0f} "
            f"| {best / low:.2f} / {base / middle:.2f} | {cpu:.2f} | {others:.2f} "
            f"| {max(side.peaks) / 1024:.0f} | {statistics.median(side.starts):.2f} "
            f"| {_same_text(side)} |"
        )
    return "\n".join(lines)


def _same_text(side: Side) -> str:
    what = "same predictions" if side.output.suffix == ".parquet" else "byte-identical"
    if all(side.same):
        return f"{what} ({len(side.same)}/{len(side.same)})"
    return f"**differs** ({side.same.count(False)} of {len(side.same)} runs)"


def parquet_input(source: Path) -> Path:
    """The CSV written once as Parquet, with the column types Arrow infers (as a user's would)."""
    path = CACHE / f"{source.stem}.parquet"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        pq.write_table(pcsv.read_csv(source), partial)
        os.replace(partial, path)
    return path


def reference_predictions(reference: Path, model: LoadedModel, header: list[str]) -> Arrow:
    """The appended columns of today's CSV answer, as Arrow reads them (numbers as float64)."""
    names = prediction_header(model, {h.strip().lower() for h in header})
    types = {name: pa.float64() for name in names[1:-1]}
    types |= {names[0]: pa.string(), names[-1]: pa.string()}
    options = pcsv.ConvertOptions(
        include_columns=names, column_types=types, strings_can_be_null=False
    )
    return pcsv.read_csv(reference, convert_options=options)


# ---- the API's CSV work, in process ---------------------------------------------------------


@dataclass
class ApiRow:
    """One body size: milliseconds per answer by side (medians of the rounds)."""

    rows: int
    size: int
    ms: dict[str, float]
    same: bool


def run_api(
    model: LoadedModel, bodies: dict[int, bytes], repeats: int, seconds: float, chunk: int
) -> list[ApiRow]:
    from service.codecs.csv import predict_table  # today's API path (parent process only)

    answers: dict[str, Callable[[bytes], bytes]] = {
        "today": lambda body: b"".join(predict_table(model, body, chunk).output()),
        "stdlib csv": lambda body: stdlib_answer(model, body),
        "pyarrow": lambda body: arrow_answer(model, body),
    }
    table: list[ApiRow] = []
    for rows, body in bodies.items():
        outputs = {answer(body) for answer in answers.values()}  # also the warm-up
        samples: dict[str, list[float]] = {name: [] for name in answers}
        for round_ in range(repeats):
            for name in list(answers) if round_ % 2 == 0 else list(answers)[::-1]:
                samples[name].append(_median_ms(answers[name], body, seconds))
        ms = {name: statistics.median(values) for name, values in samples.items()}
        table.append(ApiRow(rows, len(body), ms, len(outputs) == 1))
    return table


def _median_ms(answer: Callable[[bytes], bytes], body: bytes, seconds: float) -> float:
    """One side's median call over a block of calls lasting `seconds` (and at least three): a
    block, not single calls in turn, because a server repeats one path with its caches warm."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < 3 or time.perf_counter() < deadline:
        started = time.perf_counter()
        answer(body)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def api_table(table: list[ApiRow]) -> str:
    lines = [
        "| rows | body KiB | today ms | stdlib csv ms | pyarrow ms | today / pyarrow "
        "| stdlib / pyarrow | same bytes |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in table:
        today, stdlib, arrow = row.ms["today"], row.ms["stdlib csv"], row.ms["pyarrow"]
        lines.append(
            f"| {row.rows:,} | {row.size / 1024:,.1f} | {today:.3f} | {stdlib:.3f} | {arrow:.3f} "
            f"| {today / arrow:.2f} | {stdlib / arrow:.2f} | {'yes' if row.same else '**no**'} |"
        )
    return "\n".join(lines)


def crossover(table: list[ApiRow], slower: str) -> str:
    """From which size pyarrow stays quicker than `slower`, interpolated on log scales."""
    ratios = [(row.rows, row.ms[slower] / row.ms["pyarrow"]) for row in table]
    losing = [i for i, (_, ratio) in enumerate(ratios) if ratio < 1.0]
    if not losing:
        return f"pyarrow is quicker than {slower} at every size measured"
    last = losing[-1]
    if last == len(ratios) - 1:
        return f"pyarrow is slower than {slower} up to {ratios[-1][0]:,} rows"
    (a, ra), (b, rb) = ratios[last], ratios[last + 1]
    share = -math.log(ra) / (math.log(rb) - math.log(ra))
    point = math.exp(math.log(a) + share * (math.log(b) - math.log(a)))
    return (
        f"pyarrow overtakes {slower} between {a:,} and {b:,} rows "
        f"(about {point:,.0f} rows, interpolated on log scales)"
    )


# ---- the command ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.pipeline is not None:
        _pipeline(args.pipeline, args.workers)
    # The bench helpers import training (scikit-learn, pandas): only this parent process needs them.
    from bench.__main__ import committed_churn
    from bench.report import write_section
    from bench.score import input_file

    folder, _, _ = committed_churn()
    model = load_model(folder, threads=1)
    parts = [_heading(args, argv if argv is not None else sys.argv[1:])]
    if not args.no_batch:
        parts.append(_batch_part(folder, model, input_file(args.rows, args.seed), args))
    if not args.no_api:
        parts.append(_api_part(model, args))
    text = "\n\n".join(parts)
    print(text)  # noqa: T201  # the benchmark's output is the tables
    if not args.no_write:
        markers = (BEGIN.format(rows=args.rows), END.format(rows=args.rows))
        write_section(args.out, text, markers)
    return 0


def _pipeline(spec: list[str], workers: int) -> NoReturn:
    """The child process of a pyarrow run: score one file, then leave as `service score` does."""
    kind, folder, source, target = spec[0], Path(spec[1]), Path(spec[2]), Path(spec[3])
    if kind == "parquet":
        score_parquet(folder, source, target, workers)
    else:
        threaded = kind == "csv-reader-threads"
        score_csv(folder, source, target, 1 if threaded else workers, threaded)
    os._exit(0)


def _heading(args: argparse.Namespace, argv: list[str]) -> str:
    from bench.__main__ import machine, package_version

    command = shlex.join([".venv/bin/python", "-m", "bench.csv_readers", *argv])
    versions = ", ".join(f"{n} {package_version(n)}" for n in ("pyarrow", "onnxruntime", "numpy"))
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    return (
        f"### pyarrow against the project's CSV code, generated {when} UTC\n\n"
        f"Command: `{command}`. Machine: {machine()}. {versions}; Python "
        f"{platform.python_version()}. {args.repeats} rounds; each visits every side, in reverse "
        "order every other round; figures are medians over the rounds."
    )


def _batch_part(folder: Path, model: LoadedModel, source: Path, args: argparse.Namespace) -> str:
    CACHE.mkdir(parents=True, exist_ok=True)
    parquet = parquet_input(source)
    reference = CACHE / "reference.csv"
    reference.unlink(missing_ok=True)
    with source.open("rb") as file:
        header = read_header(file)
    cached: list[Arrow] = []

    def predictions() -> Arrow:
        if not cached:
            cached.append(reference_predictions(reference, model, header))
        return cached[0]

    sides = batch_sides(folder, source, parquet, args.workers)
    run_batch(sides, args.repeats, reference, predictions)
    reference.unlink()
    return (
        f"Batch scoring: {args.rows:,} churn rows from `python -m training generate churn "
        f"--seed {args.seed}` ({source.stat().st_size / 2**20:,.1f} MiB of CSV; the Parquet input "
        f"is that file written once by pyarrow with inferred types, "
        f"{parquet.stat().st_size / 2**20:,.1f} MiB). Each run is a fresh process timed from "
        "outside (interpreter start and imports included; start-up alone beside it); others' CPU "
        "is what the rest of the machine used meanwhile (/proc/stat; the machine is shared). CSV "
        "outputs are compared byte for byte with today's; the Parquet output's prediction columns "
        "with today's CSV cells read as numbers.\n\n" + batch_table(sides, args.rows)
    )


def _api_part(model: LoadedModel, args: argparse.Namespace) -> str:
    from bench.payloads import churn_records, v1_csv
    from service.settings import Settings

    records = churn_records(model.manifest, max(args.api_sizes))
    bodies = {rows: v1_csv(records[:rows]) for rows in args.api_sizes}
    chunk = Settings().max_batch_records
    busy, own = _machine_cpu(), time.process_time()
    table = run_api(model, bodies, args.repeats, args.api_seconds, chunk)
    others = max(0.0, _machine_cpu() - busy - (time.process_time() - own))
    return (
        "API CSV bodies, in process: decode, check, one `session.run`, encode the answer. "
        "Bodies as the serving benchmark's (`bench/payloads.py`: the generator's records, seed 7). "
        "today: `service.codecs.csv.predict_table` + `TableResult.output()` (the block reader from "
        "12 KiB, the csv module below); stdlib csv: `csv.reader` and `csv.writer`; pyarrow: "
        "`open_csv` with `use_threads=False` and `write_csv`. Both library sides feed the same "
        "`Validator.assemble`. Each side runs blocks of calls lasting "
        f"{args.api_seconds:g} s, the sides in turn, {args.repeats} rounds; each figure is the "
        "median over the rounds of a block's median call. The rest of the machine used "
        f"{others:.1f} s of CPU meanwhile. "
        "x columns: how many times quicker pyarrow is.\n\n"
        + api_table(table)
        + "\n\nCrossover: "
        + crossover(table, "stdlib csv")
        + "."
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.csv_readers", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the scored file")
    parser.add_argument("--seed", type=int, default=7, help="generator seed of the file")
    parser.add_argument("--repeats", type=int, default=5, help="rounds over every side")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes of `service score`, threads of the pipeline")  # fmt: skip
    parser.add_argument("--api-sizes", type=int, nargs="+", default=list(API_SIZES),
                        help="rows of the API bodies")  # fmt: skip
    parser.add_argument("--api-seconds", type=float, default=0.2,
                        help="seconds of calls per API figure")  # fmt: skip
    parser.add_argument("--no-batch", action="store_true", help="skip batch scoring")
    parser.add_argument("--no-api", action="store_true", help="skip the API bodies")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--pipeline", nargs=4, help=argparse.SUPPRESS)  # a pyarrow run's child
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
