"""What every route needs from the app (settings, registry, metrics), kept on `app.state`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from starlette.requests import Request

from service.api.lane import Lane
from service.observability.metrics import Metrics
from service.registry import ModelRegistry
from service.settings import Settings


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    registry: ModelRegistry
    metrics: Metrics
    lane: Lane = field(default_factory=Lane)  # big batches, one at a time (service.api.lane)


def context(request: Request) -> AppContext:
    """The app's context; plain attribute access, cheaper than a dependency on the hot path."""
    return cast(AppContext, request.app.state.context)
