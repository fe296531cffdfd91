"""Service fixtures: a registry built by the real training code, and real uvicorn processes.

The registry is trained once per session (small, fast models); tests that change a registry work
on a copy of it, with their own server, so the shared one stays pristine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.manifest import Manifest
from tests.service.helpers import ADMIN_TOKEN, TASK_ROWS, Server, manifest_of, train_task


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine registry with every built-in task; never modified by tests."""
    models = tmp_path_factory.mktemp("registry") / "models"
    for task in TASK_ROWS:
        train_task(models, task)
    return models


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """Start servers for one test; all are stopped at its end."""
    servers: list[Server] = []

    def start(models_dir: Path, **env: str) -> Server:
        server = Server(models_dir, tmp_path / f"server-{len(servers)}.log", env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def server(registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server: pristine registry, admin token set, a 3 MiB body limit, no polling."""
    env = {
        "PREDICT_ADMIN_TOKEN": ADMIN_TOKEN,
        "PREDICT_MAX_BODY_BYTES": str(3 * 1024 * 1024),
        "PREDICT_POLL_INTERVAL_SECONDS": "0",
        "PREDICT_CORS_ORIGINS": "http://example.test",
    }
    running = Server(registry_dir, tmp_path_factory.mktemp("logs") / "server.log", env).start()
    yield running
    running.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture(scope="session")
def churn(registry_dir: Path) -> Manifest:
    return manifest_of(registry_dir, "churn")


@pytest.fixture(scope="session")
def draft_pick(registry_dir: Path) -> Manifest:
    return manifest_of(registry_dir, "draft_pick")


@pytest.fixture(scope="session")
def digits(registry_dir: Path) -> Manifest:
    return manifest_of(registry_dir, "digits")
