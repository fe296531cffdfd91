"""The API docs page: Swagger UI from the installed `swagger-ui-bundle-v2` package, no CDN.

FastAPI's own `/docs` loads Swagger UI from a CDN and ReDoc from another, so on a machine without
internet both are blank. Here the page, its scripts, its stylesheet and its icon all come from
this service: the page is FastAPI's (`get_swagger_ui_html`) pointed at our own asset URLs, and the
assets are a fixed table of the package's files. ReDoc is not served (`/redoc` is a 404): no kept
package of ours ships it, and one docs page is enough.

The page starts Swagger UI with one inline script; `BOOTSTRAP_HASHES` are its sha256 sources for
the docs' Content-Security-Policy (`service.security`), computed from the page as rendered, so
the policy follows FastAPI's template wherever it goes.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]  # no py.typed

DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = f"{DOCS_URL}/oauth2-redirect"
OPENAPI_URL = "/openapi.json"  # FastAPI's default, which create_app keeps
PAGE_TITLE = "API docs"
BUNDLE = Path(swagger_ui_path)  # the package's folder of Swagger UI's files
# The folder is named for its Swagger UI release (swagger-ui-5.31.0): in the URL, it lets a
# browser keep the files for good, and an upgrade changes every asset URL.
ASSETS_URL = f"{DOCS_URL}/static/{BUNDLE.name}"
# Only these files of the package are served (its index.html and initializer would point
# Swagger UI at the public petstore); nothing from a URL is joined into a path.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "oauth2-redirect.js": "text/javascript; charset=utf-8",
    "swagger-ui-bundle.js.map": "application/json",  # asked for by a browser's developer tools
    "swagger-ui.css.map": "application/json",
}
FOREVER = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.I)

router = APIRouter(include_in_schema=False)


def render_page() -> bytes:
    """FastAPI's Swagger UI page with every URL on this service."""
    page = get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title=PAGE_TITLE,
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        oauth2_redirect_url=OAUTH2_REDIRECT_URL,
    )
    return bytes(page.body)


def script_hashes(html: bytes) -> list[str]:
    """The CSP sources (`'sha256-...'`) that allow exactly the page's inline scripts."""
    digests = (hashlib.sha256(s.encode()).digest() for s in INLINE_SCRIPT.findall(html.decode()))
    return [f"'sha256-{base64.b64encode(digest).decode()}'" for digest in digests]


PAGE = render_page()
BOOTSTRAP_HASHES = script_hashes(PAGE)
# The bundle's redirect page, with its script's URL made absolute (its own is relative).
OAUTH2_REDIRECT_PAGE = (
    '<!doctype html>\n<html lang="en-US">\n<head><title>Swagger UI: OAuth2 Redirect</title></head>'
    f'\n<body>\n<script src="{ASSETS_URL}/oauth2-redirect.js"></script>\n</body>\n</html>\n'
)


@router.get(DOCS_URL)
async def swagger_ui() -> Response:
    """The docs page; it reads the schema from /openapi.json, so it shows the models served now."""
    return HTMLResponse(PAGE, headers={"Cache-Control": NO_CACHE})


@router.get(OAUTH2_REDIRECT_URL)
async def oauth2_redirect() -> Response:
    """Where an OAuth2 login started in Swagger UI returns (the API has none today)."""
    return HTMLResponse(OAUTH2_REDIRECT_PAGE, headers={"Cache-Control": NO_CACHE})


@router.get(f"{ASSETS_URL}/{{name}}")
async def asset(name: str) -> Response:
    """One file of the table above, from the installed package."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404)
    return FileResponse(BUNDLE / name, media_type=media_type, headers={"Cache-Control": FOREVER})
