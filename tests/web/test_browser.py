"""The page end to end in a real browser: Debian's chromium driven by Playwright, real server.

Skipped where chromium or Playwright is missing, except under CI (the CI variable set), where a
missing browser is a failure: CI must install `chromium` (apt) and `playwright` (pip).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.manifest import Feature, Manifest
from tests.service.helpers import Server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}
SHOT = Path("/tmp/web-shot.png")
TIMEOUT_MS = 20_000


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run in CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, web_server: Server) -> Iterator[Any]:
    """A fresh page; a console error (a CSP violation, a 404, a script error) fails the test.

    Chromium also logs the API's 422 answers, which the batch error view asks for on purpose.
    """
    context = browser.new_context(viewport=DESKTOP, base_url=web_server.url, accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    opened.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" and "422" not in m.text else None,
    )
    opened.on("pageerror", lambda e: problems.append(str(e)))
    yield opened
    context.close()
    assert problems == []


def outside_training(manifest: Manifest) -> tuple[Feature, float]:
    """A numeric feature and a value allowed by its domain but above everything seen in training."""
    for feature in manifest.features:
        if feature.type == "float" and None not in (feature.max, feature.train_max):
            assert feature.max is not None and feature.train_max is not None
            if feature.train_max < feature.max:
                return feature, round((feature.train_max + feature.max) / 2, 1)
    raise AssertionError("no feature has room above its training range")


def examples_csv(manifest: Manifest, path: Path, bad_row: int | None = None) -> Path:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["player_id", *(f.name for f in manifest.features)])
    for i, example in enumerate(manifest.examples):
        values = [example.record[f.name] for f in manifest.features]
        if i == bad_row:
            values[0] = "tall"
        writer.writerow([f"p{i}", *values])
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def test_predict_a_record_and_read_the_range_warning(
    page: Any, web: httpx.Client, draft_pick_manifest: Manifest, tmp_path: Path
) -> None:
    manifest = draft_pick_manifest
    feature, value = outside_training(manifest)
    page.goto("/?model=draft_pick")
    field = page.locator(f"#f-{feature.name}")
    field.wait_for()
    first = manifest.examples[0].record
    assert float(field.input_value()) == pytest.approx(float(first[feature.name]))

    field.fill(str(value))
    page.get_by_role("button", name="Predict", exact=True).click()
    page.locator("#result:not([hidden])").wait_for()

    record = {**first, feature.name: value}
    expected = web.post("/v1/models/draft_pick/predict", json={"records": [record]}).json()
    prediction = expected["predictions"][0]
    assert page.locator("#result-label").inner_text() == prediction["label"]
    meter = page.get_by_role("meter", name=f"Probability of {manifest.positive_label}")
    shown = float(meter.get_attribute("aria-valuenow"))
    assert shown == pytest.approx(prediction["probability"] * 100, abs=0.05)
    warning = page.locator("#warnings li").first.inner_text()
    assert warning.startswith(f"{feature.label}: {value:g} {feature.unit} is above")
    assert "is above every value seen in training" in warning
    assert f"max {feature.train_max:g} {feature.unit}" in warning

    page.screenshot(path=str(tmp_path / "predict-desktop.png"), full_page=True)
    page.screenshot(path=str(SHOT), full_page=True)


def test_upload_a_csv_and_download_the_scored_file(
    page: Any, web: httpx.Client, draft_pick_manifest: Manifest, tmp_path: Path
) -> None:
    source = examples_csv(draft_pick_manifest, tmp_path / "players.csv")
    page.goto("/?model=draft_pick")
    page.get_by_role("tab", name="Score a file").click()
    page.get_by_label("CSV file").set_input_files(str(source))
    page.get_by_role("button", name="Score file").click()
    page.locator("#batch-result:not([hidden])").wait_for()

    rows = len(draft_pick_manifest.examples)
    assert f"{rows} rows scored, 0 errors" in page.locator("#batch-summary").inner_text()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the scored CSV").click()
    saved = tmp_path / "downloaded.csv"
    download_info.value.save_as(str(saved))

    expected = web.post(
        "/v1/models/draft_pick/predict",
        content=source.read_bytes(),
        headers={"Content-Type": "text/csv"},
    )
    assert saved.read_bytes() == expected.content
    scored = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert [row["player_id"] for row in scored] == [f"p{i}" for i in range(rows)]


def test_a_csv_with_a_bad_row_lists_its_row_and_column(
    page: Any, draft_pick_manifest: Manifest, tmp_path: Path
) -> None:
    source = examples_csv(draft_pick_manifest, tmp_path / "bad.csv", bad_row=1)
    page.goto("/?model=draft_pick")
    page.get_by_role("tab", name="Score a file").click()
    page.get_by_label("CSV file").set_input_files(str(source))
    page.get_by_role("button", name="Score file").click()
    page.locator("#batch-errors:not([hidden])").wait_for()

    assert "1 error in 1 row" in page.locator("#batch-error-summary").inner_text()
    cells = page.locator("#batch-error-table tbody tr").first.locator("td").all_inner_texts()
    first_feature = draft_pick_manifest.features[0].name
    assert cells[:2] == ["2", first_feature]  # the second data row, counted from 1
    assert "valid number" in cells[2]
    assert cells[3] == "tall"


def test_the_form_shows_each_feature_by_its_label(page: Any, churn_manifest: Manifest) -> None:
    page.goto("/?model=churn")
    page.locator("#f-has_cr_card").wait_for()
    for feature in churn_manifest.features:
        text = page.locator(f'label[for="f-{feature.name}"]').inner_text()
        assert text.startswith(feature.label), (feature.name, text)
        assert page.locator(f"#f-{feature.name}").get_attribute("name") == feature.name
    label = page.locator('label[for="f-has_cr_card"]').inner_text()
    assert label == "Has a credit card"
    assert page.locator('label[for="f-num_of_products"]').inner_text() == "Number of products"
    assert page.locator('label[for="f-credit_score"]').inner_text() == "Credit score (points)"
    assert page.get_by_label("Country").get_attribute("id") == "f-geography"


def test_the_model_card_lists_features_by_label_and_name(
    page: Any, churn_manifest: Manifest
) -> None:
    page.goto("/?model=churn")
    page.get_by_role("tab", name="Model card").click()
    rows = page.locator("#card-features tbody tr")
    rows.first.wait_for()
    assert rows.count() == len(churn_manifest.features)
    for row, feature in zip(rows.all(), churn_manifest.features, strict=True):
        cells = [cell.inner_text() for cell in row.locator("th, td").all()]
        assert cells[:3] == [feature.label, feature.name, feature.type]
    products = rows.nth(churn_manifest.features.index(churn_manifest.feature("num_of_products")))
    assert products.locator("td").last.inner_text() == "1 to 4 products"


def test_the_model_card_shows_metrics_and_loads_every_plot(
    page: Any, churn_manifest: Manifest, tmp_path: Path
) -> None:
    page.goto("/?model=churn")
    page.get_by_role("tab", name="Model card").click()
    page.locator("#card-facts dd").first.wait_for()
    assert churn_manifest.version in page.locator("#card-facts").inner_text()
    assert "Bayes-optimal" in page.locator("#card-metrics thead").inner_text()
    images = page.locator("#card-plots img")
    assert images.count() == 5
    page.wait_for_function(
        "[...document.querySelectorAll('#card-plots img')]"
        ".every((img) => img.complete && img.naturalWidth > 0)"
    )
    page.screenshot(path=str(tmp_path / "card-desktop.png"), full_page=True)


def test_the_page_fits_a_phone_screen(page: Any, tmp_path: Path) -> None:
    page.set_viewport_size(PHONE)
    page.goto("/?model=churn")
    page.locator("#f-age").wait_for()
    for tab in ("Predict", "Score a file", "Model card"):
        page.get_by_role("tab", name=tab).click()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{tab}: the page is {width}px wide"
    page.get_by_role("tab", name="Predict").click()
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    page.screenshot(path=str(SHOT.with_name("web-shot-phone.png")))
