"""Reliability fixtures: one trained registry, an in-process app for fuzzing, real servers.

The registry is trained once per session with the real training code (churn only: it has every
feature type, float, int, bool and category); tests that change it work on a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.manifest import Manifest
from service.settings import Settings
from tests.reliability.helpers import InProcessClient, in_process
from tests.service.conftest import start_server  # a fixture, used by name
from tests.service.helpers import Server, manifest_of, train_task

__all__ = ["start_server"]

StartServer = Callable[..., Server]


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine churn registry (one version); never modified by tests."""
    models = tmp_path_factory.mktemp("reliability-registry") / "models"
    train_task(models, "churn")
    return models


@pytest.fixture(scope="session")
def churn(registry_dir: Path) -> Manifest:
    return manifest_of(registry_dir, "churn")


@pytest.fixture(scope="session")
def app_client(registry_dir: Path) -> Iterator[InProcessClient]:
    """The real app in-process (lifespan run, models loaded), for thousands of quick requests."""
    with in_process(Settings(models_dir=registry_dir, poll_interval_seconds=0)) as client:
        yield client
