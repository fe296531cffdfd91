"""Liveness, readiness (per-model state and last reload error) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from service.api.context import context, json_response

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> Response:
    """The process answers; says nothing about models (that is /readyz)."""
    return json_response({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """200 when every task in the registry serves a verified version, else 503; names each state."""
    registry = context(request).registry
    ready = registry.is_ready()
    models = {
        status.name: {
            "state": status.state,
            "version": status.version,
            "loaded_at": status.loaded_at.isoformat() if status.loaded_at else None,
            "last_error": status.error,
            "last_error_version": status.error_version,
            "checked_at": status.checked_at.isoformat() if status.checked_at else None,
        }
        for status in registry.statuses()
    }
    body = {"ready": ready, "models": models}
    if not models:
        body["reason"] = "no models found in the registry folder (PREDICT_MODELS_DIR)"
    return json_response(body, 200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(context(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
