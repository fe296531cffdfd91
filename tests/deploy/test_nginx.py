"""The nginx fronts (compose's load balancer and each Kubernetes pod's proxy): the two carry the
same limits, and each limit is provoked through a real nginx, run from the real file on loopback
in front of a real service. Only what cannot run here is changed: addresses, writable paths, and
the values a test shortens or lowers so the limit is reached quickly.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from service.manifest import Manifest, read_pointer
from service.settings import Settings
from tests.service.helpers import Server, free_port

from .conftest import ROOT, require_tool
from .fronts import FRONTS, directives, front_config, local_config

# The limits of the server block, the same in both fronts (README and SECURITY.md quote them).
LIMITS = {
    "client_header_timeout": "10s",
    "client_body_timeout": "30s",
    "send_timeout": "30s",
    "keepalive_timeout": "65s",
    "reset_timedout_connection": "on",
    "large_client_header_buffers": "4 8k",
    "client_max_body_size": "64m",
    "proxy_request_buffering": "on",
    "limit_conn": "per_client 32",
    "limit_conn_status": "429",
}
PREDICT = "/v1/models/churn/predict"
HANG_GUARD = 20.0  # seconds: a socket read that has not ended by then fails the test


@pytest.mark.parametrize("front", FRONTS)
def test_the_front_carries_the_limits(front: str) -> None:
    config = front_config(front)
    server = directives(config, ("http", "server"))
    assert {name: server.get(name) for name in LIMITS} == LIMITS
    assert directives(config, ("http",))["limit_conn_zone"].startswith(
        "$binary_remote_addr zone=per_client:"
    )
    # nginx drops an idle upstream connection before uvicorn (its default keep-alive) would.
    upstream = directives(config, ("http", "upstream"))
    assert (
        int(upstream["keepalive_timeout"].removesuffix("s"))
        < uvicorn.Config("x").timeout_keep_alive
    )
    # The body limit is the service's own; nginx never waits for a body longer than it would.
    defaults = Settings.model_fields
    assert int(server["client_max_body_size"].removesuffix("m")) * 2**20 == (
        defaults["max_body_bytes"].default
    )
    assert int(server["client_body_timeout"].removesuffix("s")) <= (
        defaults["body_timeout_seconds"].default
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real service on the committed models, the upstream of every nginx here."""
    logs = tmp_path_factory.mktemp("nginx-upstream")
    running = Server(ROOT / "models", logs / "api.log", {"PREDICT_POLL_INTERVAL_SECONDS": "0"})
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def record() -> dict[str, object]:
    task = ROOT / "models" / "churn"
    return dict(Manifest.load(task / read_pointer(task)).examples[0].record)


@pytest.mark.parametrize("front", FRONTS)
def test_the_front_disconnects_stalled_headers_and_bodies(
    front: str, service: Server, record: dict[str, object], tmp_path: Path
) -> None:
    """Timeouts shortened to 1 s: a client stalling in its headers or its body is disconnected
    without an answer (nginx logs a 408), and the next client is served."""
    short = {"client_header_timeout": "1s", "client_body_timeout": "1s"}
    with running_front(front, tmp_path, service.port, short) as (port, access_log):
        stalled_headers = f"POST {PREDICT}?stall=headers HTTP/1.1\r\nHost: x\r\nContent-Ty"
        assert answer_before_close(port, stalled_headers.encode()) == b""
        stalled_body = _head(f"{PREDICT}?stall=body", 100) + b'{"records": ['
        assert answer_before_close(port, stalled_body) == b""
        logged = access_log.read_text().splitlines()
        assert f'408 "POST {PREDICT}?stall=headers HTTP/1.1"' in logged
        assert f'408 "POST {PREDICT}?stall=body HTTP/1.1"' in logged
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=HANG_GUARD) as client:
            assert client.post(PREDICT, json={"records": [record]}).status_code == 200


@pytest.mark.parametrize("front", FRONTS)
def test_the_front_refuses_oversized_header_lines(
    front: str, service: Server, tmp_path: Path
) -> None:
    with running_front(front, tmp_path, service.port, {}) as (port, _):
        long_line = f"GET /healthz?{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n"
        assert answer_before_close(port, long_line.encode()).startswith(b"HTTP/1.1 414")
        long_header = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 9000}\r\n\r\n"
        assert answer_before_close(port, long_header.encode()).startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("front", FRONTS)
def test_the_front_caps_requests_in_progress_per_client(
    front: str, service: Server, record: dict[str, object], tmp_path: Path
) -> None:
    """The cap lowered to 2: two uploads in progress from one address, the third request gets
    a 429; once they are gone, requests are served again."""
    with running_front(front, tmp_path, service.port, {"limit_conn": "per_client 2"}) as (port, _):
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=HANG_GUARD) as client:
            try:
                for sock in held:
                    sock.sendall(_head(PREDICT, 100) + b'{"records": [')
                _wait_for_status(client, record, 429)
            finally:
                for sock in held:
                    sock.close()
            _wait_for_status(client, record, 200)


@contextmanager
def running_front(
    front: str, prefix: Path, upstream: int, overrides: dict[str, str]
) -> Iterator[tuple[int, Path]]:
    """nginx running the front's config on a free loopback port; yields (port, access log)."""
    binary = require_tool("nginx")
    port = free_port()
    config = prefix / "nginx.conf"
    config.write_text(local_config(front_config(front), prefix, port, [upstream], overrides))
    command = [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(config)]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_proxying(port, process, prefix)
        yield port, prefix / "access.log"
    finally:
        process.terminate()
        process.wait(timeout=15)


def answer_before_close(port: int, request: bytes) -> bytes:
    """Send `request`, then read until nginx closes (or resets) the connection."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # reset_timedout_connection: a timed-out connection is reset, not closed
    return received


def _wait_for_status(client: httpx.Client, record: dict[str, object], status: int) -> None:
    """The held connections reach nginx (or leave it) a moment after the client acts."""
    deadline = time.monotonic() + HANG_GUARD
    seen = []
    while time.monotonic() < deadline:
        seen.append(client.post(PREDICT, json={"records": [record]}).status_code)
        if seen[-1] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"never answered {status}; answered {sorted(set(seen))}")


def _wait_until_proxying(port: int, process: subprocess.Popen[bytes], prefix: Path) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError((prefix / "error.log").read_text())


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
