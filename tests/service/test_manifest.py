"""The manifest's feature labels: written by training, derived for manifests that have none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.manifest import MANIFEST_FILE, Feature, Manifest, default_label, read_pointer

MODELS = Path(__file__).resolve().parents[2] / "models"


def committed_raw(task: str) -> dict[str, Any]:
    """A committed manifest as JSON, whatever version of the contract wrote it."""
    folder = MODELS / task / read_pointer(MODELS / task)
    raw: dict[str, Any] = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    return raw


@pytest.mark.parametrize(
    ("name", "unit", "label"),
    [
        ("height_cm", "cm", "Height"),
        ("num_of_products", "products", "Number of products"),
        ("points_per_game", "points/game", "Points per game"),
        ("speed_km_h", "km/h", "Speed"),
        ("has_cr_card", "", "Has cr card"),
        ("customer_id", "", "Customer ID"),
        ("avg_balance", "EUR", "Average balance"),
        ("km", "km", "Km"),
        ("cost_per_eur", "EUR", "Cost per eur"),
        ("pixel_0_0", "grey level (0-16)", "Pixel 0 0"),
    ],
)
def test_default_label_reads_the_name_in_words(name: str, unit: str, label: str) -> None:
    assert default_label(name, unit) == label


def test_a_feature_label_round_trips_through_json() -> None:
    feature = Feature(name="has_cr_card", type="bool", label="Has a credit card")
    again = Feature.model_validate_json(feature.model_dump_json())
    assert again == feature and again.label == "Has a credit card"


@pytest.mark.parametrize("given", [{}, {"label": None}, {"label": ""}, {"label": "  "}])
def test_a_feature_without_a_label_gets_the_default(given: dict[str, Any]) -> None:
    feature = Feature.model_validate({"name": "height_cm", "type": "float", "unit": "cm", **given})
    assert feature.label == "Height"


def test_a_manifest_from_before_labels_loads_with_derived_labels(tmp_path: Path) -> None:
    raw = committed_raw("churn")
    for feature in raw["features"]:
        feature.pop("label", None)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(raw), encoding="utf-8")
    manifest = Manifest.load(tmp_path)
    for feature in manifest.features:
        assert feature.label == default_label(feature.name, feature.unit)
    assert manifest.feature("num_of_products").label == "Number of products"


@pytest.mark.parametrize("task", ["churn", "digits", "draft_pick"])
def test_every_committed_manifest_loads_with_a_label_per_feature(task: str) -> None:
    manifest = Manifest.model_validate(committed_raw(task))
    assert all(feature.label.strip() for feature in manifest.features)


def test_labels_survive_a_dump_and_load(tmp_path: Path) -> None:
    raw = committed_raw("churn")
    labelled = [{**f, "label": f"Feature {i}"} for i, f in enumerate(raw["features"])]
    manifest = Manifest.model_validate({**raw, "features": labelled})
    manifest.dump(tmp_path)
    loaded = Manifest.load(tmp_path)
    assert loaded == manifest
    assert [f.label for f in loaded.features] == [f"Feature {i}" for i in range(len(labelled))]
