"""JSON-lines logging: one object per line, so log shippers need no parsing rules.

Callers pass structured fields as `extra={"fields": {...}}`; request bodies are never logged.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")


class JsonFormatter(logging.Formatter):
    """Timestamp, level, logger, message, the record's `fields`, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    """Route the root logger (and uvicorn's, which propagate) to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
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
    # service.middleware writes one richer line per request; uvicorn's own would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
