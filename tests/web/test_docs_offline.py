"""/docs works without internet: Swagger UI from the service itself, under a tight policy.

The browser test runs the real server on the committed models in headless Chromium with every
host but the loopback one unreachable; the HTTP tests read the pages and headers themselves.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from service.api import docs
from service.manifest import Manifest
from service.security import DOCS_POLICY
from tests.service.helpers import REPO, Server, manifest_of
from tests.web.test_browser import DESKTOP, TIMEOUT_MS, browser

__all__ = ["browser"]  # a fixture, used by name

MODELS = REPO / "models"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
PREDICT = "/v1/models/churn/predict"
# Every page the service serves, and the files the web page is made of.
PAGES = ["/docs", docs.OAUTH2_REDIRECT_URL, "/", "/web/app.js", "/web/style.css", "/web/icon.svg"]
URL = re.compile(r"https?://[^\s\"'<>()]+", re.I)
XML_NAMESPACE = re.compile(r"\bxmlns(?::\w+)?=\"[^\"]*\"")  # a name, never fetched
RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


class _Page(HTMLParser):
    """The inline scripts of a page and the URLs it loads (src, href)."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts: list[str] = []
        self.urls: list[str] = []
        self._script: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.urls += [url for name in ("src", "href") if (url := found.get(name)) is not None]
        if tag == "script" and "src" not in found:
            self._script = []

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.inline_scripts.append("".join(self._script))
            self._script = None


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`python -m service` on the committed models, alone in this module (no gRPC port)."""
    log = tmp_path_factory.mktemp("docs-logs") / "server.log"
    env = {"PREDICT_POLL_INTERVAL_SECONDS": "0", "PREDICT_GRPC_PORT": "0"}
    running = Server(MODELS, log, env).start()
    yield running
    running.stop()


@pytest.fixture
def http(docs_server: Server) -> Iterator[httpx.Client]:
    with docs_server.client() as client:
        yield client


@pytest.fixture(scope="module")
def churn() -> Manifest:
    return manifest_of(MODELS, "churn")


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def outside_urls(text: str) -> list[str]:
    urls = URL.findall(XML_NAMESPACE.sub("", text))
    return [url for url in urls if urlsplit(url).hostname not in LOOPBACK]


def test_no_page_the_service_serves_names_an_outside_url(http: httpx.Client) -> None:
    for path in PAGES:
        response = http.get(path)
        assert response.status_code == 200, path
        assert outside_urls(response.text) == [], path


def test_the_docs_page_loads_only_files_the_service_serves(http: httpx.Client) -> None:
    for path in ("/docs", docs.OAUTH2_REDIRECT_URL):
        urls = parse(http.get(path).text).urls
        assert urls, path
        for url in urls:
            assert url.startswith(f"{docs.ASSETS_URL}/"), url
            response = http.get(url)
            assert response.status_code == 200, url
            assert response.headers["content-type"] == docs.ASSETS[url.rsplit("/", 1)[1]]


def test_the_docs_policy_allows_only_our_files_and_the_page_bootstrap(http: httpx.Client) -> None:
    response = http.get("/docs")
    policy = response.headers["content-security-policy"]
    assert policy == DOCS_POLICY
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["img-src"] == "'self' data:"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in directives["script-src"]
    script_sources = directives["script-src"].split()
    assert script_sources[0] == "'self'"
    served = [_sha256_source(s) for s in parse(response.text).inline_scripts]
    assert len(served) == 1, "FastAPI's page starts Swagger UI with one inline script"
    assert script_sources[1:] == served
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_redoc_is_not_served_and_only_the_listed_assets_are(http: httpx.Client) -> None:
    assert http.get("/redoc").status_code == 404
    assert http.get(f"{docs.ASSETS_URL}/index.html").status_code == 404  # names the petstore
    assert http.get(f"{docs.ASSETS_URL}/..%2f..%2f__init__.py").status_code == 404
    assert http.get("/docs/static/swagger-ui-0.0.1/swagger-ui.css").status_code == 404


def test_with_api_keys_the_docs_still_open_without_one(
    start_server: Callable[..., Server], churn: Manifest
) -> None:
    server = start_server(MODELS, PREDICT_API_KEYS="docs-key", PREDICT_GRPC_PORT="0")
    with server.client() as client:
        page = client.get("/docs")
        assert page.status_code == 200
        for path in [docs.OAUTH2_REDIRECT_URL, "/openapi.json", *parse(page.text).urls]:
            assert client.get(path).status_code == 200, path
        body = {"records": [churn.examples[0].record]}
        assert client.post(PREDICT, json=body).status_code == 401


def test_try_it_out_predicts_one_record_with_every_outside_host_unreachable(
    browser: Any, docs_server: Server, http: httpx.Client, churn: Manifest, tmp_path: Path
) -> None:
    context = browser.new_context(viewport=DESKTOP, base_url=docs_server.url)
    attempted: list[str] = []

    def only_loopback(route: Any) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_loopback)
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto("/docs")
        for model in ("churn", "draft_pick", "digits"):
            path = f"/v1/models/{model}/predict"
            page.locator(f".opblock-post .opblock-summary-path[data-path='{path}']").wait_for()
        operation = page.locator(".opblock-post").filter(
            has=page.locator(f".opblock-summary-path[data-path='{PREDICT}']")
        )
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        record = churn.examples[0].record
        operation.locator("textarea.body-param__text").fill(json.dumps({"records": [record]}))
        operation.get_by_role("button", name="Execute").click()
        answer = operation.locator(".live-responses-table tbody tr.response")
        answer.wait_for()
        status = answer.locator(".response-col_status").inner_text()
        shown = json.loads(answer.locator(".response-col_description pre").first.inner_text())
        page.screenshot(path=str(tmp_path / "docs-try-it-out.png"), full_page=True)
        violations = page.evaluate("window.cspViolations")
    finally:
        context.close()

    assert status.strip() == "200"
    expected = http.post(PREDICT, json={"records": [record]}).json()
    assert len(shown["predictions"]) == 1
    assert shown["predictions"] == expected["predictions"]
    assert attempted == []
    assert violations == []
    assert errors == []


def _sha256_source(script: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
