"""A bounded gRPC load generator for `ModelInfer` (no ghz here): N calls in flight over a few
channels, one pre-serialized request, loopback only, one JSON summary line like wrk's.

`bench.load.run_grpc_load` runs it as its own process (`python -m bench.grpc_load`), as it runs
wrk; this module imports nothing of the benchmark's, so the process starts light. The child
sends bytes through a generic unary-unary method with no serializer and deserializer, so a call
costs the client its gRPC core work only; the first answer is parsed once (tritonclient's
messages) to check that it holds `probabilities` for every row sent. Every status but OK counts
as an error, by code, and the first error's message is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc

MARKER = "BENCH_JSON "  # as bench/post.lua prints for wrk
METHOD = "/inference.GRPCInferenceService/ModelInfer"
MAX_CHANNELS = 4
MAX_SECONDS = 600.0
READY_SECONDS = 30.0
CALL_TIMEOUT_SECONDS = 30.0
BAD_ANSWER = "BAD_ANSWER"  # an OK status whose message is not the answer expected
CHANNEL_OPTIONS = [
    # One connection per channel: without a local pool, channels to one target share one.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]


@dataclass
class Summary:
    """What one run measured; latencies of the successful calls, in nanoseconds."""

    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    first_error: str = ""
    latencies_ns: list[int] = field(default_factory=list)
    elapsed_ns: int = 0
    cpu_ns: int = 0  # the client's own CPU time (all its threads) over the timed calls
    checked: bool = False

    def as_json(self) -> str:
        ordered = sorted(self.latencies_ns)
        return json.dumps(
            {
                "calls": self.calls,
                "ok": len(ordered),
                "errors": dict(self.errors),
                "first_error": self.first_error[:300],
                "duration_us": self.elapsed_ns / 1000,
                "p50_us": _percentile(ordered, 0.50) / 1000,
                "p99_us": _percentile(ordered, 0.99) / 1000,
                "client_cpu_us_per_call": self.cpu_ns / 1000 / max(1, self.calls),
                "checked": self.checked,
            }
        )


def channels_for(concurrency: int) -> int:
    """A connection per call in flight up to MAX_CHANNELS (a client spreads over a few)."""
    return max(1, min(concurrency, MAX_CHANNELS))


async def load(
    target: str,
    request: bytes,
    concurrency: int,
    seconds: float,
    max_calls: int,
    rows: int | None = None,
) -> Summary:
    """`concurrency` loops, each one call in flight at a time, until `seconds` or `max_calls`."""
    if not target.startswith("127.0.0.1:"):
        raise ValueError(f"refusing to load anything but 127.0.0.1: {target}")
    summary = Summary()
    channels = [
        grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        for _ in range(channels_for(concurrency))
    ]
    try:
        ready = asyncio.gather(*(channel.channel_ready() for channel in channels))
        await asyncio.wait_for(ready, READY_SECONDS)
        methods = [channel.unary_unary(METHOD) for channel in channels]  # bytes in, bytes out
        if rows is not None:
            summary.checked = await _check(methods[0], request, rows, summary)
        deadline = time.monotonic() + seconds
        started, cpu = time.perf_counter_ns(), time.process_time_ns()
        await asyncio.gather(
            *(
                _loop(methods[i % len(methods)], request, deadline, max_calls, summary)
                for i in range(concurrency)
            )
        )
        summary.elapsed_ns = time.perf_counter_ns() - started
        summary.cpu_ns = time.process_time_ns() - cpu
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    return summary


async def _loop(
    method: grpc.aio.UnaryUnaryMultiCallable,
    request: bytes,
    deadline: float,
    max_calls: int,
    summary: Summary,
) -> None:
    latencies = summary.latencies_ns
    while summary.calls < max_calls and time.monotonic() < deadline:
        summary.calls += 1
        started = time.perf_counter_ns()
        try:
            await method(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            _failed(summary, exc.code().name, exc.details() or "")
        else:
            latencies.append(time.perf_counter_ns() - started)


async def _check(
    method: grpc.aio.UnaryUnaryMultiCallable, request: bytes, rows: int, summary: Summary
) -> bool:
    """One call before the timed ones: its answer must give `probabilities` for `rows` rows."""
    from tritonclient.grpc import service_pb2  # only here: the answer is parsed once

    try:
        answer = await method(request, timeout=CALL_TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError as exc:
        _failed(summary, exc.code().name, exc.details() or "")
        return False
    response = service_pb2.ModelInferResponse.FromString(answer)
    shapes = {output.name: list(output.shape) for output in response.outputs}
    if shapes.get("probabilities", [])[:1] != [rows]:
        _failed(summary, BAD_ANSWER, f"outputs {shapes} for {rows} rows")
        return False
    return True


def _failed(summary: Summary, code: str, message: str) -> None:
    summary.errors[code] += 1
    if not summary.first_error:
        summary.first_error = f"{code}: {message}"


def _percentile(ordered: list[int], fraction: float) -> float:
    if not ordered:
        return 0.0
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_load", description=__doc__)
    parser.add_argument("target", help="127.0.0.1:PORT")
    parser.add_argument("request", type=Path, help="a serialized ModelInferRequest")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--max-calls", type=int, default=5_000_000)
    parser.add_argument("--rows", type=int, help="check the first answer has this many rows")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 < args.seconds <= MAX_SECONDS or args.concurrency < 1 or args.max_calls < 1:
        raise SystemExit(f"need 0 < --seconds <= {MAX_SECONDS:g}, --concurrency, --max-calls >= 1")
    request = args.request.read_bytes()
    summary = asyncio.run(
        load(args.target, request, args.concurrency, args.seconds, args.max_calls, args.rows)
    )
    print(MARKER + summary.as_json())  # noqa: T201  # the parent reads this line
    return 0


if __name__ == "__main__":
    sys.exit(main())
