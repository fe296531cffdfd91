"""GET /v1/models/{task}/drift: each feature's Population Stability Index over a recent window of
this worker's traffic against training, and the background push of the drift counters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from service.api.context import AppContext, context, json_response
from service.drift import EPSILON, PREDICTION, WINDOW_CAPACITY, NoReference, Tally, psi, status
from service.errors import InvalidInput, Problem
from service.model import LoadedModel

DEFAULT_WINDOW = "10000"
# How often each worker pushes its drift counts to the counters and sets the PSI gauges.
PUSH_SECONDS = 5.0
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RECORDS = re.compile(r"[0-9]{1,9}")
_DURATION = re.compile(r"([0-9]{1,9})(s|m|h|d)")
WINDOW_HELP = (
    "The last N records (`10000`) or the last minutes (`30s`, `15m`, `2h`, `1d`) of this "
    f"worker's traffic; at most the last {WINDOW_CAPACITY:,} records are kept."
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["v1"])


@dataclass(frozen=True)
class WindowSpec:
    """What the `window` parameter asked for: a number of records or of seconds."""

    text: str
    records: int | None = None
    seconds: float | None = None


@router.get("/models/{task}/drift")
def drift(
    task: str, request: Request, window: str = Query(DEFAULT_WINDOW, description=WINDOW_HELP)
) -> Response:
    """Per feature, the PSI of the window's records against training, its status, the counts and
    shares per bin; the same for the predictions against the test sample's."""
    ctx = context(request)
    model = ctx.registry.get(task)
    spec = parse_window(window)
    tally = ctx.metrics.tally(model)
    if tally is None:
        raise NoReference(model.name, model.version)
    return json_response(report(ctx, model, tally, spec))


def parse_window(text: str) -> WindowSpec:
    """`N` records (1 to WINDOW_CAPACITY) or a duration `N` s/m/h/d; anything else is a 422."""
    value = text.strip()
    if _RECORDS.fullmatch(value) and 1 <= int(value) <= WINDOW_CAPACITY:
        return WindowSpec(value, records=int(value))
    duration = _DURATION.fullmatch(value)
    if duration and int(duration[1]) > 0:
        return WindowSpec(value, seconds=int(duration[1]) * UNITS[duration[2]])
    msg = (
        f"window must be a number of records from 1 to {WINDOW_CAPACITY} or a duration such as "
        "30s, 15m, 2h or 1d"
    )
    raise InvalidInput([Problem(None, "window", msg, "value_error", text[:40])], ("query",))


def report(ctx: AppContext, model: LoadedModel, tally: Tally, spec: WindowSpec) -> dict[str, Any]:
    """The drift answer; every column carries its bins, counts and both shares (for charts)."""
    found = tally.window(spec.records, spec.seconds)
    watch, alert = ctx.settings.drift_watch, ctx.settings.drift_alert
    columns: list[dict[str, Any]] = []
    for column in tally.binning.columns:
        counts = found.counts[column.offset : column.offset + column.size]
        reference = column.distribution.shares
        value = psi(counts, reference)
        total = int(counts.sum())
        columns.append(
            {
                "name": column.name,
                "psi": value,
                "status": status(value, watch, alert),
                "bins": column.distribution.bins,
                "counts": counts.tolist(),
                "window_shares": [c / total if total else 0.0 for c in counts.tolist()],
                "reference_shares": reference,
            }
        )
    prediction = columns.pop()
    labels = {feature.name: feature.label for feature in model.manifest.features}
    for answer in columns:
        answer["label"] = labels[answer["name"]]
    ctx.metrics.observe_psi(model, {str(c["name"]): c["psi"] for c in [*columns, prediction]})
    return {
        "model": model.name,
        "version": model.version,
        "scope": "worker",
        "window": {
            "requested": spec.text,
            "records": found.records,
            "complete": found.complete,
            "capacity": tally.capacity,
        },
        "thresholds": {"watch": watch, "drifted": alert},
        "epsilon": EPSILON,
        "features": columns,
        "prediction": {**prediction, "name": PREDICTION},
    }


@contextlib.asynccontextmanager
async def pushing(ctx: AppContext, interval: float = PUSH_SECONDS) -> AsyncIterator[None]:
    """For the app's lifespan: push the drift counts every `interval` seconds (and at the end)."""
    task = asyncio.create_task(_push_every(ctx, interval))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ctx.metrics.push_drift()  # a stopping worker's last counts


async def _push_every(ctx: AppContext, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(_push, ctx)
        except Exception:  # a bug here must not end the pushing for good
            logger.exception("drift push failed")


def _push(ctx: AppContext) -> None:
    """The counters, then the PSI gauges of the default window (for alerts)."""
    ctx.metrics.push_drift()
    default = parse_window(DEFAULT_WINDOW)
    for model in ctx.registry.models():
        tally = ctx.metrics.tally(model)
        if tally is not None:
            report(ctx, model, tally, default)
