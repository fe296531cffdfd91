"""Loading a version: sha256, graph signature and self-check, and the decision rule."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.errors import ArtefactError, ArtefactMismatch, SelfCheckFailed
from service.manifest import read_pointer
from service.model import load_model
from service.validation import batch_from_records


def current(models: Path, task: str) -> Path:
    return models / task / read_pointer(models / task)


def tampered(source: Path, target_root: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of a version folder (same task and version names) with its manifest edited."""
    target = target_root / source.parent.name / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("report"))
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    edit(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return target


def test_a_trained_version_loads_and_reproduces_its_examples(registry_dir: Path) -> None:
    model = load_model(current(registry_dir, "digits"), threads=1)
    records = [example.record for example in model.manifest.examples]
    prediction = model.predict(batch_from_records(model.validator, records))
    expected = np.array([example.probabilities for example in model.manifest.examples])
    np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-5)
    assert prediction.classes.tolist() == expected.argmax(axis=1).tolist()


def test_binary_labels_follow_the_manifest_threshold_not_the_graph(registry_dir: Path) -> None:
    model = load_model(current(registry_dir, "churn"), threads=1)
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    threshold = model.manifest.threshold
    expected = [int(p >= threshold) for p in probabilities[:, 1].astype(np.float64)]
    assert model.decide(probabilities).tolist() == expected


def test_load_fails_on_sha_mismatch(registry_dir: Path, tmp_path: Path) -> None:
    def wrong_sha(manifest: dict[str, Any]) -> None:
        manifest["onnx"]["sha256"] = "0" * 64

    with pytest.raises(ArtefactMismatch, match="sha256"):
        load_model(tampered(current(registry_dir, "churn"), tmp_path, wrong_sha), threads=1)


def test_load_fails_on_a_renamed_input(registry_dir: Path, tmp_path: Path) -> None:
    def rename(manifest: dict[str, Any]) -> None:
        manifest["features"][1]["name"] = "country"
        manifest["onnx"]["inputs"][1] = "country"

    with pytest.raises(ArtefactMismatch, match="inputs"):
        load_model(tampered(current(registry_dir, "churn"), tmp_path, rename), threads=1)


def test_load_fails_on_a_repeated_label(registry_dir: Path, tmp_path: Path) -> None:
    """Each label is a key of the JSON answer's probabilities and a CSV column: two alike would
    make one answer with a repeated key."""

    def repeat(manifest: dict[str, Any]) -> None:
        manifest["labels"] = ["churned", "churned"]
        manifest["positive_label"] = "churned"

    with pytest.raises(ArtefactError, match="labels must be unique"):
        load_model(tampered(current(registry_dir, "churn"), tmp_path, repeat), threads=1)


def test_load_fails_when_the_examples_are_not_reproduced(
    registry_dir: Path, tmp_path: Path
) -> None:
    def shift(manifest: dict[str, Any]) -> None:
        manifest["examples"][2]["probabilities"][0] += 0.001

    with pytest.raises(SelfCheckFailed, match="differ"):
        load_model(tampered(current(registry_dir, "draft_pick"), tmp_path, shift), threads=1)


def test_load_fails_when_an_example_breaks_the_contract(registry_dir: Path, tmp_path: Path) -> None:
    def break_example(manifest: dict[str, Any]) -> None:
        manifest["examples"][0]["record"]["age"] = 7

    with pytest.raises(SelfCheckFailed, match="not valid input"):
        load_model(tampered(current(registry_dir, "churn"), tmp_path, break_example), threads=1)


def test_load_fails_when_the_manifest_names_another_version(
    registry_dir: Path, tmp_path: Path
) -> None:
    def rename_version(manifest: dict[str, Any]) -> None:
        manifest["version"] = "elsewhere"

    with pytest.raises(ArtefactMismatch, match="manifest says"):
        load_model(tampered(current(registry_dir, "churn"), tmp_path, rename_version), threads=1)


def test_load_fails_without_a_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "churn" / "v1"
    folder.mkdir(parents=True)
    with pytest.raises(ArtefactError, match=r"manifest\.json"):
        load_model(folder, threads=1)
