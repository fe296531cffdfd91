"""Helpers for the deployment tests: locate external tools, which CI must have installed."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def require_tool(name: str) -> str:
    """The tool's path; in CI a missing tool fails the test, elsewhere it skips with the fix."""
    path = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if path is None:
        message = f"{name} is not installed (make tools installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
