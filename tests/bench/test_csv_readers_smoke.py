"""The pyarrow-against-our-CSV-code benchmark runs on a small generated file and prints both
tables. Nothing is timed here (the machine is shared): only that every side ran and that every
side's answer is the same as today's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1].parent


def test_csv_readers_bench_runs_every_side_and_the_answers_match() -> None:
    argv = [sys.executable, "-m", "bench.csv_readers", "--rows", "2000", "--repeats", "1",
            "--no-write", "--api-sizes", "1", "100", "--api-seconds", "0.01"]  # fmt: skip

    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    sides = [line for line in rows if line.startswith(("| today: ", "| pyarrow "))]
    assert len(sides) == 4, done.stdout
    assert sum("byte-identical (1/1)" in line for line in sides) == 3, done.stdout
    assert sum("same predictions (1/1)" in line for line in sides) == 1, done.stdout
    bodies = [line for line in rows if line.startswith(("| 1 |", "| 100 |"))]
    assert len(bodies) == 2, done.stdout
    assert all(line.endswith("| yes |") for line in bodies), done.stdout
    assert "2,000 churn rows" in done.stdout
    assert "Crossover:" in done.stdout
