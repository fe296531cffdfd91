"""The benchmark harness starts our service and the ceiling app, loads them briefly, and reports.

Only a smoke test: about 1 s of load per case, no MLServer, nothing written; no timing is
asserted (the machine is shared), only that every request succeeded and the table was printed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runner import round_order

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_smoke_run_serves_every_request_and_prints_the_table() -> None:
    argv = [sys.executable, "-m", "bench", "--smoke", "--no-write", "--seconds", "1"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    ours = [row for row in rows if row.startswith("| ours v1 JSON | 1 | 16 |")]
    ceiling = [row for row in rows if row.startswith("| FastAPI constant | 1 | 16 |")]
    assert ours and ceiling, done.stdout
    for row in ours + ceiling:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[7] == "0", row  # errors: non-2xx plus socket errors
        assert float(cells[3].replace(",", "")) > 0, row  # req/s


def test_rounds_alternate_the_order_of_the_servers() -> None:
    """A server measured last in one round is measured first in the next (`round_order`)."""
    servers = ["ours", "ceiling", "before"]
    assert round_order(servers, 1) == servers
    assert round_order(servers, 2) == ["before", "ceiling", "ours"]
    assert round_order(servers, 3) == servers
