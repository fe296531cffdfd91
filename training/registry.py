"""Write model versions into the registry and move the `current` pointer, atomically.

A version is built in a hidden staging folder, fsynced, and renamed into place; only then does the
pointer move (write a temporary file, fsync, rename over `current`). A run that dies at any point
leaves the served version untouched and, at worst, a hidden staging folder the next run removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from service.manifest import (
    MANIFEST_FILE,
    POINTER_FILE,
    STAGING_PREFIX,
    Manifest,
    ManifestError,
    PointerError,
    is_version_name,
    read_pointer,
)

LOCK_FILE = ".lock"
DEFAULT_KEEP = 5


class RegistryError(Exception):
    """The registry cannot do what was asked (no such version, nothing to roll back to, ...)."""


@contextlib.contextmanager
def locked(task_dir: Path) -> Iterator[None]:
    """Hold the task's write lock: two training runs must not promote over each other."""
    task_dir.mkdir(parents=True, exist_ok=True)
    with (task_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def staging(task_dir: Path) -> Iterator[Path]:
    """A fresh hidden folder to build a version in; removed again if the build fails."""
    folder = task_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def new_version_name(task_dir: Path, now: datetime) -> str:
    """A sortable, unique version name from the UTC time: 20261121T235600Z (-2, -3 on clashes)."""
    base = now.strftime("%Y%m%dT%H%M%SZ")
    name, n = base, 1
    while (task_dir / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def publish(folder: Path, task_dir: Path, version: str) -> Path:
    """Make a staged version visible under its name; after this it never changes."""
    if not is_version_name(version):
        raise RegistryError(f"{version!r} is not a valid version name")
    for path in folder.rglob("*"):
        if path.is_file():
            _fsync_file(path)
    target = task_dir / version
    os.rename(folder, target)  # fails rather than replaces if the name is taken
    _fsync_dir(task_dir)
    return target


def promote(task_dir: Path, version: str) -> None:
    """Point `current` at a published version with an atomic rename."""
    if not (task_dir / version / MANIFEST_FILE).is_file():
        raise RegistryError(f"{task_dir.name}: version {version!r} does not exist")
    tmp = task_dir / f"{STAGING_PREFIX}{POINTER_FILE}-{uuid.uuid4().hex}"
    tmp.write_text(version + "\n", encoding="utf-8")
    _fsync_file(tmp)
    os.replace(tmp, task_dir / POINTER_FILE)
    _fsync_dir(task_dir)


def current_version(task_dir: Path) -> str | None:
    """The version served now, or None for a task with no (usable) pointer."""
    try:
        return read_pointer(task_dir)
    except PointerError:
        return None


def current_manifest(task_dir: Path) -> Manifest | None:
    """The manifest of the served version, if there is one that loads."""
    version = current_version(task_dir)
    if version is None:
        return None
    try:
        return Manifest.load(task_dir / version)
    except ManifestError:
        return None


def versions(task_dir: Path) -> list[str]:
    """Published versions, oldest first (names sort by time)."""
    if not task_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in task_dir.iterdir()
        if p.is_dir() and is_version_name(p.name) and (p / MANIFEST_FILE).is_file()
    )


def rollback(task_dir: Path, to: str | None = None) -> str:
    """Move the pointer to `to`, or to the version published just before the current one."""
    with locked(task_dir):
        known = versions(task_dir)
        if to is None:
            current = current_version(task_dir)
            older = [v for v in known if current is None or v < current]
            if not older:
                raise RegistryError(
                    f"{task_dir.name}: no version older than {current} to roll back to"
                )
            to = older[-1]
        elif to not in known:
            raise RegistryError(f"{task_dir.name}: no version {to!r} (known: {', '.join(known)})")
        promote(task_dir, to)
        return to


def prune(task_dir: Path, keep: int = DEFAULT_KEEP) -> list[str]:
    """Delete the oldest versions beyond `keep`, never the current one; returns what went."""
    current = current_version(task_dir)
    candidates = [v for v in versions(task_dir) if v != current]
    excess = max(0, len(candidates) - max(keep - (current is not None), 0))
    removed = candidates[:excess]
    for version in removed:
        shutil.rmtree(task_dir / version)
    return removed


def remove_stale_staging(task_dir: Path) -> list[str]:
    """Remove staging leftovers of killed runs; call with the task lock held."""
    if not task_dir.is_dir():
        return []
    stale = [p for p in task_dir.iterdir() if p.name.startswith(STAGING_PREFIX)]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return [p.name for p in stale]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
