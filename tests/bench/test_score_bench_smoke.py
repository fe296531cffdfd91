"""The batch-scoring benchmark runs the real command on a small generated file and prints its
table. Nothing is timed here (the machine is shared): only that both sides ran, with their
worker processes (the file is bigger than one block), and wrote the same bytes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1].parent


def test_score_bench_runs_both_sides_and_prints_the_table(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline"
    shutil.copytree(REPO / "service", baseline / "service")  # "before" is the same code here
    argv = [sys.executable, "-m", "bench.score", "--rows", "20000", "--runs", "1", "--no-write",
            "--baseline-src", str(baseline)]  # fmt: skip

    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines()
            if line.startswith("| before") or line.startswith("| ours")}  # fmt: skip
    assert set(rows) == {"before", "ours"}, done.stdout
    assert "20,000 churn rows" in done.stdout
    assert "Median wall time, before / ours:" in done.stdout
