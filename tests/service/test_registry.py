"""The registry reader: loads every task, remembers refusals, swaps only verified versions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.errors import ModelNotFound, ModelNotReady
from service.model import LoadedModel
from service.registry import ModelRegistry
from tests.service.helpers import copy_registry


class Recorder:
    """A ReloadListener that remembers what it was told."""

    def __init__(self) -> None:
        self.loaded_versions: list[str] = []
        self.refused_versions: list[str | None] = []

    def loaded(self, model: LoadedModel, previous: LoadedModel | None) -> None:
        self.loaded_versions.append(model.version)

    def refused(self, name: str, version: str | None) -> None:
        self.refused_versions.append(version)


def test_every_task_is_loaded_and_unknown_names_are_not_found(registry_dir: Path) -> None:
    registry = ModelRegistry(registry_dir)
    outcomes = registry.refresh()
    assert sorted(o.name for o in outcomes if o.changed) == ["churn", "digits", "draft_pick"]
    assert registry.is_ready()
    assert registry.get("churn").name == "churn"
    for name in ("nope", "../churn", "", "CHURN"):
        with pytest.raises(ModelNotFound):
            registry.get(name)
    assert [o.changed for o in registry.refresh()] == [False, False, False]


def test_a_refused_version_is_reported_once_and_retried_on_request(
    registry_dir: Path, tmp_path: Path
) -> None:
    models = copy_registry(registry_dir, tmp_path / "models")
    (models / "churn" / "current").write_text("missing-version\n", encoding="utf-8")
    recorder = Recorder()
    registry = ModelRegistry(models, listener=recorder)
    registry.refresh()
    registry.refresh()
    assert recorder.refused_versions == [None]
    assert len(recorder.loaded_versions) == 2
    assert not registry.is_ready()
    with pytest.raises(ModelNotReady, match="no folder"):
        registry.get("churn")
    registry.refresh(retry_failed=True)
    assert recorder.refused_versions == [None, None]


def test_an_empty_registry_is_not_ready(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "nothing-here")
    assert registry.refresh() == []
    assert not registry.is_ready()


def test_a_removed_task_keeps_serving_what_it_loaded(registry_dir: Path, tmp_path: Path) -> None:
    models = copy_registry(registry_dir, tmp_path / "models")
    registry = ModelRegistry(models)
    registry.refresh()
    shutil.rmtree(models / "digits")
    registry.refresh()
    assert registry.get("digits").name == "digits"
