"""The results table (Markdown), the targets checked from it, and the RESULTS.md section."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from statistics import mean

from bench.cases import CEILING, GRPC_CEILING, MLS_ONNX_GRPC, OURS, OURS_GRPC, PYDANTIC, Case
from bench.limits import RawLimit
from bench.runner import Measurement, Run

BEGIN = "<!-- bench:begin (written by `bash bench/run.sh`; edit outside these markers) -->"
END = "<!-- bench:end -->"
MLS_ONNX = "MLServer onnxruntime V2"
MLS_SKLEARN = "MLServer sklearn V2"


def table(run: Run, raw: dict[int, RawLimit]) -> str:
    """One row per case: both rounds' req/s, then means and ratios to the comparable systems."""
    header = (
        "| system | records/req | conns | req/s (each round) | rows/s | p50 ms | p99 ms "
        "| errors | CPU ms/req | x MLServer onnx | x MLServer sklearn | x raw limit | x ceiling "
        "| x pydantic | x before |\n"
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |"
    )
    lines = [header]
    for case, group in _groups(run.measurements):
        rates = [m.load.rate for m in group]
        rate = mean(rates)
        rows = rate * case.records
        # A gRPC case compares with MLServer's onnxruntime model over gRPC, not with HTTP ones.
        grpc = case.is_grpc
        onnx = _rate_of(run, MLS_ONNX_GRPC if grpc else MLS_ONNX, case)
        lines.append(
            "| "
            + " | ".join(
                [
                    case.system,
                    f"{case.records:,}",
                    str(case.connections),
                    " / ".join(f"{r:,.0f}" for r in rates),
                    f"{rows:,.0f}",
                    f"{mean(m.load.p50_ms for m in group):.2f}",
                    f"{mean(m.load.p99_ms for m in group):.2f}",
                    str(sum(m.load.errors for m in group)),
                    f"{mean(m.cpu_ms_per_request for m in group):.3f}",
                    _ratio(rate, onnx),
                    "" if grpc else _ratio(rate, _rate_of(run, MLS_SKLEARN, case)),
                    _ratio(rows, _raw_rows(raw, case.records)),
                    _ratio(rate, _rate_of(run, GRPC_CEILING if grpc else CEILING, case))
                    if case.records == 1
                    else "",
                    _ratio(rate, _rate_of(run, PYDANTIC, case))
                    if case.records > 1 and not grpc
                    else "",
                    _ratio(rate, _rate_of(run, _before(case.system), case)),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def raw_table(raw: dict[int, RawLimit]) -> str:
    lines = [
        "| records per `session.run` | calls/s | µs per call | rows/s |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for size, limit in sorted(raw.items()):
        calls = limit.calls_per_second
        lines.append(
            f"| {size:,} | {calls:,.0f} | {1e6 / calls:,.1f} | {limit.rows_per_second:,.0f} |"
        )
    return "\n".join(lines)


def rss_table(run: Run) -> str:
    lines = ["| server, when | peak RSS per worker (VmHWM), MiB |", "| --- | --- |"]
    for name, values in run.rss_mb.items():
        lines.append(f"| {name} | {', '.join(f'{v:.0f}' for v in values)} |")
    return "\n".join(lines)


def targets(run: Run) -> str:
    """Issue 5's targets, each computed from this run's means (a ratio measured side by side)."""
    checks: list[tuple[str, float | None, float]] = []
    one16 = _find(run, "ours v1 JSON", 1, 16)
    if one16 is not None:
        rate = mean(m.load.rate for m in one16)
        p99 = max(m.load.p99_ms for m in one16)
        case = one16[0].case
        checks += [
            (
                "v1 one record, 16 conns: x MLServer onnxruntime",
                _div(rate, _rate_of(run, MLS_ONNX, case)),
                2.0,
            ),
            (
                "v1 one record, 16 conns: x MLServer sklearn",
                _div(rate, _rate_of(run, MLS_SKLEARN, case)),
                15.0,
            ),
            (
                "v1 one record, 16 conns: x FastAPI constant ceiling",
                _div(rate, _rate_of(run, CEILING, case)),
                0.5,
            ),
            ("v1 one record, 16 conns: p99 ms (at most)", p99, 10.0),
        ]
    for system, label, goal in (
        ("ours v1 JSON", "v1 JSON 10,000 records: rows/s", 300_000.0),
        ("ours v1 CSV", "v1 CSV 10,000 records: rows/s", 300_000.0),
    ):
        found = _find(run, system, 10_000, None)
        if found is not None:
            checks.append((label, mean(m.load.rate for m in found) * 10_000, goal))
    json10k = _find(run, "ours v1 JSON", 10_000, None)
    if json10k is not None:
        ratio = _div(mean(m.load.rate for m in json10k), _rate_of(run, PYDANTIC, json10k[0].case))
        checks.append(("v1 JSON 10,000 records: x pydantic per record", ratio, 5.0))
    v2 = _find(run, "ours V2", 10_000, None)
    if v2 is not None:
        ratio = _div(mean(m.load.rate for m in v2), _rate_of(run, MLS_ONNX, v2[0].case))
        checks.append(("V2 10,000 rows: x MLServer onnxruntime", ratio, 1.0))
    two, one = _find(run, "ours v1 JSON, 2 workers", 1, 16), _find(run, "ours v1 JSON", 1, 16)
    if two is not None and one is not None:
        ratio = mean(m.load.rate for m in two) / mean(m.load.rate for m in one)
        checks.append(("2 workers vs 1, v1 one record, 16 conns", ratio, 1.6))
    checks += grpc_checks(run)
    rss = run.rss_mb.get(f"{OURS}, after the cases")
    if rss:
        checks.append(("peak RSS of one worker, MiB (at most)", max(rss), 150.0))
    lines = ["| target | measured | goal | met |", "| --- | ---: | ---: | --- |"]
    for label, value, goal in checks:
        at_most = "(at most)" in label
        met = value is not None and (value <= goal if at_most else value >= goal)
        shown = "n/a" if value is None else f"{value:,.2f}"
        lines.append(f"| {label} | {shown} | {goal:,.2f} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def grpc_checks(run: Run) -> list[tuple[str, float | None, float]]:
    """Issue 20's targets: ModelInfer over gRPC against MLServer's onnxruntime model over gRPC.

    A side with a failed call (any status but OK) gets no figure, so the target shows unmet.
    """
    checks: list[tuple[str, float | None, float]] = []
    for records, connections, label, goal in (
        (1, 16, "gRPC one record, 16 in flight: x MLServer onnxruntime gRPC (issue 20)", 2.0),
        (10_000, None, "gRPC 10,000 rows: x MLServer onnxruntime gRPC (issue 20)", 1.0),
    ):
        ours = _find(run, OURS_GRPC, records, connections)
        theirs = _find(run, MLS_ONNX_GRPC, records, connections)
        if ours is None or theirs is None:
            continue
        failed = any(m.load.errors for m in ours + theirs)
        ratio = mean(m.load.rate for m in ours) / mean(m.load.rate for m in theirs)
        checks.append((label, None if failed else ratio, goal))
    return checks


def write_section(path: Path, text: str, markers: tuple[str, str] = (BEGIN, END)) -> None:
    """Replace a generated block of RESULTS.md (or append it), leaving the rest as it is."""
    begin, end = markers
    old = path.read_text() if path.exists() else "# Measured results\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    new = (
        pattern.sub(lambda _: block, old) if pattern.search(old) else f"{old.rstrip()}\n\n{block}\n"
    )
    path.write_text(new)


def _before(system: str) -> str:
    """The baseline's name for one of our systems ("ours V2" -> "before: V2")."""
    if system.startswith("ours ") and "workers" not in system:
        return "before: " + system.removeprefix("ours ")
    return ""


def _groups(measurements: list[Measurement]) -> Iterable[tuple[Case, list[Measurement]]]:
    groups: dict[Case, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault(m.case, []).append(m)
    return groups.items()


def _find(run: Run, system: str, records: int, connections: int | None) -> list[Measurement] | None:
    found = [
        m
        for m in run.measurements
        if m.case.system == system
        and m.case.records == records
        and (connections is None or m.case.connections == connections)
    ]
    return found or None


def _rate_of(run: Run, system: str, like: Case) -> float | None:
    found = _find(run, system, like.records, like.connections)
    return mean(m.load.rate for m in found) if found else None


def _raw_rows(raw: dict[int, RawLimit], records: int) -> float | None:
    limit = raw.get(records)
    return limit.rows_per_second if limit else None


def _div(value: float, other: float | None) -> float | None:
    return value / other if other else None


def _ratio(value: float, other: float | None) -> str:
    ratio = _div(value, other)
    return "" if ratio is None else f"{ratio:.2f}"
