"""The models being served: read from the registry folder, verified, and swapped in on change.

Requests read `self._models` (a dict that is never mutated, only replaced), so a reload is one
reference assignment and a request keeps the LoadedModel it started with until it finishes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from service.errors import ArtefactError, ModelNotFound, ModelNotReady, RegistryUnreadable
from service.layout import PointerError, read_pointer, task_dirs
from service.model import LoadedModel, load_model

logger = logging.getLogger(__name__)

State = Literal["ready", "failed"]


@dataclass(frozen=True)
class TaskStatus:
    """What /readyz reports for a task: the version served and the last refusal, if any."""

    name: str
    state: State
    version: str | None = None
    loaded_at: datetime | None = None
    error: str | None = None
    error_version: str | None = None
    checked_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """The result of looking at one task's pointer: changed or not, and why it failed."""

    name: str
    version: str | None
    changed: bool
    error: str | None = None


class ReloadListener(Protocol):
    """Told about every swap and every refusal (the metrics implement this)."""

    def loaded(self, model: LoadedModel, previous: LoadedModel | None) -> None: ...

    def refused(self, name: str, version: str | None) -> None: ...


class ModelRegistry:
    """Loads every task under `models_dir` and keeps each one's `current` version serving."""

    def __init__(
        self, models_dir: Path, threads: int, listener: ReloadListener | None = None
    ) -> None:
        self.models_dir = models_dir
        self._threads = threads
        self._listener = listener
        self._models: Mapping[str, LoadedModel] = {}
        self._status: Mapping[str, TaskStatus] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> LoadedModel:
        """The model serving `name` now; only names already known are looked up (no disk access)."""
        model = self._models.get(name)
        if model is not None:
            return model
        status = self._status.get(name)
        if status is None:
            raise ModelNotFound(name)
        raise ModelNotReady(name, status.error)

    def models(self) -> list[LoadedModel]:
        return [self._models[name] for name in sorted(self._models)]

    def statuses(self) -> list[TaskStatus]:
        return [self._status[name] for name in sorted(self._status)]

    def is_ready(self) -> bool:
        """Every task found in the registry serves a verified version (and there is one or more)."""
        statuses = self._status.values()
        return bool(statuses) and all(status.state == "ready" for status in statuses)

    def refresh(self, retry_failed: bool = False) -> list[Outcome]:
        """Load every task whose pointer names a new version; safe to call from any thread."""
        with self._lock:
            try:
                found = task_dirs(self.models_dir)
            except OSError as exc:
                raise RegistryUnreadable(exc.strerror or type(exc).__name__) from exc
            return [self._refresh_task(task_dir, retry_failed) for task_dir in found]

    def _refresh_task(self, task_dir: Path, retry_failed: bool) -> Outcome:
        name = task_dir.name
        current = self._models.get(name)
        status = self._status.get(name, TaskStatus(name, "failed"))
        try:
            version = read_pointer(task_dir)
        except PointerError as exc:
            return self._refuse(status, None, str(exc), retry_failed)
        if current is not None and current.version == version:
            if status.error is not None:  # the pointer is back on the served version (a rollback)
                self._status = {
                    **self._status,
                    name: replace(status, error=None, error_version=None),
                }
            return Outcome(name, version, changed=False)
        if status.error_version == version and not retry_failed:
            return Outcome(name, version, changed=False, error=status.error)
        try:
            model = load_model(task_dir / version, self._threads)
        except ArtefactError as exc:
            return self._refuse(status, version, str(exc), retry_failed=True)
        self._swap(model, current)
        return Outcome(name, version, changed=True)

    def _swap(self, model: LoadedModel, previous: LoadedModel | None) -> None:
        self._models = {**self._models, model.name: model}
        self._status = {
            **self._status,
            model.name: TaskStatus(
                model.name, "ready", model.version, model.loaded_at, checked_at=_now()
            ),
        }
        logger.info(
            "model loaded",
            extra={
                "fields": {
                    "model": model.name,
                    "version": model.version,
                    "previous": previous.version if previous else None,
                }
            },
        )
        if self._listener is not None:
            self._listener.loaded(model, previous)

    def _refuse(
        self, status: TaskStatus, version: str | None, error: str, retry_failed: bool
    ) -> Outcome:
        """Keep the old version (if any) serving and remember why the new one was refused."""
        error = self._within_registry(error)
        seen_before = status.error == error and status.error_version == version
        self._status = {
            **self._status,
            status.name: replace(status, error=error, error_version=version, checked_at=_now()),
        }
        if not seen_before or retry_failed:
            logger.warning(
                "model refused",
                extra={
                    "fields": {
                        "model": status.name,
                        "version": version,
                        "error": error,
                        "serving": status.version,
                    }
                },
            )
            if self._listener is not None:
                self._listener.refused(status.name, version)
        return Outcome(status.name, version, changed=False, error=error)

    def _within_registry(self, error: str) -> str:
        """Paths in a refusal relative to the registry: /readyz and 503s are open to any caller,
        and the machine's folder layout is none of their business (the log has `models_dir`)."""
        roots = {str(self.models_dir.resolve()), str(self.models_dir.absolute())}
        if self.models_dir.is_absolute():
            roots.add(str(self.models_dir))
        for root in sorted(roots, key=len, reverse=True):  # longest first: no partial strip
            error = error.replace(root.rstrip("/") + "/", "")
        return error


def _now() -> datetime:
    return datetime.now(UTC)
