"""The web routes: the page and its files, security headers, model card data, report plots."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from service.api.web import PLOTS, SECURITY_HEADERS, STATIC_TYPES
from service.manifest import Manifest
from tests.service.helpers import Server, copy_registry


class _Inline(HTMLParser):
    """Collects what a strict Content-Security-Policy would block: inline scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style" or "style" in names or any(n.startswith("on") for n in names):
            self.problems.append(f"<{tag} {sorted(names)}>")
        if tag == "script":
            self._in_script = True
            if "src" not in names:
                self.problems.append("<script> without src")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script")


def plot_url(manifest: Manifest, name: str) -> str:
    return f"/web/models/{manifest.name}/versions/{manifest.version}/report/{name}"


def test_the_page_is_served_at_the_root_with_security_headers(web: httpx.Client) -> None:
    response = web.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    policy = response.headers["content-security-policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"


def test_the_page_has_no_inline_script_or_style_and_no_outside_url(web: httpx.Client) -> None:
    html = web.get("/").text
    parser = _Inline()
    parser.feed(html)
    assert parser.problems == []
    for name in STATIC_TYPES:
        text = web.get(f"/web/{name}").text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text, name


def test_static_files_have_their_types_and_unknown_names_are_404(web: httpx.Client) -> None:
    for name, media_type in STATIC_TYPES.items():
        response = web.get(f"/web/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == media_type
        assert response.headers["x-content-type-options"] == "nosniff"
    for path in ("/web/nope.js", "/web/", "/web/__init__.py", "/web/APP.JS"):
        assert web.get(path).status_code == 404, path


@pytest.mark.parametrize(
    "path",
    [
        "/web/..%2fapp.py",
        "/web/%2e%2e%2fapi%2fweb.py",
        "/web/..%5capp.py",
        "/web/models/churn/versions/{v}/report/..%2fmanifest.json",
        "/web/models/churn/versions/{v}/report/..%2f..%2fcurrent",
        "/web/models/churn/versions/{v}/report/%2e%2e%2fmodel.onnx",
        "/web/models/churn/versions/{v}/report/metrics.json",
        "/web/models/churn/versions/{v}/report/model_card.md",
        "/web/models/churn/versions/{v}/report/ROC.png",
        "/web/models/churn/versions/..%2f{v}/report/roc.png",
        "/web/models/churn/versions/older/report/roc.png",
        "/web/models/..%2fchurn/versions/{v}/report/roc.png",
        "/web/models/nope/versions/{v}/report/roc.png",
        "/web/models/nope/card",
    ],
)
def test_path_traversal_and_unlisted_files_are_404(
    web: httpx.Client, churn_manifest: Manifest, path: str
) -> None:
    response = web.get(path.format(v=churn_manifest.version))
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/json"


def test_the_model_card_gives_version_provenance_metrics_and_plots(
    web: httpx.Client, draft_pick_manifest: Manifest
) -> None:
    response = web.get("/web/models/draft_pick/card")
    assert response.status_code == 200
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    assert response.headers["content-security-policy"] == policy
    card = response.json()
    manifest = draft_pick_manifest
    assert card["version"] == manifest.version
    assert card["created_at"] == manifest.created_at.isoformat()
    assert card["data"]["source"] == manifest.data.source
    assert card["data"]["rows"] == manifest.data.rows
    assert card["threshold"] == manifest.threshold
    assert card["metrics"]["roc_auc"] == manifest.metrics.roc_auc
    assert manifest.metrics.bayes_roc_auc is not None  # generated data: the truth is known
    assert card["metrics"]["bayes_roc_auc"] == manifest.metrics.bayes_roc_auc
    assert [p["file"] for p in card["plots"]] == list(PLOTS)
    for plot in card["plots"]:
        assert plot["url"] == plot_url(manifest, plot["file"])
    (confusion,) = [p for p in card["plots"] if p["file"] == "confusion_matrix.png"]
    rows = f"on the {manifest.metrics.rows:,} rows of the {manifest.metrics.sample}"
    assert confusion["title"] == f"Confusion matrix {rows}" and "fresh sample" in rows


def test_the_model_card_lists_every_feature_with_its_label(
    web: httpx.Client, churn_manifest: Manifest
) -> None:
    card = web.get("/web/models/churn/card").json()
    assert [(f["name"], f["label"]) for f in card["features"]] == [
        (f.name, f.label) for f in churn_manifest.features
    ]
    products = next(f for f in card["features"] if f["name"] == "num_of_products")
    assert products == {
        "name": "num_of_products",
        "label": "Number of products",
        "type": "int",
        "unit": "products",
        "min": 1,
        "max": 4,
        "categories": None,
    }


def test_the_page_is_given_every_feature_label(web: httpx.Client) -> None:
    features = web.get("/v1/models/churn").json()["features"]
    labels = {f["name"]: f["label"] for f in features}
    assert labels["has_cr_card"] == "Has a credit card"
    assert labels["age"] == "Age"  # no label in the spec: the name in words


def test_report_plots_of_the_served_version_are_png_and_cacheable(
    web: httpx.Client, web_registry: Path, churn_manifest: Manifest
) -> None:
    folder = web_registry / "churn" / churn_manifest.version / "report"
    for name in PLOTS:
        response = web.get(plot_url(churn_manifest, name))
        assert response.status_code == 200, name
        assert response.headers["content-type"] == "image/png"
        assert response.content == (folder / name).read_bytes()
        assert "immutable" in response.headers["cache-control"]
        assert response.headers["x-content-type-options"] == "nosniff"


def test_a_version_without_report_lists_no_plots(
    web_registry: Path,
    tmp_path: Path,
    start_server: Callable[..., Server],
    churn_manifest: Manifest,
) -> None:
    models = copy_registry(web_registry, tmp_path / "models")  # copies everything but report/
    server = start_server(models, PREDICT_POLL_INTERVAL_SECONDS="0")
    with server.client() as client:
        assert client.get("/web/models/churn/card").json()["plots"] == []
        assert client.get(plot_url(churn_manifest, "roc.png")).status_code == 404
