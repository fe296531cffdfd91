"""The web page: its static files, the model card data and the report plots of served versions.

Nothing from a URL is ever joined into a file path: static files and plot names are looked up in
fixed tables, and plots are read only from the folder of the version the registry has loaded.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response

from service.api.context import context
from service.api.responses import json_response
from service.card import PLOTS, REPORT_FOLDER, model_card

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
# No inline script or style anywhere, so the policy can forbid both; the page talks only to us.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
STATIC_PATHS = {name: WEB_DIR / name for name in STATIC_TYPES}
NO_CACHE = "no-cache"
FOREVER = "public, max-age=31536000, immutable"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> Response:
    """The page itself; every model is chosen and described from the API at run time."""
    return _static("index.html")


@router.get("/web/{name}")
async def static_file(name: str) -> Response:
    if name not in STATIC_TYPES:
        raise HTTPException(404)
    return _static(name)


@router.get("/web/models/{task}/card")
async def card(task: str, request: Request) -> Response:
    """The model card data of the served version (404 unknown, 503 not loaded)."""
    model = context(request).registry.get(task)
    content = await run_in_threadpool(model_card, model)
    return json_response(content, headers={**SECURITY_HEADERS, "Cache-Control": NO_CACHE})


@router.get("/web/models/{task}/versions/{version}/report/{name}")
async def report_plot(task: str, version: str, name: str, request: Request) -> Response:
    """A report plot of the version being served; any other version or file name is a 404."""
    model = context(request).registry.get(task)
    file = next((plot for plot in PLOTS if plot == name), None)
    if file is None or version != model.version:
        raise HTTPException(404)
    path = model.path / REPORT_FOLDER / file
    try:
        content = await run_in_threadpool(path.read_bytes)
    except OSError as exc:
        raise HTTPException(404) from exc
    headers = {**SECURITY_HEADERS, "Cache-Control": FOREVER}
    return Response(content, media_type="image/png", headers=headers)


def _static(name: str) -> Response:
    """Small files read per request, so an edited page shows without a restart."""
    try:
        content = STATIC_PATHS[name].read_bytes()
    except OSError as exc:
        raise HTTPException(404) from exc
    headers = {**SECURITY_HEADERS, "Cache-Control": NO_CACHE}
    return Response(content, media_type=STATIC_TYPES[name], headers=headers)
