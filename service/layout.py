"""The on-disk layout of the model registry, shared by training (writer) and service (reader).

models/<task>/<version>/model.onnx, manifest.json, report/
models/<task>/current          a text file naming the version served
models/<task>/.staging-*       a version being written; never read
"""

from __future__ import annotations

import re
from pathlib import Path

POINTER_FILE = "current"
STAGING_PREFIX = ".staging-"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")


class PointerError(Exception):
    """A task's `current` pointer is missing, unreadable or names no usable version."""


def is_task_name(name: str) -> bool:
    """True for a string that may name a task (and so a folder): snake_case, no path characters."""
    return NAME_PATTERN.fullmatch(name) is not None


def is_version_name(name: str) -> bool:
    """True for a string that may name a version folder (no separators, no leading dot)."""
    return VERSION_PATTERN.fullmatch(name) is not None


def read_pointer(task_dir: Path, pointer: str = POINTER_FILE) -> str:
    """The version named by `task_dir/current`, checked to be a plain, existing version folder."""
    path = task_dir / pointer
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise PointerError(f"{path}: cannot read the pointer ({exc})") from exc
    if not is_version_name(text):
        raise PointerError(f"{path}: {text[:80]!r} is not a version name")
    if not (task_dir / text).is_dir():
        raise PointerError(f"{path}: names version {text!r}, which has no folder")
    return text


def task_dirs(models_dir: Path) -> list[Path]:
    """The task folders of a registry, sorted; hidden and oddly named entries are skipped."""
    if not models_dir.is_dir():
        return []
    return sorted(p for p in models_dir.iterdir() if p.is_dir() and is_task_name(p.name))
