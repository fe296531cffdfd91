"""The HTTP server: uvicorn with the service's connection cap and an answered end of the drain.

uvicorn's own server, at the end of the grace period, cancels the requests still running: each
client gets a plain-text 500, the log a traceback, and the process exits 0. Here those requests
get a JSON 503 in their API's format (or, if their answer had begun, a closed connection), the
log one warning line, and the exit code `DRAIN_CUT_SHORT`."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from service.settings import Settings

APP = "service.app:app_from_env"
# sysexits.h EX_TEMPFAIL: a temporary failure, worth retrying. Not 1 (an unhandled exception),
# 2 (bad usage) or 3 (uvicorn's start-up failure), and below the 128+N of a death by signal.
DRAIN_CUT_SHORT = 75
# prometheus-client's own variable: where each worker writes its metrics, for any to report all.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

logger = logging.getLogger(__name__)

# Other servers of this process (the gRPC one, service.api.grpc_v2) register how to drain here:
# on SIGTERM they stop taking calls and finish theirs within the same grace period as HTTP.
DRAINS: list[Callable[[], Awaitable[None]]] = []


def _json_response(status: HTTPStatus, body: dict[str, str]) -> tuple[bytes, bytes]:
    """An HTTP/1.1 response that closes the connection: its status line, and the rest.

    uvicorn's default headers (the date) go between the two when it is sent.
    """
    payload = json.dumps(body).encode()
    rest = (
        "content-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n"
        "connection: close\r\n\r\n"
    )
    return f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode(), rest.encode() + payload


TOO_MANY_CONNECTIONS = _json_response(
    HTTPStatus.SERVICE_UNAVAILABLE, {"detail": "too many connections"}
)
_STOPPED = "the server stopped before this request finished; retry it"
STOPPED_V1 = _json_response(HTTPStatus.SERVICE_UNAVAILABLE, {"detail": _STOPPED})
STOPPED_V2 = _json_response(HTTPStatus.SERVICE_UNAVAILABLE, {"error": _STOPPED})


class CutOffApp:
    """The app, whose requests the server may cut off at the end of the drain.

    The server answers such a request itself (`ServiceProtocol.cut_off`) and then cancels its
    task; the cancellation ends here, quietly, instead of in uvicorn's traceback and 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cutting_off = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if not self.cutting_off:
                raise


class ServiceConfig(Config):
    """uvicorn's Config with the connection cap, serving the app wrapped in `CutOffApp`."""

    def __init__(self, app: str, *, max_connections: int, **options: Any) -> None:
        super().__init__(app, **options)
        self.max_connections = max_connections

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceConfig:
        return cls(
            APP,
            factory=True,  # each worker process builds its own app
            max_connections=settings.max_connections,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            http=ServiceProtocol,
            log_config=None,
            access_log=False,  # the request context (observability) writes one JSON line instead
            log_level=settings.log_level.lower(),
            server_header=False,
            # On SIGTERM: stop accepting, let requests in flight finish for up to this long.
            timeout_graceful_shutdown=settings.graceful_timeout_seconds,
        )

    def load(self) -> None:
        super().load()
        self.cut_off_app = CutOffApp(self.loaded_app)
        self.loaded_app = self.cut_off_app


class ServiceProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that refuses connections past the cap and can cut one off.

    Past `max_connections` open connections a new one is answered 503 and closed at once, before
    it can hold a file descriptor while sending nothing; the normal path pays one length check.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, ServiceConfig):
            raise TypeError(f"ServiceProtocol needs a ServiceConfig, not {type(config).__name__}")
        self.max_connections = config.max_connections

    # As uvicorn's: asyncio.Protocol takes any BaseTransport, this protocol needs a stream one.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            _refusals.record(len(self.connections) - 1)
            self._answer(TOO_MANY_CONNECTIONS)

    def cut_off(self) -> None:
        """End this connection now: a request still running is answered 503, if not yet answered.

        From here on the request's task may still send, but nothing reaches the client, and
        uvicorn counts the request as disconnected, so it logs nothing about it.
        """
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if not cycle.response_started:
                path = cycle.scope["path"]
                v2 = path == "/v2" or path.startswith("/v2/")  # as service.app tells the APIs
                self._answer(STOPPED_V2 if v2 else STOPPED_V1)
            cycle.disconnected = True
        self.transport.close()

    def _answer(self, response: tuple[bytes, bytes]) -> None:
        status_line, rest = response
        defaults = [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        self.transport.write(b"".join([status_line, *defaults, rest]))
        self.transport.close()


class ServiceServer(uvicorn.Server):
    """uvicorn's Server whose drain, at the grace period's end, answers what is still running."""

    config: ServiceConfig

    def __init__(self, config: ServiceConfig) -> None:
        super().__init__(config)
        self.drain_cut_short = False

    @property
    def exit_code(self) -> int:
        return DRAIN_CUT_SHORT if self.drain_cut_short else 0

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, without raising the signal again at the end: the exit code tells the end."""
        with super().capture_signals():
            yield
            self._captured_signals.clear()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, with `_cut_off` where uvicorn cancels the requests still running,
        and the other servers of the process (`DRAINS`) draining at the same time."""
        logger.info("Shutting down")
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        others = [asyncio.ensure_future(drain()) for drain in DRAINS]
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await asyncio.sleep(0.1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._wait_tasks_to_complete(), timeout=self.config.timeout_graceful_shutdown
            )
        self._cut_off()
        if others:
            await asyncio.gather(*others, return_exceptions=True)
        if not self.force_exit:
            await self.lifespan.shutdown()

    def _cut_off(self) -> None:
        """Answer and close what the drain left (the grace period ran out, or a second Ctrl+C)."""
        state = self.server_state
        if not state.tasks and not state.connections:
            return
        self.drain_cut_short = True
        logger.warning(
            "grace period over: requests still running are answered 503 and their connections "
            "closed",
            extra={"fields": {"requests": len(state.tasks), "connections": len(state.connections)}},
        )
        self.config.cut_off_app.cutting_off = True
        for connection in list(state.connections):
            if isinstance(connection, ServiceProtocol):
                connection.cut_off()
        for task in state.tasks:
            task.cancel()


class _Refusals:
    """Refused connections, logged at most once per `EVERY_SECONDS`: a flood must not flood the log.

    Each line gives the connections open and how many were refused since the previous line.
    """

    EVERY_SECONDS = 60.0

    def __init__(self) -> None:
        self.count = 0
        self.logged_at: float | None = None

    def record(self, open_connections: int) -> None:
        self.count += 1
        now = asyncio.get_running_loop().time()
        if self.logged_at is not None and now - self.logged_at < self.EVERY_SECONDS:
            return
        logger.warning(
            "connection refused: too many connections (PREDICT_MAX_CONNECTIONS)",
            extra={"fields": {"open": open_connections, "refused": self.count}},
        )
        self.logged_at = now
        self.count = 0


_refusals = _Refusals()


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

logger = logging.getLogger(__name__)


def die_with_parent() -> None:
    """Have this process sent SIGTERM when its parent dies; exit now if it already has.

    SIGTERM rather than SIGKILL: the worker closes its listening socket at once, so the port is
    free, and finishes its requests within the grace period. Linux sends the signal when the
    *thread* that started this process ends; `WorkerProcess.start` keeps that the supervisor's
    main thread, which lives as long as the supervisor.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return  # not started by a supervisor
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            error = os.strerror(ctypes.get_errno())
            logger.warning("worker will not die with its supervisor: prctl failed: %s", error)
    if os.getppid() != parent.pid:
        # Orphaned before the request above took effect: no signal will come, so leave now.
        logger.warning("supervisor gone before the worker started; exiting")
        raise SystemExit(0)


@contextlib.contextmanager
def metrics_directory() -> Iterator[Path]:
    """The workers' metrics directory, in the environment they inherit, for the block's duration.

    `PROMETHEUS_MULTIPROC_DIR` if the operator set it (created if missing), else a private
    temporary directory, removed at the end. prometheus-client's files (`*.db`) found there are
    a previous run's counts and are deleted first; nothing else in the directory is touched.
    """
    configured = os.environ.get(METRICS_DIR_ENV)
    if configured:
        path = Path(configured).resolve()
        try:
            _empty_metrics_directory(path)
        except OSError as exc:
            # The operator's setting: one line and uvicorn's start-up failure, no traceback.
            logger.error("%s=%s unusable: %s", METRICS_DIR_ENV, configured, exc.strerror or exc)
            raise SystemExit(STARTUP_FAILURE) from exc
    else:
        path = Path(tempfile.mkdtemp(prefix="predict-metrics-"))
    os.environ[METRICS_DIR_ENV] = str(path)
    try:
        yield path
    finally:
        if configured:
            os.environ[METRICS_DIR_ENV] = configured
        else:
            os.environ.pop(METRICS_DIR_ENV, None)
            shutil.rmtree(path, ignore_errors=True)


def _empty_metrics_directory(path: Path) -> None:
    """Create `path` if missing, check it writable, and delete prometheus-client's files in it."""
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "not writable")
    for stale in path.glob("*.db"):
        if stale.is_file():
            stale.unlink()


def drop_metrics_directory() -> None:
    """One worker has nothing to merge: its metrics stay in memory, at in-memory speed.

    Called before prometheus-client is imported, which picks its mode from the environment.
    """
    for name in (METRICS_DIR_ENV, METRICS_DIR_ENV.lower()):  # the lower case is deprecated
        if os.environ.pop(name, None) is not None:
            logger.info("one worker: %s is not used, metrics stay in memory", name)


class WorkerProcess(Process):
    """One worker: tied to the supervisor's life, serving with `ServiceServer`."""

    config: ServiceConfig

    @property
    def server(self) -> ServiceServer:
        if not isinstance(self._server, ServiceServer):
            self._server = ServiceServer(self.config)
        return self._server

    def start(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("a worker must be started by the supervisor's main thread")
        super().start()

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        """In the worker: serve until told to stop, then exit with the server's exit code."""
        die_with_parent()
        super().target(sockets)
        raise SystemExit(self.server.exit_code)


class Supervisor(Multiprocess):
    """uvicorn's supervisor, starting `WorkerProcess`es; its exit code sums up the workers'.

    It also keeps the workers' metrics directory (`metrics_directory`): set up before the first
    worker starts, and each worker that ends marked dead there, so `/metrics` from any worker
    sums them all without the dead ones' live gauges.

    uvicorn names its worker class inside four methods, so those four are uvicorn's code again
    with `WorkerProcess`; tests/reliability/test_workers.py fails if uvicorn starts workers in
    any other method.
    """

    config: ServiceConfig

    def __init__(self, config: ServiceConfig, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.metrics_dir: Path | None = None

    @property
    def exit_code(self) -> int:
        """3 if a worker failed to start, 75 if one cut its drain short, else 0."""
        codes = {process.exitcode for process in self.processes}
        for code in (STARTUP_FAILURE, DRAIN_CUT_SHORT):
            if code in codes:
                return code
        return 0

    def run(self) -> None:
        """uvicorn's loop, inside the workers' metrics directory; the last workers marked dead."""
        with metrics_directory() as self.metrics_dir:
            super().run()
            for process in self.processes:
                self._forget(process)

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            self.processes.append(self._start_worker())

    def restart_all(self) -> None:
        """SIGHUP: replace each worker, its replacement serving before the old one is retired."""
        for idx, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self._start_worker()
            timeout = self.config.timeout_worker_healthcheck
            if not new_process.wait_until_ready(timeout, self.should_exit):
                new_process.kill()
                new_process.join()
                self._forget(new_process)
                if not self.should_exit.is_set():
                    logger.error(
                        "new worker [%s] not ready in time: keeping worker [%s], restart aborted",
                        new_process.pid,
                        old_process.pid,
                    )
                return
            old_process.terminate()
            old_process.join()
            self._forget(old_process)
            self.processes[idx] = new_process

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung: kill it
            process.join()
            self._forget(process)
            if process.exitcode == STARTUP_FAILURE:
                # Broken app, socket or settings: every restart would fail the same way.
                logger.error("worker [%s] failed to start: stopping", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info("worker [%s] died: starting another", process.pid)
            self.processes[idx] = self._start_worker()

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN: one more worker")
        self.processes_num += 1
        self.processes.append(self._start_worker())

    def handle_ttou(self) -> None:
        """SIGTTOU: one worker fewer (uvicorn's, with the retired worker marked dead)."""
        if self.processes_num <= 1:
            logger.info("Received SIGTTOU: already down to one worker")
            return
        logger.info("Received SIGTTOU: one worker fewer")
        self.processes_num -= 1
        process = self.processes.pop()
        process.terminate()
        process.join()
        self._forget(process)

    def _forget(self, process: Process) -> None:
        """After a worker ended: its live gauges leave the sums; its counters stay in them."""
        if self.metrics_dir is None or process.pid is None:
            return
        # Imported only here: prometheus-client picks its mode at import, from the environment,
        # and a one-worker server imports this module before it drops the directory. Untyped.
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(process.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def _start_worker(self) -> WorkerProcess:
        process = WorkerProcess(self.config, self.sockets)
        process.start()
        return process
