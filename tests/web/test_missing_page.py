"""The form of a model whose features may be missing, in a real browser: a nullable field may be
left empty and says what the model then uses, the result lists what was imputed, and a required
field left empty is refused on the page (and by the API, should the page's check be bypassed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.manifest import Manifest
from tests.service.helpers import Server
from tests.service.missing_models import NullableModel, http, nullable, nullable_server
from tests.web.test_browser import DESKTOP, TIMEOUT_MS, browser

__all__ = ["browser", "http", "nullable", "nullable_server"]  # fixtures, used by name


@pytest.fixture
def page(browser: Any, nullable_server: Server, nullable: NullableModel) -> Iterator[Any]:
    """The page of the nullable model; a console error (but the API's 422s) fails the test."""
    context = browser.new_context(viewport=DESKTOP, base_url=nullable_server.url)
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    opened.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" and "422" not in m.text else None,
    )
    opened.on("pageerror", lambda e: problems.append(str(e)))
    opened.goto(f"/?model={nullable.task}")
    opened.locator(f"#f-{nullable.manifest.features[0].name}").wait_for()
    yield opened
    context.close()
    assert problems == []


def nullable_names(manifest: Manifest) -> list[str]:
    return [f.name for f in manifest.features if f.nullable]


def test_an_empty_nullable_field_is_imputed_and_said_so(
    page: Any, http: httpx.Client, nullable: NullableModel
) -> None:
    manifest = nullable.manifest
    number = next(f for f in manifest.features if f.nullable and f.type == "float")
    category = next(f for f in manifest.features if f.nullable and f.type == "category")
    field = page.locator(f"#f-{number.name}")
    placeholder = field.get_attribute("placeholder")
    assert placeholder.startswith(f"empty: {number.impute} ")
    assert placeholder.endswith(" is used")
    hint = page.locator(f"#f-{number.name}-hint").inner_text()
    assert "May be left empty: the model then uses" in hint
    assert field.get_attribute("required") is None
    required = next(f for f in manifest.features if not f.nullable)
    assert page.locator(f"#f-{required.name}").get_attribute("required") == ""
    assert "Required." in page.locator(f"#f-{required.name}-hint").inner_text()

    field.fill("")
    page.select_option(f"#f-{category.name}", "")
    page.get_by_role("button", name="Predict", exact=True).click()
    page.locator("#result:not([hidden])").wait_for()

    notes = page.locator("#imputed li").all_inner_texts()
    imputed = [n for n in nullable_names(manifest) if page.locator(f"#f-{n}").input_value() == ""]
    assert {number.name, category.name} <= set(imputed)
    assert len(notes) == len(imputed)
    assert any("was left empty: the model used" in note for note in notes)
    assert any(str(category.impute_value) in note for note in notes)
    record = {
        f.name: _read(page, f.type, f.name)
        for f in manifest.features
        if page.locator(f"#f-{f.name}").input_value() != ""
    }
    expected = http.post(f"/v1/models/{nullable.task}/predict", json={"records": [record]}).json()
    prediction = expected["predictions"][0]
    assert prediction["imputed"] == imputed
    meter = page.get_by_role("meter", name=f"Probability of {manifest.positive_label}")
    shown = float(meter.get_attribute("aria-valuenow"))
    assert shown == pytest.approx(prediction["probability"] * 100, abs=0.05)


def _read(page: Any, kind: str, name: str) -> Any:
    raw = page.locator(f"#f-{name}").input_value()
    if kind == "category":
        return raw
    return raw == "true" if kind == "bool" else float(raw)


def test_an_empty_required_field_is_refused_on_the_page_and_by_the_api(
    page: Any, nullable: NullableModel
) -> None:
    required = next(
        f for f in nullable.manifest.features if not f.nullable and f.type != "category"
    )
    predictions: list[str] = []
    page.on("request", lambda r: predictions.append(r.url) if r.method == "POST" else None)
    page.locator(f"#f-{required.name}").fill("")
    page.get_by_role("button", name="Predict", exact=True).click()
    errors = page.locator("#predict-errors:not([hidden])")
    errors.wait_for()
    assert "Not sent: some required fields are empty." in errors.inner_text()
    assert f"{required.name}: required: fill it in" in errors.inner_text()
    assert predictions == []
    assert page.locator("#result").is_hidden()

    page.evaluate(f"document.getElementById('f-{required.name}').removeAttribute('required')")
    page.get_by_role("button", name="Predict", exact=True).click()
    page.get_by_text("The model refused this record:").wait_for()
    text = page.locator("#predict-errors").inner_text()
    assert "The model refused this record:" in text
    assert f"{required.name}: Field required" in text
    assert len(predictions) == 1
