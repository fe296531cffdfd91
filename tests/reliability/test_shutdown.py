"""Graceful shutdown: on SIGTERM the server stops accepting, finishes what is in flight, exits 0.

The request in flight is a 2,000-record JSON body sent in two halves over a raw socket, with
SIGTERM in between, so it is provably still arriving when the signal lands. A body that stops
half-way is still arriving when the grace period ends: it is answered 503 in its API's format,
and the exit code (`DRAIN_CUT_SHORT`) says the drain was cut short.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from service.api.v1 import PREDICT_ROUTE
from service.api.v2 import INFER_ROUTE
from service.manifest import Manifest
from service.server import DRAIN_CUT_SHORT
from tests.reliability.conftest import StartServer
from tests.reliability.helpers import accepts
from tests.service.helpers import Server

RECORDS = 2_000
EXIT_SECONDS = 10.0
PREDICT = "/v1/models/churn/predict"
INFER = "/v2/models/churn/infer"


def test_a_request_in_flight_at_sigterm_is_answered_and_the_exit_is_clean(
    registry_dir: Path, churn: Manifest, start_server: StartServer
) -> None:
    server = start_server(registry_dir, PREDICT_POLL_INTERVAL_SECONDS="0")
    body = json.dumps({"records": [churn.examples[0].record] * RECORDS}).encode()
    half = len(body) // 2
    with socket.create_connection(("127.0.0.1", server.port), timeout=EXIT_SECONDS) as sock:
        sock.sendall(_head(len(body)) + body[:half])
        time.sleep(0.3)
        _terminate(server)
        time.sleep(0.5)
        assert not accepts(server.port), "a new connection was accepted after SIGTERM"
        sock.sendall(body[half:])
        answer = _read_all(sock)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert len(json.loads(payload)["predictions"]) == RECORDS
    assert _exit_code(server) == 0
    assert "Shutting down" in server.log()


def test_a_client_that_stalls_past_the_grace_period_does_not_hold_the_exit(
    registry_dir: Path, churn: Manifest, start_server: StartServer
) -> None:
    """PREDICT_GRACEFUL_TIMEOUT_SECONDS bounds the wait; the stalled request is cut off."""
    server = start_server(
        registry_dir, PREDICT_POLL_INTERVAL_SECONDS="0", PREDICT_GRACEFUL_TIMEOUT_SECONDS="2"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=EXIT_SECONDS) as sock:
        sock.sendall(_head(1_000_000) + b'{"records": [')
        time.sleep(0.3)
        started = time.monotonic()
        _terminate(server)
        code = _exit_code(server)
        waited = time.monotonic() - started
    assert code == DRAIN_CUT_SHORT
    assert 1.5 < waited < EXIT_SECONDS


@pytest.mark.parametrize("workers", ["1", "2"])
def test_requests_running_when_the_grace_period_ends_get_a_json_503_and_no_traceback(
    registry_dir: Path, start_server: StartServer, workers: str
) -> None:
    """Both APIs' formats; with two workers the supervisor's exit code reports the cut too."""
    server = start_server(
        registry_dir,
        PREDICT_POLL_INTERVAL_SECONDS="0",
        PREDICT_GRACEFUL_TIMEOUT_SECONDS="1",
        PREDICT_WORKERS=workers,
    )
    stalled = {}
    for path in (PREDICT, INFER):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=EXIT_SECONDS)
        sock.sendall(_head(1_000_000, path) + b'{"records": [')
        stalled[path] = sock
    time.sleep(0.3)
    _terminate(server)
    answers = {}
    for path, sock in stalled.items():
        with sock:
            answers[path] = _read_all(sock)
    code = _exit_code(server)

    for path, answer in answers.items():
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 "), answer
        assert b"content-type: application/json" in head.lower()
        assert b"connection: close" in head.lower()
        key = "error" if path == INFER else "detail"
        assert list(json.loads(payload)) == [key]
    log = server.log()
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log
    assert "grace period over" in log
    assert code == DRAIN_CUT_SHORT
    access = [json.loads(line) for line in log.splitlines() if '"service.access"' in line]
    cut = [line["status"] for line in access if line["route"] in (PREDICT_ROUTE, INFER_ROUTE)]
    assert cut == [503, 503], access  # the access line tells what the client got


def test_idle_keep_alive_connections_do_not_delay_the_exit(
    registry_dir: Path, churn: Manifest, start_server: StartServer
) -> None:
    server = start_server(registry_dir, PREDICT_POLL_INTERVAL_SECONDS="0")
    with server.client() as client:
        record = churn.examples[0].record
        assert client.post("/v1/models/churn/predict", json={"records": [record]}).is_success
        started = time.monotonic()
        _terminate(server)
        assert _exit_code(server) == 0
    assert time.monotonic() - started < EXIT_SECONDS / 2


def _head(length: int, path: str = PREDICT) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _terminate(server: Server) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)


def _exit_code(server: Server) -> int:
    assert server.process is not None
    return server.process.wait(timeout=EXIT_SECONDS)


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (it does: a request in flight at shutdown is the last)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
