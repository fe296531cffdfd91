"""The README's `curl` examples, run as written (host and port aside) against a real server on the
committed models: each must get a 2xx, and the files they name must ship with the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.service.helpers import ADMIN_TOKEN, Server

ROOT = Path(__file__).resolve().parents[1]
STATUS = re.compile(r"\nSTATUS=(\d{3})$")


def readme_curls() -> list[str]:
    """Every `curl` command in the README's shell blocks, continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        joined = block.replace("\\\n", " ")
        commands += [line.strip() for line in joined.splitlines() if line.startswith("curl ")]
    return commands


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_every_readme_curl_example_gets_a_2xx(tmp_path: Path) -> None:
    commands = readme_curls()
    assert len(commands) >= 5, commands  # listing, JSON, CSV, V2, reload
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {"PREDICT_ADMIN_TOKEN": ADMIN_TOKEN, "PREDICT_POLL_INTERVAL_SECONDS": "0"}
    server = Server(ROOT / "models", tmp_path / "server.log", env).start()
    try:
        for command in commands:
            here = command.replace("localhost:8000", f"127.0.0.1:{server.port}")
            done = subprocess.run(
                ["bash", "-c", here + " -w '\\nSTATUS=%{http_code}'"],
                cwd=tmp_path,
                env={"PATH": "/usr/bin:/bin", "PREDICT_ADMIN_TOKEN": ADMIN_TOKEN},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            found = STATUS.search(done.stdout)
            assert found is not None, (command, done.stdout[-300:], done.stderr)
            assert found.group(1).startswith("2"), (command, done.stdout[-500:])
    finally:
        server.stop()
    scored = (tmp_path / "scored.csv").read_text(encoding="utf-8").splitlines()
    shipped = (ROOT / "examples" / "customers.csv").read_text(encoding="utf-8").splitlines()
    assert len(scored) == len(shipped) and scored[0].endswith(
        ",label,probability,p_stayed,p_churned,out_of_range"
    )
