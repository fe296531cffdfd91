"""The committed models under models/ load in the real server and answer their own examples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from service.manifest import Manifest, read_pointer, task_dirs
from tests.service.helpers import REPO, Server

COMMITTED = REPO / "models"


def committed_tasks() -> list[Path]:
    return [task for task in task_dirs(COMMITTED) if (task / "current").is_file()]


@pytest.mark.skipif(
    not committed_tasks(), reason="no committed models yet (models/*/current does not exist)"
)
def test_committed_models_load_and_answer(start_server: Callable[..., Server]) -> None:
    server = start_server(COMMITTED)
    with server.client() as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        for task_dir in committed_tasks():
            manifest = Manifest.load(task_dir / read_pointer(task_dir))
            payload = {"records": [example.record for example in manifest.examples]}
            response = client.post(f"/v1/models/{manifest.name}/predict", json=payload)
            assert response.status_code == 200, response.text
            for prediction, example in zip(
                response.json()["predictions"], manifest.examples, strict=True
            ):
                got = list(prediction["probabilities"].values())
                assert got == pytest.approx(example.probabilities, abs=1e-5)
