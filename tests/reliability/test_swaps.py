"""Model swaps under load: five promotions and one corrupt version, zero failed requests.

Client threads predict without pause while the training code's registry functions (`staging`,
`publish`, `promote`, under the task lock, exactly as `python -m training train` does) put five
new versions of churn in a row, alternating two genuinely different trained models, and then a
version whose model.onnx is truncated. Every answer must be a 200 from a promoted version, and
its probability must be the one that version's model gives (never one model's numbers under the
other's name). Set RELIABILITY_FIGURES_DIR to keep the figures as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.manifest import Manifest, read_pointer
from tests.reliability.conftest import StartServer
from tests.reliability.helpers import Load, Oracle, wait_until
from tests.service.helpers import copy_registry, manifest_of, train_task
from training.registry import locked, promote, publish, staging

SWAPS = 5
HOLD_SECONDS = 0.6  # each version serves this long under load before the next is promoted


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second churn model (another seed), so consecutive versions really predict differently."""
    models = tmp_path_factory.mktemp("other-model") / "models"
    version = train_task(models, "churn", seed=1)
    return models / "churn" / version


def release(task_dir: Path, source: Path, version: str, damage: Callable[[Path], None]) -> None:
    """Copy a trained version under a new name and promote it with the training registry code."""
    with locked(task_dir), staging(task_dir) as folder:
        for item in ("model.onnx", "manifest.json"):
            shutil.copy2(source / item, folder / item)
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        manifest["version"] = version
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        damage(folder)
        publish(folder, task_dir, version)
        promote(task_dir, version)


def truncate_model(folder: Path) -> None:
    model = folder / "model.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])


def test_five_promotions_and_a_corrupt_one_under_load_fail_no_request(
    registry_dir: Path, other_model: Path, tmp_path: Path, start_server: StartServer
) -> None:
    models = copy_registry(registry_dir, tmp_path / "models")
    task_dir = models / "churn"
    first = manifest_of(models, "churn")
    second = Manifest.load(other_model)
    record = first.examples[0].record
    expected = {
        first.version: _positive(Oracle(task_dir / first.version, first), first, record),
        second.version: _positive(Oracle(other_model, second), second, record),
    }
    sources = [other_model, task_dir / first.version]
    server = start_server(models, PREDICT_POLL_INTERVAL_SECONDS="0.1")
    promoted = [first.version]
    probability_of = {first.version: expected[first.version]}
    started = time.monotonic()
    with server.client() as client, Load(server.url, record) as load:
        time.sleep(HOLD_SECONDS)
        for n in range(1, SWAPS + 1):
            version = f"29990101T0000{n:02d}Z"
            source = sources[(n - 1) % 2]
            release(task_dir, source, version, damage=lambda _: None)
            promoted.append(version)
            probability_of[version] = expected[Manifest.load(source).version]
            wait_until(_serving(client, version))
            time.sleep(HOLD_SECONDS)
        corrupt = "29990101T000099Z"
        release(task_dir, sources[0], corrupt, damage=truncate_model)
        wait_until(lambda: _status(client)["last_error_version"] == corrupt)
        time.sleep(HOLD_SECONDS)
        ready = client.get("/readyz")
    duration = time.monotonic() - started
    answers = load.answers
    failed = [a for a in answers if a.status != 200]
    seen = sorted({a.version for a in answers if a.version is not None})
    figures = {
        "requests": len(answers),
        "failed": len(failed),
        "versions_promoted": [*promoted, f"{corrupt} (corrupt, refused)"],
        "versions_seen": seen,
        "seconds": round(duration, 1),
        "requests_per_second": round(len(answers) / duration),
        "clients": load.clients,
    }
    _keep(figures)
    assert not failed, failed[:5]
    assert set(seen) == set(promoted), figures  # every promoted version served, nothing else
    wrong = [a for a in answers if a.probability != pytest.approx(probability_of[a.version or ""])]
    assert not wrong, f"{len(wrong)} answers carry another version's numbers: {wrong[:3]}"
    assert answers[-1].version == promoted[-1]
    assert read_pointer(task_dir) == corrupt
    assert ready.status_code == 200
    status = ready.json()["models"]["churn"]
    assert (status["version"], status["last_error_version"]) == (promoted[-1], corrupt)
    assert "sha256" in status["last_error"] and str(tmp_path) not in status["last_error"]


def _positive(oracle: Oracle, manifest: Manifest, record: dict[str, Any]) -> float:
    assert manifest.positive_label is not None  # churn is a binary task
    probabilities = oracle.probabilities([record])[0]
    return float(probabilities[manifest.labels.index(manifest.positive_label)])


def _serving(client: httpx.Client, version: str) -> Callable[[], bool]:
    def check() -> bool:
        served: str | None = client.get("/v1/models/churn").json().get("version")
        return served == version

    return check


def _status(client: httpx.Client) -> dict[str, Any]:
    status: dict[str, Any] = client.get("/readyz").json()["models"]["churn"]
    return status


def _keep(figures: dict[str, Any]) -> None:
    folder = os.environ.get("RELIABILITY_FIGURES_DIR")
    if folder:
        path = Path(folder) / "swap-under-load.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
