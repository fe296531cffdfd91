"""The README's two commands on a fresh clone: `make serve` installs the `serve` extra only,
`make test` everything (checked with `make -n`, which prints what would run)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def planned(target: str, tmp_path: Path) -> str:
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    # Under `make test` the environment carries the outer make's flags; this make is a new one.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_serve_installs_only_the_serve_extra(tmp_path: Path) -> None:
    plan = planned("serve", tmp_path)
    installs = [line for line in plan.splitlines() if " install -c constraints.txt" in line]
    assert installs == [
        ".venv/bin/python -m pip --disable-pip-version-check -q install -c constraints.txt "
        "-e '.[serve]'"
    ]
    assert plan.rstrip().endswith(".venv/bin/python -m service")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_installs_training_spark_and_development_too(tmp_path: Path) -> None:
    plan = planned("test", tmp_path)
    assert "-e '.[train,serve,spark,dev]'" in plan and "-m pytest" in plan
