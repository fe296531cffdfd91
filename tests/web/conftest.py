"""Web fixtures: a small registry trained by the real training code and a real server over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.manifest import Manifest
from tests.service.conftest import start_server  # a fixture, used by name
from tests.service.helpers import Server, manifest_of, train_task

__all__ = ["start_server"]

WEB_TASKS = ("churn", "draft_pick")


@pytest.fixture(scope="session")
def web_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tasks with their report plots; never modified by tests."""
    models = tmp_path_factory.mktemp("web-registry") / "models"
    for task in WEB_TASKS:
        train_task(models, task)
    return models


@pytest.fixture(scope="session")
def web_server(web_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("web-logs") / "server.log"
    running = Server(web_registry, log, {"PREDICT_POLL_INTERVAL_SECONDS": "0"}).start()
    yield running
    running.stop()


@pytest.fixture
def web(web_server: Server) -> Iterator[httpx.Client]:
    with web_server.client() as client:
        yield client


@pytest.fixture(scope="session")
def draft_pick_manifest(web_registry: Path) -> Manifest:
    return manifest_of(web_registry, "draft_pick")


@pytest.fixture(scope="session")
def churn_manifest(web_registry: Path) -> Manifest:
    return manifest_of(web_registry, "churn")
