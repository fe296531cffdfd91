"""The on-disk layout of the model registry, shared by training (writer) and service (reader).

models/<task>/<version>/model.onnx, manifest.json, report/
models/<task>/current          a text file naming the version served
models/<task>/.staging-*       a version being written; never read
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

POINTER_FILE = "current"
STAGING_PREFIX = ".staging-"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")
FILE_PATTERN = re.compile(r"^[0-9A-Za-z_][0-9A-Za-z._-]{0,127}$")
POINTER_MAX_BYTES = 256
# What loading one version may cost at most, unless the service's settings say otherwise: the
# model file's size (each worker holds it in memory while loading) and the time to load it and
# pass its self-check.
MAX_MODEL_BYTES = 256 * 1024 * 1024
LOAD_TIMEOUT_SECONDS = 30.0


class PointerError(Exception):
    """A task's `current` pointer is missing, unreadable or names no usable version.

    The message names the kind of problem, never the pointer's content or a path: it is shown
    on /readyz, which anyone may read.
    """


class UnsafeFile(Exception):
    """A file a manifest names is not a plain, regular file inside its version folder."""


class FileTooLarge(UnsafeFile):
    """A registry file is larger than the cap its reader set."""


class _OverCap(OSError):
    """What `_open_regular` raises for a file over its cap (an OSError, as its other refusals)."""


def is_task_name(name: str) -> bool:
    """True for a string that may name a task (and so a folder): snake_case, no path characters."""
    return NAME_PATTERN.fullmatch(name) is not None


def is_version_name(name: str) -> bool:
    """True for a string that may name a version folder (no separators, no leading dot)."""
    return VERSION_PATTERN.fullmatch(name) is not None


def is_file_name(name: str) -> bool:
    """True for a plain file name: no separator, not `.` or `..`, no NUL, not hidden."""
    return FILE_PATTERN.fullmatch(name) is not None


def read_pointer(task_dir: Path, pointer: str = POINTER_FILE) -> str:
    """The version named by `task_dir/current`, checked to be a plain, existing version folder.

    The pointer must be a small regular file (checked before it is opened, and opened
    non-blocking): a FIFO, a device or a symlink to elsewhere is refused, never read.
    """
    path = task_dir / pointer
    try:
        info = path.lstat()
    except FileNotFoundError as exc:
        raise PointerError("pointer is missing") from exc
    except OSError as exc:
        raise PointerError(f"pointer cannot be read ({_reason(exc)})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise PointerError("pointer is not a regular file")
    if info.st_size > POINTER_MAX_BYTES:
        raise PointerError(f"pointer is larger than {POINTER_MAX_BYTES} bytes")
    try:
        with _open_regular(path, POINTER_MAX_BYTES, follow=False) as handle:
            data = handle.read(POINTER_MAX_BYTES + 1)
    except OSError as exc:
        raise PointerError(f"pointer cannot be read ({_reason(exc)})") from exc
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise PointerError("version id invalid (not ASCII)") from exc
    if not is_version_name(text):
        raise PointerError("version id invalid (not of the form [0-9A-Za-z][0-9A-Za-z._-]*)")
    if not (task_dir / text).is_dir():
        raise PointerError(f"pointer names version {text!r}, which has no folder")
    return text


def open_artefact(folder: Path, name: str, max_bytes: int) -> BinaryIO:
    """Open the file `name` of a version folder for reading, confined and bounded.

    `name` must be a plain file name; after symlinks it must still be inside `folder`, a regular
    file (checked on the open descriptor, so it cannot be swapped in between) and at most
    `max_bytes` long. The caller still bounds its reads: the file may grow.
    """
    if not is_file_name(name):
        raise UnsafeFile("the file name is not a plain name inside the version folder")
    try:
        real = (folder / name).resolve(strict=True)
        inside = real.parent == folder.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise UnsafeFile(f"{name}: cannot be opened ({_reason(exc)})") from exc
    if not inside:
        raise UnsafeFile(f"{name}: a symlink that leaves the version folder")
    try:
        handle = _open_regular(real, max_bytes)
    except _OverCap as exc:
        raise FileTooLarge(f"{name}: {_reason(exc)}") from exc
    except OSError as exc:
        raise UnsafeFile(f"{name}: cannot be opened ({_reason(exc)})") from exc
    return handle


def task_dirs(models_dir: Path) -> list[Path]:
    """The task folders of a registry, sorted; hidden and oddly named entries are skipped."""
    if not models_dir.is_dir():
        return []
    return sorted(p for p in models_dir.iterdir() if p.is_dir() and is_task_name(p.name))


def _open_regular(path: Path, max_bytes: int, follow: bool = True) -> BinaryIO:
    """Open non-blocking (a FIFO would block a plain open), then check what was opened."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "not a regular file")
        if info.st_size > max_bytes:
            raise _OverCap(0, f"{info.st_size} bytes, over the limit of {max_bytes}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _reason(exc: BaseException) -> str:
    """An error's reason without the paths an OSError carries."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return "a symlink loop" if isinstance(exc, RuntimeError) else type(exc).__name__
