"""wrk on loopback, bounded in time, with bench/post.lua reporting one JSON summary line; and
`bench.grpc_load` (gRPC ModelInfer) run the same way, reporting the same line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.payloads import Body

SCRIPT = Path(__file__).with_name("post.lua")
REPO = Path(__file__).resolve().parent.parent
MARKER = "BENCH_JSON "


class LoadFailed(RuntimeError):
    """wrk is missing, failed, or printed no summary."""


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured (latencies in milliseconds)."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int  # for gRPC: calls answered with another status than OK
    socket_errors: int
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise LoadFailed("wrk is not installed (Debian: apt-get install wrk)")
    return found


def run_wrk(url: str, body: Body, connections: int, seconds: float) -> LoadResult:
    """One bounded run: one wrk thread, `connections` keep-alive connections, 127.0.0.1 only."""
    if not url.startswith("http://127.0.0.1:"):
        raise LoadFailed(f"refusing to load anything but loopback: {url}")
    argv = [
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(SCRIPT),
        url,
        "--",
        str(body.path),
        body.content_type,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    raw = _result(done, "wrk")
    return LoadResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        non_2xx=raw["status"],
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
    )


def run_grpc_load(target: str, body: Body, concurrency: int, seconds: float) -> LoadResult:
    """One bounded `bench.grpc_load` run in its own process: `concurrency` ModelInfer calls in
    flight to `target` (127.0.0.1:port), the request `body` (serialized), the first answer
    checked for `body.records` rows."""
    argv = [
        sys.executable, "-m", "bench.grpc_load", target, str(body.path),
        "--concurrency", str(concurrency), "--seconds", f"{seconds:g}",
        "--rows", str(body.records),
    ]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 90, check=False, cwd=REPO
    )
    raw = _result(done, "grpc_load")
    return LoadResult(
        requests=raw["calls"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        non_2xx=sum(raw["errors"].values()),
        socket_errors=0,
        first_error=raw["first_error"],
    )


def _result(done: subprocess.CompletedProcess[str], tool: str) -> dict[str, Any]:
    """The load tool's result: the JSON after MARKER on its output, or LoadFailed with its end."""
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise LoadFailed(
            f"{tool} failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-1500:]}"
        )
    result: dict[str, Any] = json.loads(line[len(MARKER) :])
    return result
