"""The registry: versions appear whole or not at all, and the pointer only moves when promoted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.manifest import POINTER_FILE, STAGING_PREFIX, PointerError, read_pointer
from training import registry

from .conftest import TrainFn


def fake_version(task_dir: Path, name: str) -> None:
    """A published-looking version folder; the registry only needs the manifest file to exist."""
    (task_dir / name).mkdir(parents=True)
    (task_dir / name / "manifest.json").write_text("{}")


def test_version_names_sort_by_time_and_never_clash(tmp_path: Path) -> None:
    now = datetime(2026, 11, 21, 23, 56, tzinfo=UTC)
    first = registry.new_version_name(tmp_path, now)
    fake_version(tmp_path, first)
    second = registry.new_version_name(tmp_path, now)
    assert first == "20261121T235600Z" and second == "20261121T235600Z-2"
    assert sorted([second, first]) == [first, second]


def test_staging_is_removed_when_the_build_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), registry.staging(tmp_path) as folder:
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_publish_then_promote_moves_the_pointer(tmp_path: Path) -> None:
    with registry.staging(tmp_path) as folder:
        (folder / "manifest.json").write_text("{}")
        registry.publish(folder, tmp_path, "v1")
    assert registry.current_version(tmp_path) is None
    registry.promote(tmp_path, "v1")
    assert read_pointer(tmp_path) == "v1"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_promote_refuses_a_missing_version(tmp_path: Path) -> None:
    with pytest.raises(registry.RegistryError, match="does not exist"):
        registry.promote(tmp_path, "nope")


def test_rollback_walks_back_and_to_a_named_version(tmp_path: Path) -> None:
    for name in ("v1", "v2", "v3"):
        fake_version(tmp_path, name)
    registry.promote(tmp_path, "v3")
    assert registry.rollback(tmp_path) == "v2"
    assert registry.rollback(tmp_path) == "v1"
    with pytest.raises(registry.RegistryError, match="no version older"):
        registry.rollback(tmp_path)
    assert registry.rollback(tmp_path, to="v3") == "v3"
    with pytest.raises(registry.RegistryError, match="no version 'v9'"):
        registry.rollback(tmp_path, to="v9")


def test_prune_keeps_the_newest_and_the_current(tmp_path: Path) -> None:
    for name in ("v1", "v2", "v3", "v4", "v5"):
        fake_version(tmp_path, name)
    registry.promote(tmp_path, "v1")
    assert registry.prune(tmp_path, keep=3) == ["v2", "v3"]
    assert registry.versions(tmp_path) == ["v1", "v4", "v5"]


def test_stale_staging_of_a_killed_run_is_removed(tmp_path: Path) -> None:
    (tmp_path / f"{STAGING_PREFIX}dead").mkdir()
    (tmp_path / f"{STAGING_PREFIX}dead" / "model.onnx").write_bytes(b"x")
    fake_version(tmp_path, "v1")
    assert registry.remove_stale_staging(tmp_path) == [f"{STAGING_PREFIX}dead"]
    assert registry.versions(tmp_path) == ["v1"]


@pytest.mark.parametrize("content", ["", "../../etc", "v9\n", "\x00garbage"])
def test_bad_pointer_is_reported_not_followed(tmp_path: Path, content: str) -> None:
    fake_version(tmp_path, "v1")
    (tmp_path / POINTER_FILE).write_text(content)
    with pytest.raises(PointerError):
        read_pointer(tmp_path)
    assert registry.current_version(tmp_path) is None


def test_trained_version_is_complete(quick_train: TrainFn, models: Path) -> None:
    result = quick_train("draft_pick")
    folder = models / "draft_pick" / result.version
    assert result.promoted and read_pointer(models / "draft_pick") == result.version
    assert {p.name for p in folder.iterdir()} == {"model.onnx", "manifest.json", "report"}
    assert (folder / "report" / "model_card.md").is_file()


def test_quality_gate_refuses_a_worse_model_and_force_overrides(
    quick_train: TrainFn, models: Path
) -> None:
    good = quick_train("churn", rows=2000, mlp_overrides={"max_iter": 60})
    bad_options = {"rows": 200, "mlp_overrides": {"max_iter": 1, "hidden_layer_sizes": (2,)}}
    bad = quick_train("churn", **bad_options)
    assert bad.manifest.metrics.roc_auc < good.manifest.metrics.roc_auc - 0.01
    assert not bad.promoted and "not promoted" in bad.message
    assert registry.current_version(models / "churn") == good.version
    assert bad.version in registry.versions(models / "churn")  # kept for inspection
    forced = quick_train("churn", force=True, **bad_options)
    assert forced.promoted and "--force" in forced.message
    assert registry.current_version(models / "churn") == forced.version


def test_retraining_with_the_same_seed_reproduces_metrics(quick_train: TrainFn) -> None:
    first = quick_train("draft_pick", force=True)
    second = quick_train("draft_pick", force=True)
    assert first.version != second.version
    assert first.manifest.metrics == second.manifest.metrics
    assert first.manifest.threshold == second.manifest.threshold
