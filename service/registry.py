"""The models being served: read from the registry folder, verified, and swapped in on change.

Requests read `self._models` (a dict that is never mutated, only replaced), so a reload is one
reference assignment and a request keeps the LoadedModel it started with until it finishes.

Each task is looked at in a thread of its own, one look at a time per task: reading a pointer,
hashing a file, creating a session and self-checking happen outside any shared lock, so a task
whose files hang (a stuck mount) or whose graph is pathological never delays another task's load,
reload or readiness. Only the swap of the shared mappings is under `_lock`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from service.errors import ArtefactError, ModelNotFound, ModelNotReady, RegistryUnreadable
from service.manifest import LOAD_TIMEOUT_SECONDS, MAX_MODEL_BYTES, PointerError, read_pointer
from service.manifest import task_dirs as list_task_dirs
from service.model import LoadedModel, load_model

logger = logging.getLogger(__name__)

State = Literal["ready", "failed"]
# A look whose thread has not answered by the load timeout plus this is reported as stuck; the
# margin lets a self-check stopped at the timeout report its own refusal first.
STUCK_MARGIN_SECONDS = 2.0


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


@dataclass(frozen=True)
class LoadLimits:
    """What loading one version may cost: onnxruntime threads, file size, and time."""

    threads: int = 1
    max_model_bytes: int = MAX_MODEL_BYTES
    timeout_seconds: float = LOAD_TIMEOUT_SECONDS


@dataclass
class _Look:
    """One look at one task, run in a thread of its own; `outcome` is set when it is over."""

    task_dir: Path
    retry_failed: bool
    started: float = field(default_factory=time.monotonic)
    doing: str = "reading the pointer"
    outcome: Outcome | None = None
    reported_stuck: bool = False
    thread: threading.Thread = field(init=False)

    @property
    def name(self) -> str:
        return self.task_dir.name


class ModelRegistry:
    """Loads every task under `models_dir` and keeps each one's `current` version serving."""

    def __init__(
        self,
        models_dir: Path,
        listener: ReloadListener | None = None,
        limits: LoadLimits | None = None,
    ) -> None:
        self.models_dir = models_dir
        self._limits = limits or LoadLimits()
        self._listener = listener
        self._models: Mapping[str, LoadedModel] = {}
        self._status: Mapping[str, TaskStatus] = {}
        self._running: Mapping[str, _Look] = {}  # the latest look at each task
        self._lock = threading.Lock()  # the swap of the three mappings above

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
        models = self._models
        return [models[name] for name in sorted(models)]

    def statuses(self) -> list[TaskStatus]:
        status = self._status
        return [status[name] for name in sorted(status)]

    def is_ready(self) -> bool:
        """Every task found in the registry serves a verified version (and there is one or more)."""
        statuses = self._status.values()
        return bool(statuses) and all(status.state == "ready" for status in statuses)

    def refresh(self, retry_failed: bool = False) -> list[Outcome]:
        """Look at every task now and wait for the answers (start-up and admin reload).

        A look already running for a task is waited for first. Waiting stops at the load timeout
        (plus a margin): a look still running then is reported as stuck and left to finish, or
        not, on its own thread.
        """
        found = self._task_dirs()
        deadline = time.monotonic() + self._limits.timeout_seconds + STUCK_MARGIN_SECONDS
        looks = [self._fresh_look(task_dir, retry_failed, deadline) for task_dir in found]
        for look in looks:
            look.thread.join(max(0.0, deadline - time.monotonic()))
        return [look.outcome or self._stuck(look) for look in looks]

    def poll(self) -> None:
        """Start a look at every task not being looked at already, and return at once.

        A look that has outlasted the load timeout is reported as stuck (once); the task gets
        no new look until it ends, and no other task waits for it.
        """
        limit = self._limits.timeout_seconds + STUCK_MARGIN_SECONDS
        for task_dir in self._task_dirs():
            look = self._running.get(task_dir.name)
            if look is None or not look.thread.is_alive():
                self._begin(task_dir, retry_failed=False)
            elif not look.reported_stuck and time.monotonic() - look.started > limit:
                look.reported_stuck = True
                self._stuck(look)

    def _task_dirs(self) -> list[Path]:
        try:
            return list_task_dirs(self.models_dir)
        except OSError as exc:
            raise RegistryUnreadable(exc.strerror or type(exc).__name__) from exc

    def _fresh_look(self, task_dir: Path, retry_failed: bool, deadline: float) -> _Look:
        """A look started now, after the one running (if any) has ended or the deadline passed."""
        running = self._running.get(task_dir.name)
        if running is not None:
            running.thread.join(max(0.0, deadline - time.monotonic()))
            if running.thread.is_alive():
                return running
        return self._begin(task_dir, retry_failed)

    def _begin(self, task_dir: Path, retry_failed: bool) -> _Look:
        """Start a look at a task, unless one is running (a poll and a reload may meet here)."""
        look = _Look(task_dir, retry_failed)
        look.thread = threading.Thread(
            target=self._look, args=(look,), name=f"registry-{look.name}", daemon=True
        )
        with self._lock:
            running = self._running.get(look.name)
            if running is not None and running.thread.is_alive():
                return running
            self._running = {**self._running, look.name: look}
            look.thread.start()
        return look

    def _look(self, look: _Look) -> None:
        try:
            outcome = self._refresh_task(look)
        except Exception as exc:  # a bug here must cost one task one look, never the others
            logger.exception("registry look failed", extra={"fields": {"model": look.name}})
            outcome = self._refuse(look.name, None, f"{look.name}: {type(exc).__name__}", True)
        with self._lock:
            look.outcome = outcome

    def _refresh_task(self, look: _Look) -> Outcome:
        name = look.name
        current = self._models.get(name)
        status = self._status.get(name, TaskStatus(name, "failed"))
        try:
            version = read_pointer(look.task_dir)
        except PointerError as exc:
            return self._refuse(name, None, str(exc), look.retry_failed)
        if current is not None and current.version == version:
            if status.error is not None:  # the pointer is back on the served version (a rollback)
                self._update(replace(status, error=None, error_version=None))
            return Outcome(name, version, changed=False)
        if status.error_version == version and not look.retry_failed:
            return Outcome(name, version, changed=False, error=status.error)
        look.doing = f"loading version {version}"
        try:
            model = load_model(
                look.task_dir / version,
                self._limits.threads,
                max_bytes=self._limits.max_model_bytes,
                timeout=self._limits.timeout_seconds,
            )
        except ArtefactError as exc:
            return self._refuse(name, version, str(exc), retry_failed=True)
        self._swap(model, current)
        return Outcome(name, version, changed=True)

    def _stuck(self, look: _Look) -> Outcome:
        """A look that has not answered: report it, unless it answers while we get here."""
        name = look.name
        error = f"{name}: {look.doing} has not finished after {self._limits.timeout_seconds:g} s"
        return self._refuse(name, None, error, retry_failed=False, unless_over=look)

    def _update(self, status: TaskStatus) -> None:
        with self._lock:
            self._status = {**self._status, status.name: status}

    def _swap(self, model: LoadedModel, previous: LoadedModel | None) -> None:
        status = TaskStatus(model.name, "ready", model.version, model.loaded_at, checked_at=_now())
        with self._lock:
            self._models = {**self._models, model.name: model}
            self._status = {**self._status, model.name: status}
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
        self,
        name: str,
        version: str | None,
        error: str,
        retry_failed: bool,
        unless_over: _Look | None = None,
    ) -> Outcome:
        """Keep the old version (if any) serving and remember why the new one was refused."""
        error = self._within_registry(error)
        with self._lock:
            if unless_over is not None and unless_over.outcome is not None:
                return unless_over.outcome
            status = self._status.get(name, TaskStatus(name, "failed"))
            seen_before = status.error == error and status.error_version == version
            self._status = {
                **self._status,
                name: replace(status, error=error, error_version=version, checked_at=_now()),
            }
        if not seen_before or retry_failed:
            logger.warning(
                "model refused",
                extra={
                    "fields": {
                        "model": name,
                        "version": version,
                        "error": error,
                        "serving": status.version,
                    }
                },
            )
            if self._listener is not None:
                self._listener.refused(name, version)
        return Outcome(name, version, changed=False, error=error)

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
