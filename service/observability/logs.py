"""JSON-lines logging: one object per line, so log shippers need no parsing rules.

Callers pass structured fields as `extra={"fields": {...}}`; request bodies are never logged.
The per-request access line has its own quick writer (`access_line`).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import orjson

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")
# The handler `configure_logging` installed, which `access_line` writes to directly.
_service_handler: logging.StreamHandler[Any] | None = None
# The last whole second `timestamp` formatted, and its text.
_second: tuple[int, str] = (-1, "")


class JsonFormatter(logging.Formatter):
    """Timestamp, level, logger, message, the record's `fields`, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record.created, record.levelname, record.name, record.getMessage())
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _entry(created: float, level: str, logger: str, message: str) -> dict[str, Any]:
    return {
        "ts": timestamp(created),
        "level": level,
        "logger": logger,
        "msg": message,
    }


def timestamp(created: float) -> str:
    """`datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")`, quicker: the
    date and the time of day are formatted once per second."""
    fraction, whole = math.modf(created)
    micros = round(fraction * 1e6)  # as datetime rounds, half to even
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    second = int(whole)
    global _second
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{micros // 1000:03d}+00:00"


def access_line(logger: logging.Logger, message: str, fields: dict[str, Any]) -> None:
    """Log `message` with `fields` at INFO: the line `JsonFormatter` would write, written directly.

    Through `Logger.info` one access line costs a `LogRecord`, the handler chain and the
    formatter, a share of a one-record request worth saving (bench/RESULTS.md). Only while the
    service's own logging set-up is in force (`configure_logging`: one JSON handler on the root,
    nothing on the way to it); otherwise, as under pytest's log capture or a handler an operator
    added, the line goes through `logging` as any other.
    """
    handler = _service_handler
    if handler is None or not _reaches_only(logger, handler):
        logger.info(message, extra={"fields": fields})
        return
    entry = _entry(time.time(), "INFO", logger.name, message)
    entry.update(fields)
    line = orjson.dumps(entry, default=str).decode() + handler.terminator
    try:
        with handler.lock:  # type: ignore[union-attr]  # created with every Handler
            handler.stream.write(line)
            handler.stream.flush()
    except Exception:  # a closed or broken stream: logging reports it (`handleError`), and the
        logger.info(message, extra={"fields": fields})  # request goes on, as with any log line


def _reaches_only(logger: logging.Logger, handler: logging.Handler) -> bool:
    """Whether an INFO record of `logger` would pass no filter and reach `handler` alone."""
    if logger.disabled or logger.filters or not logger.isEnabledFor(logging.INFO):
        return False
    node: logging.Logger | None = logger
    while node is not None and node is not logging.root:
        if node.handlers or not node.propagate:
            return False
        node = node.parent
    return (
        logging.root.handlers == [handler] and not handler.filters and handler.level <= logging.INFO
    )


def configure_logging(level: str) -> None:
    """Route the root logger (and uvicorn's, which propagate) to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    global _service_handler
    _service_handler = handler
    root.setLevel(level)
    # The documented logging optimisations: nothing here prints the caller's frame, thread or
    # process, and collecting them cost about a third of each per-request access line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # The request context writes one richer line per request; uvicorn's own would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
