"""Run the cases: start each server, warm it, load it with wrk (or `bench.grpc_load` for the
gRPC cases), read its CPU time and memory."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs
from bench.cases import (
    BASELINE,
    CEILING,
    GRPC_CEILING,
    MLSERVER,
    OURS,
    OURS_TWO,
    PYDANTIC,
    Case,
)
from bench.load import LoadResult, run_grpc_load, run_wrk
from bench.mlserver_setup import ONNX_MODEL, SKLEARN_MODEL, write_model_repository
from bench.payloads import Body

REPO = Path(__file__).resolve().parent.parent
WARM_UP_SECONDS = 1.0
log = logging.getLogger("bench")


@dataclass(frozen=True)
class Measurement:
    case: Case
    round: int
    load: LoadResult
    cpu_seconds: float

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_seconds / self.load.requests if self.load.requests else 0.0


@dataclass
class Run:
    """Everything measured: wrk results per case and round, peak RSS per server worker."""

    measurements: list[Measurement] = field(default_factory=list)
    rss_mb: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Setup:
    cache: Path
    bodies: dict[str, Body]
    seconds: float
    model_dir: Path  # the churn version served, for the apps that load it themselves
    mlserver_python: Path | None = None
    pickle: Path | None = None
    onnx_file: Path | None = None
    baseline_src: Path | None = None


def run_cases(setup: Setup, cases: list[Case], rounds: int) -> Run:
    """Rounds run every server in turn, so slow drifts of a shared machine hit all of them."""
    run = Run()
    servers = list(dict.fromkeys(case.server for case in cases))
    for number in range(1, rounds + 1):
        for server_name in round_order(servers, number):
            mine = [case for case in cases if case.server == server_name]
            with started(setup, server_name) as server:
                run.rss_mb.setdefault(f"{server_name}, after start", []).extend(_worker_rss(server))
                _warm_up(server, setup, mine)
                for case in mine:
                    run.measurements.append(_measure(server, setup, case, number))
                run.rss_mb.setdefault(f"{server_name}, after the cases", []).extend(
                    _worker_rss(server)
                )
    return run


def round_order(servers: list[str], number: int) -> list[str]:
    """Odd rounds take the servers in order, even rounds in reverse: the server measured last in
    one round is measured first in the next. With one order, "before" (listed last) was measured
    last in every round and beat the unchanged CSV and V2 code by 3-9% in both of session 6's
    runs, while an A/B that alternated the two measured them equal."""
    return list(servers) if number % 2 else servers[::-1]


def _measure(server: procs.Server, setup: Setup, case: Case, number: int) -> Measurement:
    before = server.cpu_seconds()
    load = _load(server, setup, case, case.connections, setup.seconds)
    cpu = server.cpu_seconds() - before
    log.info(
        "round %d  %-28s %6d rec %3d conn  %9.0f req/s  p99 %7.2f ms  errors %d",
        number, case.system, case.records, case.connections, load.rate, load.p99_ms, load.errors,
    )  # fmt: skip
    if load.first_error:
        log.warning("%s: first error: %s", case.system, load.first_error)
    return Measurement(case, number, load, cpu)


def _load(
    server: procs.Server, setup: Setup, case: Case, connections: int, seconds: float
) -> LoadResult:
    """wrk on the case's route, or `bench.grpc_load` on the server's gRPC port."""
    body = setup.bodies[case.body]
    if case.is_grpc:
        return run_grpc_load(server.grpc_address, body, connections, seconds)
    return run_wrk(server.url + case.path, body, connections, seconds)


def _warm_up(server: procs.Server, setup: Setup, cases: list[Case]) -> None:
    """One short run per distinct route and body (JIT-free Python still fills caches, pools)."""
    seen: set[tuple[str, str]] = set()
    for case in cases:
        if (case.path, case.body) not in seen:
            seen.add((case.path, case.body))
            _load(server, setup, case, 2, WARM_UP_SECONDS)


def _worker_rss(server: procs.Server) -> list[float]:
    rss = server.peak_rss_mb()
    return [rss[pid] for pid in server.workers() if pid in rss]


@contextmanager
def started(setup: Setup, name: str) -> Iterator[procs.Server]:
    """One of the benchmark's servers (a name from `bench.cases`), stopped when the block ends."""
    starters: dict[str, Callable[[Setup, int], procs.Server]] = {
        OURS: lambda s, port: _ours(s, port, 1),
        OURS_TWO: lambda s, port: _ours(s, port, 2),
        BASELINE: lambda s, port: _ours(s, port, 1, s.baseline_src),
        CEILING: _ceiling,
        GRPC_CEILING: _grpc_ceiling,
        PYDANTIC: _pydantic,
        MLSERVER: _mlserver,
    }
    server = starters[name](setup, procs.free_port())
    log.info("started %s (pid %d) at %s", name, server.pid, server.url)
    try:
        yield server
    finally:
        server.stop()


def _ours(setup: Setup, port: int, workers: int, source: Path | None = None) -> procs.Server:
    """`python -m service` as deployed; `source` puts another tree's `service` package first.

    gRPC is on (on a free port) as deployed, also in the cases that load only HTTP.
    """
    grpc_port = procs.free_port()
    env = {
        "PREDICT_HOST": procs.HOST,
        "PREDICT_PORT": str(port),
        "PREDICT_GRPC_PORT": str(grpc_port),
        "PREDICT_WORKERS": str(workers),
        "PREDICT_MODELS_DIR": str(REPO / "models"),
    }
    if source is not None:
        env["PYTHONPATH"] = str(source)
    argv = [sys.executable, "-m", "service"]
    name = f"service-{workers}w" + ("-baseline" if source else "")
    log_file = setup.cache / "logs" / f"{name}.log"
    cwd = source or REPO
    server = procs.start(name, argv, port, ["/readyz"], log_file, env, cwd)
    server.grpc_address = f"{procs.HOST}:{grpc_port}"
    return server


def _ceiling(setup: Setup, port: int) -> procs.Server:
    return _uvicorn_app(setup, port, "ceiling", {})


def _grpc_ceiling(setup: Setup, port: int) -> procs.Server:
    """gRPC only, so nothing answers HTTP: ready when its port accepts connections."""
    argv = [sys.executable, "-m", "bench.grpc_ceiling", str(port)]
    log_file = setup.cache / "logs" / "grpc_ceiling.log"
    server = procs.start("grpc_ceiling", argv, port, [], log_file, cwd=REPO)
    procs.wait_for_port(server, port)
    server.grpc_address = f"{procs.HOST}:{port}"
    return server


def _pydantic(setup: Setup, port: int) -> procs.Server:
    env = {"BENCH_MODEL_DIR": str(setup.model_dir)}
    return _uvicorn_app(setup, port, "pydantic_app", env)


def _uvicorn_app(setup: Setup, port: int, module: str, env: dict[str, str]) -> procs.Server:
    """One of bench's FastAPI apps, run by uvicorn like the service (one worker, uvloop)."""
    argv = [
        sys.executable, "-m", "uvicorn", f"bench.{module}:app", "--host", procs.HOST,
        "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    log_file = setup.cache / "logs" / f"{module}.log"
    return procs.start(module, argv, port, ["/health"], log_file, env, cwd=REPO)


def _mlserver(setup: Setup, port: int) -> procs.Server:
    assert setup.mlserver_python and setup.pickle and setup.onnx_file  # set when MLServer runs
    folder = setup.cache / "mlserver-models"
    ports = {"http": port, "grpc": procs.free_port(), "metrics": procs.free_port()}
    write_model_repository(folder, setup.pickle, setup.onnx_file, ports)
    argv = [str(setup.mlserver_python.parent / "mlserver"), "start", str(folder)]
    env = {"PYTHONPATH": str(REPO / "bench")}
    ready = [f"/v2/models/{name}/ready" for name in (ONNX_MODEL, SKLEARN_MODEL)]
    log_file = setup.cache / "logs" / "mlserver.log"
    server = procs.start("mlserver", argv, port, ready, log_file, env, REPO, timeout=180)
    server.grpc_address = f"{procs.HOST}:{ports['grpc']}"
    return server
