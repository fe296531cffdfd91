"""The Spark benchmark (issue 22) runs the real sides on a tiny generated Parquet file and prints
its table. Nothing is timed here (the machine is shared): only that every side ran, read every
row and wrote what the local command writes, and that the fixed cost was measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1].parent


def test_spark_bench_runs_every_side_and_prints_the_table() -> None:
    argv = [sys.executable, "-m", "bench.spark", "--rows", "2000", "--formats", "parquet",
            "--quick", "--no-write", "--no-wait"]  # fmt: skip

    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)

    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 2,000 Parquet |")]
    assert len(rows) == 1, done.stdout
    assert rows[0].rstrip().endswith("| every column equal |")
    assert "Fixed cost of starting Spark (local[2]" in done.stdout
    assert "**2,000 Parquet rows, local / Spark local[2] throughput:" in done.stdout
