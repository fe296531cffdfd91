"""The page's insight views in Chromium: a prediction's explanation chart and the Drift tab.

Same browser as tests/web/test_browser.py (skipped without chromium or Playwright, except in CI).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.manifest import Manifest, read_pointer
from tests.service.helpers import Server
from tests.web.test_browser import DESKTOP, PHONE, TIMEOUT_MS, browser

__all__ = ["browser"]  # a fixture, used by name

STATUSES = {"stable", "watch", "drifted"}
StartServer = Callable[..., Server]


@contextmanager
def opened(browser: Any, server: Server, allowed: tuple[str, ...] = ()) -> Iterator[Any]:
    """A fresh page on `server`; a console error fails the test unless it names an `allowed`
    status (the refusals a test asks for on purpose)."""
    context = browser.new_context(viewport=DESKTOP, base_url=server.url)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []

    def console(message: Any) -> None:
        if message.type == "error" and not any(code in message.text for code in allowed):
            problems.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert problems == []


@pytest.fixture
def page(browser: Any, web_server: Server) -> Iterator[Any]:
    with opened(browser, web_server) as fresh:
        yield fresh


def send_examples(web: httpx.Client, manifest: Manifest, times: int) -> int:
    records = [example.record for example in manifest.examples] * times
    response = web.post(f"/v1/models/{manifest.name}/predict", json={"records": records})
    assert response.status_code == 200, response.text
    return len(records)


def without_references(source: Path, target: Path, task: str) -> Path:
    """A copy of the registry whose `task` manifest predates drift and explanations."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("report"))
    path = target / task / read_pointer(target / task) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.pop("prediction_distribution", None)
    for feature in manifest["features"]:
        feature.pop("distribution", None)
        feature.pop("reference", None)
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return target


def test_a_prediction_shows_its_explanation_as_bars_and_sentences(
    page: Any, web: httpx.Client, churn_manifest: Manifest, tmp_path: Path
) -> None:
    page.goto("/?model=churn")
    page.locator("#f-age").wait_for()
    page.get_by_role("button", name="Predict", exact=True).click()
    page.locator("#explanation:not([hidden])").wait_for()

    record = churn_manifest.examples[0].record
    answer = web.post("/v1/models/churn/predict?explain=true", json={"records": [record]})
    entries = answer.json()["predictions"][0]["explanation"]
    rows = page.locator("#explanation-chart .contribution-row")
    assert rows.count() == min(10, len(churn_manifest.features))
    first = rows.first.inner_text()
    assert first.startswith(entries[0]["label"])
    moved = [e for e in entries if abs(e["contribution"]) >= 0.005]
    assert moved, "the example moves no feature: pick another"
    up = page.locator("#explanation-chart .contribution-bar.up").count()
    down = page.locator("#explanation-chart .contribution-bar.down").count()
    assert up == sum(e["contribution"] > 0 for e in entries[:10])
    assert down == sum(e["contribution"] < 0 for e in entries[:10])

    sentence = page.locator("#explanation-sentences li").first.inner_text()
    top = moved[0]
    verb = "raised" if top["contribution"] > 0 else "lowered"
    assert sentence.startswith(top["label"]), sentence
    expected = f"{verb} P(churned) by {abs(top['contribution']):.2f}"
    assert sentence.endswith(expected), sentence
    labels = {feature.label for feature in churn_manifest.features}
    assert any(sentence.startswith(label) for label in labels)
    method = page.locator("#explanation-method").inner_text()
    assert "replaced by the training's typical value" in method
    assert method.endswith("Not SHAP.")
    page.screenshot(path=str(tmp_path / "explanation.png"), full_page=True)


def test_the_drift_tab_draws_a_bar_per_feature_and_two_histograms_on_click(
    page: Any, web: httpx.Client, churn_manifest: Manifest, tmp_path: Path
) -> None:
    send_examples(web, churn_manifest, 20)
    page.goto("/?model=churn")
    page.locator("#f-age").wait_for()
    page.get_by_role("tab", name="Drift").click()
    rows = page.locator("#drift-features .psi-row")
    rows.first.wait_for()
    answer = web.get("/v1/models/churn/drift").json()

    assert rows.count() == len(churn_manifest.features)
    for row, feature in zip(rows.all(), answer["features"], strict=True):
        classes = set((row.get_attribute("class") or "").split())
        assert f"status-{feature['status']}" in classes
        assert feature["status"] in STATUSES
        assert row.locator(".psi-name").inner_text() == feature["label"]
        assert row.locator(".psi-value").inner_text() == f"{feature['psi']:.3f}"
    records = answer["window"]["records"]
    assert f"{records:,} records" in page.locator("#drift-summary").inner_text()

    age = answer["features"][[f["name"] for f in answer["features"]].index("age")]
    page.locator('#drift-features .psi-row[data-feature="age"]').click()
    histograms = page.locator("#drift-histograms .histogram")
    histograms.first.wait_for()
    assert histograms.count() == 2
    assert page.locator("#drift-detail-title").inner_text().startswith("Age: PSI")
    shown = [b for b in age["bins"] if b != "missing"]
    for histogram in histograms.all():
        bins = histogram.locator(".hist-bin").all_inner_texts()
        assert bins == shown
    assert re.search(r"Window \([0-9,]+ records\)", histograms.nth(1).inner_text())
    predictions = page.locator("#drift-prediction .histogram")
    assert predictions.count() == 2
    first_bin = predictions.first.locator(".hist-bin").first.inner_text()
    assert re.fullmatch(r"<=[0-9.]+%", first_bin), first_bin  # P(churned) bins in percent
    assert "P(churned) of the predictions" in page.locator("#drift-prediction-note").inner_text()
    page.screenshot(path=str(tmp_path / "drift.png"), full_page=True)


def test_the_drift_tab_fits_a_phone_screen(
    page: Any, web: httpx.Client, churn_manifest: Manifest
) -> None:
    send_examples(web, churn_manifest, 2)
    page.set_viewport_size(PHONE)
    page.goto("/?model=churn")
    page.locator("#f-age").wait_for()
    page.get_by_role("button", name="Predict", exact=True).click()
    page.locator("#explanation:not([hidden])").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.get_by_role("tab", name="Drift").click()
    page.locator("#drift-features .psi-row").first.click()
    page.locator("#drift-histograms .histogram").first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_a_version_without_references_says_why_and_an_empty_window_says_so(
    browser: Any, start_server: StartServer, web_registry: Path, tmp_path: Path
) -> None:
    models = without_references(web_registry, tmp_path / "models", "churn")
    server = start_server(models, PREDICT_POLL_INTERVAL_SECONDS="0")
    with opened(browser, server, allowed=("409",)) as page:
        page.goto("/?model=churn")
        page.locator("#f-age").wait_for()
        page.get_by_role("button", name="Predict", exact=True).click()
        page.locator("#result:not([hidden])").wait_for()
        assert page.locator("#explanation").is_hidden()
        note = page.locator("#explanation-missing").inner_text()
        assert "has no reference values to explain against" in note

        page.get_by_role("tab", name="Drift").click()
        refused = page.locator("#drift-refused")
        refused.wait_for()
        text = refused.inner_text()
        assert "No drift for version" in text
        assert "has no reference distributions; retrain it" in text
        assert page.locator("#drift-chart").is_hidden()

        page.locator("#model").select_option("draft_pick")  # no traffic on this new server
        empty = page.locator("#drift-empty")
        empty.wait_for()
        assert empty.inner_text().startswith("No traffic yet in this window")
        assert "0 records" in page.locator("#drift-summary").inner_text()
        assert page.locator("#drift-refused").is_hidden()
        assert page.locator("#drift-chart").is_hidden()
