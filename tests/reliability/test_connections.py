"""The connection cap (PREDICT_MAX_CONNECTIONS): past it a new connection gets a 503 and is closed.

Before the cap, 1,100 half-open connections (connected, sending nothing or part of their
headers) were all held open. With a cap of 20, the 20 idle connections are held, the 21st is
answered at once and closed, and once the idle ones go the server predicts as before.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from service.manifest import Manifest
from tests.reliability.conftest import StartServer

CAP = 20
ANSWER_SECONDS = 10.0  # a socket timeout, so a broken server fails the test instead of hanging it
PARTIAL_HEADERS = b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"


def test_a_connection_past_the_cap_gets_a_503_and_is_closed_and_the_idle_ones_are_held(
    registry_dir: Path, churn: Manifest, start_server: StartServer
) -> None:
    server = start_server(
        registry_dir, PREDICT_POLL_INTERVAL_SECONDS="0", PREDICT_MAX_CONNECTIONS=str(CAP)
    )
    idle = [_connect(server.port) for _ in range(CAP)]
    try:
        for sock in idle[::2]:  # half send nothing, half stop inside their headers
            sock.sendall(PARTIAL_HEADERS)
        with _connect(server.port) as extra:
            answer = _read_all(extra)  # returns once the server has closed the connection
        # Each idle connection was held, never answered: closing our side, we read only the end.
        for sock in idle:
            sock.shutdown(socket.SHUT_WR)
            assert _read_all(sock) == b""
    finally:
        for sock in idle:
            sock.close()

    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer
    assert b"connection: close" in head.lower()
    assert b"content-type: application/json" in head.lower()
    assert json.loads(payload) == {"detail": "too many connections"}
    assert "too many connections" in server.log()
    with server.client() as client:
        record = churn.examples[0].record
        response = client.post("/v1/models/churn/predict", json={"records": [record]})
    assert response.status_code == 200, response.text


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=ANSWER_SECONDS)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
