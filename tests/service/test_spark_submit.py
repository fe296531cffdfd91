"""`spark-submit service/batch/submit.py ...`: the README's cluster command, run by pyspark's own
spark-submit on local[2], gives the local `score` command's answer."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.service.helpers import REPO

ROWS = 1500


def cells(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_spark_submit_runs_the_score_command_on_its_own_master(tmp_path: Path) -> None:
    source = tmp_path / "customers.csv"
    subprocess.run(
        [
            *(sys.executable, "-m", "training", "generate", "churn"),
            *("--rows", str(ROWS), "--seed", "11", "--out", str(source)),
        ],
        check=True,
        capture_output=True,
    )
    local = tmp_path / "local.csv"
    score = [sys.executable, "-m", "service", "score", str(source), "--model", "churn"]
    subprocess.run(
        [*score, "-o", str(local)],
        check=True,
        cwd=REPO,
    )
    submit = Path(sys.executable).with_name("spark-submit")
    out = tmp_path / "scored"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    result = subprocess.run(
        [
            *(str(submit), "--master", "local[2]", str(REPO / "service" / "batch" / "submit.py")),
            *(str(source), "--model", "churn", "--models", str(REPO / "models"), "-o", str(out)),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # spark-submit passes the driver's stderr on to its own stdout
    assert f"{ROWS:,} of {ROWS:,} rows scored" in result.stdout + result.stderr
    parts = sorted(out.glob("part-*.csv"))
    assert parts and (out / "_SUCCESS").exists()
    expected = cells(local)
    scored = [expected[0]]
    for part in parts:
        header, *rows = cells(part)
        assert header == expected[0]
        scored += rows
    assert scored == expected
