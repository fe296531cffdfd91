"""Admin routes, behind a bearer token from PREDICT_ADMIN_TOKEN (absent token = routes disabled)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from service.api.context import context, json_response
from service.errors import AdminDisabled, Forbidden, Unauthenticated

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/reload")
async def reload(request: Request) -> Response:
    """Re-read every task's `current` pointer now; load, self-check and swap what changed.

    Versions that failed before are retried. 404 when admin is disabled, 401 without a bearer
    token, 403 with a wrong one.
    """
    _authorize(request)
    registry = context(request).registry
    outcomes = await run_in_threadpool(registry.refresh, True)
    return json_response(
        {
            "ready": registry.is_ready(),
            "models": {
                o.name: {"version": o.version, "changed": o.changed, "error": o.error}
                for o in outcomes
            },
        }
    )


def _authorize(request: Request) -> None:
    token = context(request).settings.admin_token
    if token is None:
        raise AdminDisabled()
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthenticated()
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise Forbidden()
