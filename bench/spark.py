"""`python -m bench.spark`: the `score` command locally and through Spark, side by side (issue 22).

Issue 22 asks for the rows/s of `score` locally and through Spark `local[2]` on 1,000,000 and
5,000,000 churn rows, CSV and Parquet, and the fixed cost of starting Spark; the target is Spark
`local[2]` within 2x of the local scorer's throughput on 5,000,000 Parquet rows.

Per size and format, three sides, each timed run after run in turn (the order reversed every other
run, so a slow spell of the shared machine hits all of them):

* local: a fresh `python -m service score` process (default workers), wall time from outside;
* Spark CLI: a fresh `python -m service score --engine spark --master local[2]` process, the same;
* Spark warm: `read -> score_dataframe -> write` (and the rows read from its report) in one
  long-lived session (`--serve-warm`, started once, warmed up on a small file of each format),
  timed inside that process: the engine's throughput without its start.

The fixed cost of starting Spark is a fresh process (`--start-up`) that imports
`service.batch.spark`, starts a session, runs a first and a second tiny scoring job (2,000
Parquet rows) and stops, timed from outside and in its parts.

Every run's row count is checked (the command's summary line, the warm job's report); on the first
run of every case the Spark outputs (CLI and warm) are compared with the local output: Parquet
column by column, CSV by the prediction columns' text. Before each timed run the bench waits while
a Spark JVM that is not its own runs (`pgrep -f org.apache.spark`), and counts the runs that
overlapped one all the same.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints
import pyarrow.csv as pcsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from bench.__main__ import machine, package_version
from bench.report import write_section
from bench.runner import REPO
from bench.score import input_file, parquet_input

OUTPUTS = REPO / "bench" / ".cache" / "spark"
MODELS = REPO / "models"
TASK = "churn"
HEADING = "## Spark batch scoring (issue 22)"
BEGIN = "<!-- spark:begin (written by `python -m bench.spark`; edit outside these markers) -->"
END = "<!-- spark:end -->"
SUMMARY = re.compile(r"score: ([\d,]+) of ([\d,]+) rows scored")
SPARK_JVM = "org.apache.spark"  # in the command line of every Spark JVM (SparkSubmit)
WAIT_LIMIT = 900.0  # seconds to wait for someone else's Spark before timing regardless
TINY_ROWS = 2_000
TARGET = 2.0  # issue 22: Spark local[2] within 2x of the local scorer's throughput
FORMATS = ("csv", "parquet")
LOCAL, CLI, WARM = "local", "Spark CLI", "Spark warm"
SIDES = (LOCAL, CLI, WARM)


@dataclass
class Case:
    """One input (a size, a format) and the seconds each side took on it."""

    rows: int
    form: str
    source: Path
    seconds: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SIDES})
    partitions: list[int] = field(default_factory=list)  # rows per partition (the warm job's)
    checked: str = ""

    @property
    def name(self) -> str:
        return f"{self.rows:,} {'Parquet' if self.form == 'parquet' else 'CSV'}"

    def output(self, side: str) -> Path:
        stem = f"{side.replace(' ', '-').lower()}-{self.rows}"
        if side == LOCAL:
            return OUTPUTS / f"{stem}.{self.form}"
        return OUTPUTS / f"{stem}-{self.form}.d"  # a directory of part files

    def median(self, side: str) -> float:
        return statistics.median(self.seconds[side])

    def ratio(self, side: str) -> float:
        """Local throughput / this side's throughput (the side's time / local time)."""
        return self.median(side) / self.median(LOCAL)


@dataclass
class Quiet:
    """Waiting for other Spark JVMs (someone else's tests) and the runs that overlapped one."""

    wait: bool
    runs: int = 0
    waited_runs: int = 0
    waited_seconds: float = 0.0
    overlapped: int = 0
    _start_foreign: bool = False
    loads: list[float] = field(default_factory=list)

    def before(self) -> None:
        self.runs += 1
        if self.wait and _foreign_spark():
            self.waited_runs += 1
            started = time.monotonic()
            while _foreign_spark() and time.monotonic() - started < WAIT_LIMIT:
                time.sleep(2)
            self.waited_seconds += time.monotonic() - started
        self._start_foreign = bool(_foreign_spark())
        self.loads.append(os.getloadavg()[0])

    def after(self) -> None:
        if self._start_foreign or _foreign_spark():
            self.overlapped += 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.serve_warm is not None:
        return _serve_warm(args.serve_warm)
    if args.start_up is not None:
        return _start_up_process(args.start_up)
    sizes: list[int] = args.rows or ([1_000_000] if args.quick else [1_000_000, 5_000_000])
    runs: int = 1 if args.quick else args.runs
    forms: list[str] = args.formats
    cases = [Case(rows, form, _source(rows, form, args.seed)) for rows in sizes for form in forms]
    tiny = parquet_input(input_file(TINY_ROWS, args.seed))
    warm_up = [_source(TINY_ROWS, form, args.seed) for form in forms]  # a job of each format
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    quiet = Quiet(wait=not args.no_wait)
    starts: list[dict[str, float]] = []
    with _WarmSession(args.master, warm_up) as warm:
        for run in range(runs):
            starts.append(_fixed_cost(args.master, tiny, quiet))
            for case in cases:
                order = SIDES if run % 2 == 0 else SIDES[::-1]
                for side in order:
                    _time_side(case, side, args.master, warm, quiet)
                if run == 0:
                    case.checked = _check(case)
    text = _document(cases, starts, quiet, args, argv if argv is not None else sys.argv[1:])
    print(text)  # noqa: T201  # the benchmark's output is the table
    if not args.no_write:
        _write(args.out, text)
    return 0


def _source(rows: int, form: str, seed: int) -> Path:
    csv_source = input_file(rows, seed)
    return parquet_input(csv_source) if form == "parquet" else csv_source


# ---- the sides ----------------------------------------------------------------------------------


def _time_side(case: Case, side: str, master: str, warm: _WarmSession, quiet: Quiet) -> None:
    """One timed run of a side; its output is removed first, outside the timing."""
    output = case.output(side)
    _remove(output)
    quiet.before()
    if side == WARM:
        done = warm.job(case.source, case.form, output)
        quiet.after()
        seconds, rows = float(done["seconds"]), int(done["rows"])
        case.partitions = [int(n) for n in done["partitions"]]
    else:
        command = _score_command(case.source, output)
        if side == CLI:
            command += ["--engine", "spark", "--master", master]
        started = time.perf_counter()
        finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        quiet.after()
        if finished.returncode != 0:
            raise SystemExit(f"{case.name}, {side}: exit {finished.returncode}: "
                             f"{finished.stderr[-2000:]}")  # fmt: skip
        summary = SUMMARY.search(finished.stderr)
        rows = int(summary.group(2).replace(",", "")) if summary else -1
    if rows != case.rows:
        raise SystemExit(f"{case.name}, {side}: {rows:,} rows read, not {case.rows:,}")
    case.seconds[side].append(seconds)


def _score_command(source: Path, output: Path, *args: str) -> list[str]:
    command = [sys.executable, "-m", "service", "score", "--models", str(MODELS), str(source)]
    return [*command, "--model", TASK, "-o", str(output), *args]


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class _WarmSession:
    """A long-lived `--serve-warm` process: one Spark session, a job per request (JSON lines)."""

    def __init__(self, master: str, warm_up: list[Path]) -> None:
        self.master = master
        self.warm_up = warm_up
        self.start: dict[str, float] = {}

    def __enter__(self) -> _WarmSession:
        command = [sys.executable, "-m", "bench.spark", "--serve-warm", self.master]
        self.process = subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.start = self._answer()
        for source in self.warm_up:  # first jobs, not timed
            form = "parquet" if source.suffix == ".parquet" else "csv"
            output = OUTPUTS / f"warm-up.{form}.d"
            _remove(output)
            self.job(source, form, output)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the server stops its session and leaves
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def job(self, source: Path, form: str, output: Path) -> dict[str, Any]:
        assert self.process.stdin is not None
        request = {"source": str(source), "form": form, "output": str(output)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the warm Spark session left (exit {self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer


def _serve_warm(master: str) -> int:
    """`--serve-warm MASTER`: start a session, then score each request from stdin, answering on
    stdout with the job's seconds (read, score, write and the report), rows and partitions."""
    answers = _json_out()
    started = time.perf_counter()
    from service.batch import spark

    session = spark.session(master, 2, True)
    answers.write(json.dumps({"session": time.perf_counter() - started}) + "\n")
    answers.flush()
    try:
        for line in sys.stdin:
            request = json.loads(line)
            started = time.perf_counter()
            df = spark.read(session, request["source"], request["form"])
            scoring = spark.score_dataframe(df, MODELS, TASK, text=request["form"] == "csv")
            spark.write(scoring.frame, request["output"], request["form"])
            rows, _ = scoring.report()
            seconds = time.perf_counter() - started
            partitions = scoring.partition_rows()
            answer = {"seconds": seconds, "rows": rows, "partitions": partitions}
            answers.write(json.dumps(answer) + "\n")
            answers.flush()
    finally:
        session.stop()
    return 0


def _json_out() -> IO[str]:
    """The protocol's channel: the real stdout; anything else printed goes to stderr."""
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the JVM's and Spark's own output
    return channel


def _fixed_cost(master: str, tiny: Path, quiet: Quiet) -> dict[str, float]:
    """A fresh `--start-up` process: its wall time from outside and its parts from inside."""
    command = [sys.executable, "-m", "bench.spark", "--start-up", master, "--tiny", str(tiny)]
    quiet.before()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    quiet.after()
    if done.returncode != 0:
        raise SystemExit(f"Spark start-up: exit {done.returncode}: {done.stderr[-2000:]}")
    parts: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall": wall, **parts}


def _start_up_process(master: str) -> int:
    """`--start-up MASTER --tiny FILE`: the fixed cost of Spark, in parts, as JSON on stdout."""
    tiny = Path(_parser().parse_args(sys.argv[1:]).tiny)
    answers = _json_out()
    parts: dict[str, float] = {}
    started = time.perf_counter()
    from service.batch import spark

    parts["import"] = _lap(started)
    session = spark.session(master, 2, True)
    parts["session"] = _lap(started, parts)
    for name in ("first_job", "second_job"):
        output = OUTPUTS / f"start-up-{os.getpid()}.d"
        scoring = spark.score_dataframe(spark.read(session, str(tiny), "parquet"), MODELS, TASK)
        spark.write(scoring.frame, str(output), "parquet")
        shutil.rmtree(output)
        parts[name] = _lap(started, parts)
    session.stop()
    parts["stop"] = _lap(started, parts)
    answers.write(json.dumps(parts) + "\n")
    answers.close()
    return 0


def _lap(started: float, parts: dict[str, float] | None = None) -> float:
    return time.perf_counter() - started - sum((parts or {}).values())


# ---- waiting for other Spark JVMs ---------------------------------------------------------------


def _foreign_spark() -> list[int]:
    """Spark JVMs running that are not this process's descendants (the warm session's JVM)."""
    found = subprocess.run(["pgrep", "-f", SPARK_JVM], capture_output=True, text=True, check=False)
    mine = _descendants(os.getpid())
    return [int(pid) for pid in found.stdout.split() if int(pid) not in mine]


def _descendants(root: int) -> set[int]:
    listing = subprocess.run(
        ["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True
    )
    children: dict[int, list[int]] = {}
    for line in listing.stdout.splitlines():
        pid, parent = (int(word) for word in line.split())
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


# ---- checking the outputs -----------------------------------------------------------------------


def _check(case: Case) -> str:
    """Spark's outputs (CLI and warm) against the local output: Parquet, every column equal; CSV,
    the prediction columns' text equal. Returns what was compared."""
    local = case.output(LOCAL)
    for side in (CLI, WARM):
        if case.form == "parquet":
            _same_parquet(local, case.output(side), f"{case.name}, {side}")
        else:
            _same_csv_predictions(case, local, case.output(side), side)
    if case.form == "parquet":
        return "every column equal"
    return "prediction columns' text equal"


def _same_parquet(local: Path, directory: Path, what: str) -> None:
    expected: Any = pq.read_table(local)
    got: Any = pq.read_table(_parts(directory, ".parquet"))
    if got.column_names != expected.column_names or got.num_rows != expected.num_rows:
        raise SystemExit(f"{what}: {got.num_rows:,} rows of {got.column_names}, not "
                         f"{expected.num_rows:,} of {expected.column_names}")  # fmt: skip
    for name in expected.column_names:
        if not got.column(name).equals(expected.column(name)):
            raise SystemExit(f"{what}: column {name} differs from the local output's")


def _same_csv_predictions(case: Case, local: Path, directory: Path, side: str) -> None:
    names = _header(local)[len(_header(case.source)) :]  # the prediction columns
    options = pcsv.ConvertOptions(
        include_columns=names,
        column_types=dict.fromkeys(names, pa.string()),
        strings_can_be_null=False,
    )
    expected: Any = pcsv.read_csv(local, convert_options=options)
    parts = [pcsv.read_csv(part, convert_options=options) for part in _parts(directory, ".csv")]
    got: Any = pa.concat_tables(parts)
    if not got.equals(expected):
        raise SystemExit(f"{case.name}, {side}: predictions differ from the local output's")


def _header(path: Path) -> list[str]:
    with path.open(newline="") as lines:
        return next(csv.reader(lines))


def _parts(directory: Path, suffix: str) -> list[Path]:
    """The part files in Spark's order (their names number the partitions)."""
    return sorted(p for p in directory.iterdir() if p.name.startswith("part-") and suffix in p.name)


# ---- the table ----------------------------------------------------------------------------------


def _document(
    cases: list[Case],
    starts: list[dict[str, float]],
    quiet: Quiet,
    args: argparse.Namespace,
    argv: list[str],
) -> str:
    command = shlex.join([".venv/bin/python", "-m", "bench.spark", *argv])
    runs = len(cases[0].seconds[LOCAL])
    lines = [
        f"### Spark batch scoring benchmark, generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{command}`. Machine: {machine()}; pyspark {package_version('pyspark')}, "
        f"{_java()}. Input: churn rows from `python -m training generate churn --seed "
        f"{args.seed}` (Parquet: the same rows written once by pyarrow). {runs} run(s) per side, "
        "the sides in turn, the order reversed every other run. Local: a fresh "
        "`python -m service score IN --model churn -o OUT` (default workers). Spark CLI: the "
        f"same with `--engine spark --master {args.master}`, a fresh process, Spark's start "
        "included. Spark warm: `read -> score_dataframe -> write` in one session started "
        "beforehand and warmed up. Seconds are medians (min in brackets); rows/s of the median; "
        "the ratios are local rows/s over Spark's (under 2x meets the target).",
        "",
        f"| input | local s | local rows/s | {CLI} s | {CLI} rows/s | local / CLI "
        f"| {WARM} s | {WARM} rows/s | local / warm | Spark partitions (rows) | Spark output |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for case in cases:
        cells = [case.name]
        for side in SIDES:
            seconds = case.seconds[side]
            cells += [
                f"{statistics.median(seconds):.2f} ({min(seconds):.2f})",
                f"{case.rows / statistics.median(seconds):,.0f}",
            ]
            if side != LOCAL:
                cells.append(f"{case.ratio(side):.2f}x")
        shares = " / ".join(f"{rows:,}" for rows in case.partitions)
        cells += [f"{len(case.partitions)} ({shares})", case.checked]
        lines.append("| " + " | ".join(cells) + " |")
    parts = {key: statistics.median(start[key] for start in starts) for key in starts[0]}
    lines += [
        "",
        f"Fixed cost of starting Spark ({args.master}, a fresh process, median of "
        f"{len(starts)}): {parts['wall']:.2f} s of wall: `import service.batch.spark` "
        f"{parts['import']:.2f} s, session {parts['session']:.2f} s, a first tiny job "
        f"({TINY_ROWS:,} Parquet rows: the Python workers start, the model is shipped and "
        f"loaded) {parts['first_job']:.2f} s, the same job again {parts['second_job']:.2f} s, "
        f"`stop` {parts['stop']:.2f} s, the rest (the interpreter's start and exit) "
        f"{parts['wall'] - sum(v for k, v in parts.items() if k != 'wall'):.2f} s. What a run "
        f"pays besides its job (the wall less the second job): "
        f"{parts['wall'] - parts['second_job']:.1f} s.",
    ]
    key = next((c for c in cases if c.form == "parquet" and c.rows == 5_000_000), None)
    key = key or next((c for c in reversed(cases) if c.form == "parquet"), cases[-1])
    lines += [
        "",
        f"**{key.name} rows, local / Spark {args.master} throughput: {key.ratio(WARM):.2f}x "
        f"for the job in a warm session ({_verdict(key.ratio(WARM))} the issue's target of "
        f"{TARGET:g}x); {key.ratio(CLI):.2f}x end to end through the CLI, Spark's start "
        f"included ({_verdict(key.ratio(CLI))}).**",
        "",
        _quiet_note(quiet),
    ]
    return "\n".join(lines)


def _verdict(ratio: float) -> str:
    return "meets" if ratio <= TARGET else "misses"


def _quiet_note(quiet: Quiet) -> str:
    loads = sorted(quiet.loads)
    note = (
        f"Load average (1 min) before the {quiet.runs} timed runs: median "
        f"{statistics.median(loads):.1f}, max {loads[-1]:.1f}. "
    )
    if not quiet.wait:
        return note + "Other Spark JVMs were not waited for (`--no-wait`)."
    waited = (
        f"The bench waited {quiet.waited_seconds:.0f} s in all, before {quiet.waited_runs} runs, "
        "for another Spark JVM to finish; "
    )
    if quiet.overlapped:
        return note + waited + f"{quiet.overlapped} run(s) overlapped one all the same."
    return note + waited + "no run overlapped one."


def _java() -> str:
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    except OSError:
        return "java ?"
    first = next(iter(done.stderr.splitlines()), "?")
    match = re.search(r'"([^"]+)"', first)
    return f"Java {match.group(1) if match else first}"


def _write(path: Path, text: str) -> None:
    """The generated block in the section of issue 22, which is added at the end if missing."""
    old = path.read_text() if path.exists() else "# Measured results\n"
    if BEGIN not in old and HEADING not in old:
        path.write_text(f"{old.rstrip()}\n\n{HEADING}\n")
    write_section(path, text, (BEGIN, END))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.spark", description=__doc__)
    parser.add_argument(
        "--rows", type=int, nargs="+", help="input sizes (default: 1,000,000 and 5,000,000)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="one run, 1,000,000 rows unless --rows is given"
    )
    parser.add_argument(
        "--formats", nargs="+", choices=FORMATS, default=list(FORMATS), help="csv and parquet"
    )
    parser.add_argument("--seed", type=int, default=7, help="generator seed of the input")
    parser.add_argument("--master", default="local[2]", help="the Spark master (local[2])")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for other Spark JVMs to finish"
    )
    parser.add_argument("--serve-warm", metavar="MASTER", help=argparse.SUPPRESS)
    parser.add_argument("--start-up", metavar="MASTER", help=argparse.SUPPRESS)
    parser.add_argument("--tiny", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
