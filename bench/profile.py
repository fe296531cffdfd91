"""`python -m bench.profile`: where a worker's time goes under a benchmark case, by py-spy.

The benchmark says how fast; this says why, for the targets it cannot meet. It starts our service
as the benchmark does (one worker, the deployed defaults), loads it with wrk, one case at a time,
and meanwhile samples the worker with py-spy, native frames included, so time spent inside
msgspec, numpy, onnxruntime or uvloop shows as such (`bench.spy` sorts the samples). py-spy
stops the worker for each sample, so the load's figures here are lower than the benchmark's;
the shares are what this is for.

Loopback only, every load bounded in time, the server stopped by PID (as `python -m bench`).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import report, spy
from bench.__main__ import CACHE, committed_churn, machine, package_version
from bench.cases import BATCH_SIZES, GRPC, OURS, V1, V2
from bench.load import LoadResult, run_grpc_load, run_wrk, wrk_path
from bench.payloads import Body
from bench.procs import Server
from bench.runner import WARM_UP_SECONDS, Setup, started

# The benchmark's cases whose targets are not met on the 2-core machine (bench/RESULTS.md).
DEFAULT_CASES = ("v1-1:16", "v1-10000:2")
KINDS = {"v1": "v1 JSON", "csv": "v1 CSV", "v2": "V2", "grpc": "gRPC ModelInfer"}
TOP_ROWS = 15
BEGIN = "<!-- profile:begin (written by `python -m bench.profile`; edit outside these markers) -->"
END = "<!-- profile:end -->"
log = logging.getLogger("bench")


class ProfileFailed(RuntimeError):
    """py-spy is missing, could not attach to the worker, or wrote no samples."""


@dataclass(frozen=True)
class ProfileCase:
    """A body of the benchmark (`v1-1`, `csv-10000`, `v2-1000`, `grpc-1`, ...) at some
    connections (for `grpc`, ModelInfer calls in flight on the gRPC port)."""

    body: str
    connections: int

    @classmethod
    def parse(cls, text: str) -> ProfileCase:
        """`v1-10000:2` -> body v1-10000, 2 connections."""
        body, _, connections = text.partition(":")
        kind, _, records = body.partition("-")
        sizes = {str(size) for size in (1, *BATCH_SIZES)}
        if kind not in KINDS or records not in sizes or not connections.isdigit():
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected BODY:CONNECTIONS with BODY one of {', '.join(KINDS)}, a dash "
                f"and one of {sorted(sizes, key=int)} records (e.g. v1-10000:2)"
            )
        return cls(body, int(connections))

    @property
    def path(self) -> str:
        kind = self.body.split("-")[0]
        return {"v2": V2, "grpc": GRPC}.get(kind, V1)

    @property
    def records(self) -> int:
        return int(self.body.split("-")[1])

    @property
    def title(self) -> str:
        kind = KINDS[self.body.split("-")[0]]
        plural = "s" * (self.records > 1)
        return f"{kind}, {self.records:,} record{plural}, {self.connections} connections"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    wrk_path()
    py_spy = py_spy_path()
    version_dir, manifest, bodies = committed_churn()
    setup = Setup(CACHE, bodies, args.seconds, version_dir)
    results: list[tuple[ProfileCase, LoadResult, spy.Profile]] = []
    with started(setup, OURS) as server:
        (worker,) = server.workers()
        for case in args.case or [ProfileCase.parse(text) for text in DEFAULT_CASES]:
            load_for = _loader(server, bodies[case.body], case)
            load_for(WARM_UP_SECONDS)
            load, profile = record(py_spy, worker, args.rate, load_for, args.seconds)
            log.info("%s: %d samples, %.0f req/s", case.title, profile.total, load.rate)
            results.append((case, load, profile))
    command = shlex.join([".venv/bin/python", "-m", "bench.profile", *(argv or sys.argv[1:])])
    text = document(results, command, args.rate, args.seconds, manifest.version)
    print(text)  # noqa: T201  # the command's output is the tables
    if args.out is not None:
        report.write_section(args.out, text, (BEGIN, END))
        log.info("wrote %s", args.out)
    return 0


def py_spy_path() -> str:
    """The virtualenv's py-spy (a dev dependency), else one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise ProfileFailed("py-spy is not installed (pip install py-spy, a dev dependency)")
    return found


def record(
    py_spy: str, pid: int, rate: int, load_for: Callable[[float], LoadResult], seconds: float
) -> tuple[LoadResult, spy.Profile]:
    """Sample `pid` for `seconds` while `load_for` (wrk, or the gRPC load) loads it, one second
    longer, so the load covers the samples."""
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "samples.txt"
        argv = [
            py_spy, "record", "--pid", str(pid), "--native", "--rate", str(rate),
            "--duration", str(max(1, round(seconds))), "--format", "raw", "--output", str(raw),
        ]  # fmt: skip
        sampler = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            load = load_for(seconds + 1)
            output, _ = sampler.communicate(timeout=seconds + 60)
        finally:
            if sampler.poll() is None:
                sampler.kill()
                sampler.wait()
        if sampler.returncode != 0 or not raw.exists():
            hint = " (py-spy needs ptrace: run as root, or set kernel.yama.ptrace_scope to 0)"
            text = output.decode(errors="replace")[-800:]
            raise ProfileFailed(f"py-spy failed ({sampler.returncode}): {text}" + hint)
        with raw.open() as lines:
            profile = spy.read_raw(lines)
    if not profile.total:
        raise ProfileFailed(f"py-spy took no samples of pid {pid}")
    return load, profile


def _loader(server: Server, body: Body, case: ProfileCase) -> Callable[[float], LoadResult]:
    """A bounded load of the case for some seconds: wrk, or `bench.grpc_load` for gRPC."""

    def load_for(seconds: float) -> LoadResult:
        if case.path == GRPC:
            return run_grpc_load(server.grpc_address, body, case.connections, seconds)
        return run_wrk(server.url + case.path, body, case.connections, seconds)

    return load_for


def document(
    results: list[tuple[ProfileCase, LoadResult, spy.Profile]],
    command: str,
    rate: int,
    seconds: float,
    version: str,
) -> str:
    parts = [
        f"### Where the time goes, generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{command}`. Model: churn {version}. Machine: {machine()}. "
        f"py-spy {package_version('py-spy')} (`--native`, {rate} Hz, {seconds:g} s per case) "
        "on the one worker of `python -m service` (deployed defaults), while wrk (or "
        "`bench.grpc_load`, for gRPC) loads it.",
        "",
        "Each busy sample goes to the innermost function of the service on the stack (where) and "
        "to the package running at that moment (running). Not busy: waiting for the GIL, or idle "
        "(waiting for I/O or for work). Sampling pauses the worker, so its rate here is lower "
        "than in the benchmark.",
    ]
    for case, load, profile in results:
        parts += ["", f"#### {case.title}", "", _summary(load, profile, case), ""]
        parts += [
            _where_table(profile),
            "",
            _totals("By function of the service", profile.by_where(), profile),
        ]
        parts += ["", _totals("By package running", profile.by_package(), profile)]
    return "\n".join(parts)


def _summary(load: LoadResult, profile: spy.Profile, case: ProfileCase) -> str:
    return (
        f"Load while sampled: {load.rate:,.1f} req/s ({load.rate * case.records:,.0f} rows/s), "
        f"p99 {load.p99_ms:.1f} ms, errors {load.errors}. Samples: {profile.total:,}; busy "
        f"{_share(profile.busy_total, profile.total)}, waiting for the GIL "
        f"{_share(profile.gil_wait, profile.total)}, idle {_share(profile.idle, profile.total)}."
    )


def _where_table(profile: spy.Profile) -> str:
    lines = ["| where (service) | running | share of busy |", "| --- | --- | ---: |"]
    busy = profile.busy_total
    shown = profile.busy.most_common(TOP_ROWS)
    for (where, running), count in shown:
        lines.append(f"| {where} | {running} | {_share(count, busy)} |")
    rest = busy - sum(count for _, count in shown)
    if rest:
        lines.append(f"| (the rest) | | {_share(rest, busy)} |")
    return "\n".join(lines)


def _totals(title: str, counts: Counter[str], profile: spy.Profile) -> str:
    busy = profile.busy_total
    shares = [f"{name} {_share(n, busy)}" for name, n in counts.most_common(TOP_ROWS)]
    return f"{title}: " + ", ".join(shares) + "."


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "0.0%"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument(
        "--case",
        action="append",
        type=ProfileCase.parse,
        help=f"BODY:CONNECTIONS, repeatable (default: {' '.join(DEFAULT_CASES)})",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="sampling time per case")
    parser.add_argument("--rate", type=int, default=50, help="samples per second")
    parser.add_argument(
        "--out",
        type=Path,
        help="also replace the profile block of this file (e.g. bench/RESULTS.md)",
    )
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
