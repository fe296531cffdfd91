"""Logs are JSON lines; the access line has a quick writer that must write what logging would."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.manifest import Manifest
from service.observability import logs
from service.observability.logs import access_line, configure_logging, timestamp
from tests.reliability.helpers import wait_until
from tests.service.helpers import Server

# Fractions next to a millisecond or second boundary, where rounding to microseconds carries.
EDGES = [1763812345.9999996, 1763812345.0009995, 1763812345.1239999996, 0.0, 59.9999999]
FIELDS = {"request_id": "abc", "status": 200, "records": 1, "latency_ms": 0.25, "model": None}


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The service's logging set-up, writing to a buffer; logging's state restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logs._service_handler)
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    configure_logging("INFO")
    yield buffer
    root.handlers[:], root.level, logs._service_handler = saved


@contextmanager
def alone() -> Iterator[list[logging.LogRecord]]:
    """Only the service's handler on the root (pytest adds its own for each test), and the log
    records made meanwhile: the quick writer makes none."""
    root = logging.getLogger()
    handlers, factory = root.handlers[:], logging.getLogRecordFactory()
    made: list[logging.LogRecord] = []

    def counted(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(factory(*args, **kwargs))
        return made[-1]

    root.handlers[:] = [logs._service_handler] if logs._service_handler else []
    logging.setLogRecordFactory(counted)
    try:
        yield made
    finally:
        root.handlers[:] = handlers
        logging.setLogRecordFactory(factory)


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_the_quick_access_line_is_the_line_logging_writes(stderr: io.StringIO) -> None:
    logger = logging.getLogger("service.access.test")
    with alone() as made:
        access_line(logger, "request", FIELDS)
        assert made == []  # written directly
        logger.info("request", extra={"fields": FIELDS})  # through logging and the formatter
        assert len(made) == 1
    quick, through_logging = _lines(stderr)
    assert quick.pop("ts")[:4] == through_logging.pop("ts")[:4]
    assert quick == through_logging
    assert list(quick) == ["level", "logger", "msg", *FIELDS]
    assert quick["logger"] == "service.access.test"


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False) | st.sampled_from(EDGES))
def test_the_timestamp_is_the_one_datetime_writes(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert timestamp(created) == expected


def test_the_access_line_goes_through_logging_when_another_handler_listens(
    stderr: io.StringIO,
) -> None:
    """Under pytest's log capture, or a handler an operator added, every handler gets the line."""
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger = logging.getLogger("service.access.test")
    with alone():
        logging.getLogger().addHandler(Collect())
        access_line(logger, "request", FIELDS)
    assert [record.fields for record in seen] == [FIELDS]  # type: ignore[attr-defined]
    assert _lines(stderr)[0]["request_id"] == "abc"  # and the service's handler still wrote it


def test_a_broken_log_stream_never_fails_the_request(stderr: io.StringIO) -> None:
    """A write error is logging's to report (as `StreamHandler.emit` does), not the caller's."""

    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError("the log reader went away")

    handler = logs._service_handler
    assert handler is not None
    handler.setStream(Broken())
    with alone() as made:
        access_line(logging.getLogger("service.access.test"), "request", FIELDS)
    assert len(made) == 1  # handed to logging, whose handler reports the error and goes on


@pytest.mark.parametrize("change", ["level", "filter", "disabled", "no propagation"])
def test_the_access_line_respects_the_logging_configuration(
    stderr: io.StringIO, change: str
) -> None:
    logger = logging.getLogger(f"service.access.test.{change.replace(' ', '_')}")
    if change == "level":
        logger.setLevel(logging.WARNING)
    elif change == "filter":
        logger.addFilter(lambda record: False)
    elif change == "disabled":
        logger.disabled = True
    else:
        logger.propagate = False
    with alone():
        access_line(logger, "request", FIELDS)
    assert stderr.getvalue() == ""


def test_a_real_server_writes_one_access_line_per_request(server: Server, churn: Manifest) -> None:
    names = {"request_id", "method", "route", "model", "version", "status", "records", "latency_ms"}
    with server.client() as http:
        ok = http.post("/v1/models/churn/predict", json={"records": [churn.examples[0].record]})
        bad = http.post("/v1/models/churn/predict", json={"records": [{"age": 40}]})
    assert (ok.status_code, bad.status_code) == (200, 422)
    ids = {ok.headers["x-request-id"], bad.headers["x-request-id"]}
    # The line is written once the answer is sent: the client may read the log first.
    by_id = wait_until(
        lambda: _by_id(server.log_path) if ids <= set(_by_id(server.log_path)) else None
    )
    good = by_id[ok.headers["x-request-id"]]
    refused = by_id[bad.headers["x-request-id"]]
    assert set(good) == names | {"ts", "level", "logger", "msg"}
    assert good["level"] == "INFO" and good["logger"] == "service.access"
    assert (good["status"], good["records"], good["model"]) == (200, 1, "churn")
    assert good["version"] == churn.version
    assert good["route"] == "/v1/models/{task}/predict" and good["method"] == "POST"
    assert refused["status"] == 422
    assert good["latency_ms"] > 0


def _by_id(path: Path) -> dict[str, dict[str, Any]]:
    return {line["request_id"]: line for line in _access_lines(path)}


def _access_lines(path: Path) -> list[dict[str, Any]]:
    found = []
    for text in path.read_text().splitlines():
        if text.startswith("{") and '"service.access"' in text:
            found.append(json.loads(text))
    return found
