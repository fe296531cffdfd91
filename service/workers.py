"""Worker processes (PREDICT_WORKERS > 1): uvicorn's supervisor, with workers that die with it.

uvicorn's workers outlive a supervisor killed with SIGKILL: orphaned, they keep the port and
serve unsupervised, and a restart cannot bind. Here each worker asks Linux for SIGTERM when its
parent dies (`PR_SET_PDEATHSIG`), so it stops accepting at once and drains as if the supervisor
had stopped it. Workers run `ServiceServer`, and the supervisor's exit code reports theirs.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from socket import socket

from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from service.server import DRAIN_CUT_SHORT, ServiceConfig, ServiceServer

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

    def target(self, sockets: list[socket] | None = None) -> None:
        """In the worker: serve until told to stop, then exit with the server's exit code."""
        die_with_parent()
        super().target(sockets)
        raise SystemExit(self.server.exit_code)


class Supervisor(Multiprocess):
    """uvicorn's supervisor, starting `WorkerProcess`es; its exit code sums up the workers'.

    uvicorn names its worker class inside four methods, so those four are uvicorn's code again
    with `WorkerProcess`; tests/reliability/test_workers.py fails if uvicorn starts workers in
    any other method.
    """

    config: ServiceConfig

    @property
    def exit_code(self) -> int:
        """3 if a worker failed to start, 75 if one cut its drain short, else 0."""
        codes = {process.exitcode for process in self.processes}
        for code in (STARTUP_FAILURE, DRAIN_CUT_SHORT):
            if code in codes:
                return code
        return 0

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
                if not self.should_exit.is_set():
                    logger.error(
                        "new worker [%s] not ready in time: keeping worker [%s], restart aborted",
                        new_process.pid,
                        old_process.pid,
                    )
                return
            old_process.terminate()
            old_process.join()
            self.processes[idx] = new_process

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung: kill it
            process.join()
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

    def _start_worker(self) -> WorkerProcess:
        process = WorkerProcess(self.config, self.sockets)
        process.start()
        return process
