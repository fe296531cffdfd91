"""The record schema the API docs show, built from a manifest (labels as property titles)."""

from __future__ import annotations

import json
from pathlib import Path

from service.manifest import MANIFEST_FILE, Manifest, read_pointer
from service.openapi import record_schema

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_a_manifest_without_labels_titles_properties_with_the_default() -> None:
    folder = MODELS / "draft_pick" / read_pointer(MODELS / "draft_pick")
    raw = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    for feature in raw["features"]:
        feature.pop("label", None)
    properties = record_schema(Manifest.model_validate(raw))["properties"]
    assert properties["height_cm"]["title"] == "Height"
    assert properties["points_per_game"]["title"] == "Points per game"
    assert properties["height_cm"]["description"].startswith("Standing height without shoes.")


def test_an_explicit_label_is_the_title_and_the_description_is_kept() -> None:
    folder = MODELS / "churn" / read_pointer(MODELS / "churn")
    raw = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    for feature in raw["features"]:
        if feature["name"] == "has_cr_card":
            feature["label"] = "Has a credit card"
    prop = record_schema(Manifest.model_validate(raw))["properties"]["has_cr_card"]
    assert prop["title"] == "Has a credit card"
    assert prop["description"].startswith("Whether the customer has a credit card with the bank.")
