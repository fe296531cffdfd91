"""Servers under test as child processes: start, wait until ready, CPU time, peak RSS, stop.

Every process is started here and stopped here by its PID (its process group), never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")


class ServerFailed(RuntimeError):
    """A server exited or never became ready; the message holds the tail of its log."""


@dataclass
class Server:
    """A started server: its process (group leader), base URL and log file."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    ready_paths: list[str] = field(default_factory=list)
    grpc_address: str = ""  # 127.0.0.1:port of its gRPC server, for those that serve one

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and all its descendants (uvicorn workers)."""
        return sum(_cpu_seconds(pid) for pid in _tree(self.pid))

    def peak_rss_mb(self) -> dict[int, float]:
        """VmHWM (peak resident set) of each process in the tree, in MiB."""
        return {pid: _status_kib(pid, "VmHWM") / 1024 for pid in _tree(self.pid)}

    def workers(self) -> list[int]:
        """The processes that serve requests: the children if any (uvicorn --workers), else it.

        multiprocessing's resource tracker is a child too, but serves nothing.
        """
        children = [
            pid
            for pid in _tree(self.pid)
            if pid != self.pid and b"resource_tracker" not in _cmdline(pid)
        ]
        return children or [self.pid]

    def stop(self) -> None:
        """SIGTERM to the process group, then SIGKILL after 10 s."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start(
    name: str,
    argv: Sequence[str],
    port: int,
    ready_paths: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120.0,
) -> Server:
    """Start `argv` in its own process group and wait until every ready path answers 200."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    server = Server(name, process, f"http://{HOST}:{port}", log, list(ready_paths))
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_for_port(server: Server, port: int, timeout: float = 60.0) -> None:
    """Until something accepts connections on 127.0.0.1:`port`, for a server without HTTP."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise ServerFailed(
                f"{server.name} exited ({server.process.returncode}):\n{_tail(server)}"
            )
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex((HOST, port)) == 0:
                return
        if time.monotonic() > deadline:
            server.stop()
            raise ServerFailed(
                f"{server.name} not listening after {timeout:.0f} s:\n{_tail(server)}"
            )
        time.sleep(0.2)


def get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(server.ready_paths)
    while pending:
        if server.process.poll() is not None:
            raise ServerFailed(
                f"{server.name} exited ({server.process.returncode}):\n{_tail(server)}"
            )
        if time.monotonic() > deadline:
            raise ServerFailed(f"{server.name} not ready after {timeout:.0f} s:\n{_tail(server)}")
        if get(server.url + pending[0]) == 200:
            pending.pop(0)
        else:
            time.sleep(0.2)


def _tail(server: Server, lines: int = 30) -> str:
    text = server.log.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _tree(root: int) -> list[int]:
    """The root and its descendants, from /proc (children of children included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found.extend(frontier)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / TICKS


def _status_kib(pid: int, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0
