"""The training CLI end to end in a temporary folder, including runs that die or cannot write."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from service.manifest import STAGING_PREFIX, Manifest, read_pointer
from training import registry

ROOT = Path(__file__).resolve().parents[2]
Completed = subprocess.CompletedProcess[str]


def cli(*args: str, cwd: Path, preexec_fn: Callable[[], None] | None = None) -> Completed:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
        check=False,
        preexec_fn=preexec_fn,
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_train_list_rollback_report(tmp_path: Path) -> None:
    first = cli("train", "draft_pick", "--rows", "400", "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "training summary" in first.stdout and "draft_pick" in first.stdout
    second = cli("train", "draft_pick", "--rows", "400", "--seed", "1", "--force", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    task_dir = tmp_path / "models" / "draft_pick"
    old, new = registry.versions(task_dir)
    assert read_pointer(task_dir) == new

    listing = cli("list", cwd=tmp_path)
    assert listing.returncode == 0 and old in listing.stdout and new in listing.stdout

    back = cli("rollback", "draft_pick", cwd=tmp_path)
    assert back.returncode == 0 and read_pointer(task_dir) == old

    report = cli("report", "draft_pick", cwd=tmp_path)
    assert report.returncode == 0
    assert (
        Path(report.stdout.strip())
        == tmp_path / "models" / "draft_pick" / old / "report" / "model_card.md"
    )


def test_generate_then_train_on_the_csv(tmp_path: Path) -> None:
    made = cli("generate", "churn", "--rows", "800", "--out", "bank.csv", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    header = (tmp_path / "bank.csv").read_text().splitlines()[0]
    assert header.startswith("RowNumber,CustomerId,Surname,CreditScore,Geography")
    trained = cli("train", "churn", "--data", "bank.csv", "--out", "reg", "--quiet", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    manifest = Manifest.load(tmp_path / "reg" / "churn" / read_pointer(tmp_path / "reg" / "churn"))
    assert manifest.data.source == "csv:bank.csv" and manifest.data.rows == 800
    assert manifest.metrics.bayes_roc_auc is None  # a user's CSV carries no ground truth


def test_a_new_task_is_one_spec_file_and_a_csv(tmp_path: Path) -> None:
    spec = (ROOT / "training" / "tasks" / "draft_pick.toml").read_text()
    spec = spec.replace('name = "draft_pick"', 'name = "scouting"', 1)
    spec = spec.replace('source = "draft_pick"', "# no built-in source", 1)
    (tmp_path / "scouting.toml").write_text(spec)
    cli("generate", "draft_pick", "--rows", "500", "--out", "players.csv", cwd=tmp_path)
    result = cli(
        "train", "--spec", "scouting.toml", "--data", "players.csv", "--quiet", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert read_pointer(tmp_path / "models" / "scouting")
    no_data = cli("train", "--spec", "scouting.toml", cwd=tmp_path)
    assert no_data.returncode == 2 and "pass --data" in no_data.stderr


def test_bad_csv_exits_2_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    cli("generate", "churn", "--rows", "300", "--out", "bank.csv", cwd=tmp_path)
    lines = (tmp_path / "bank.csv").read_text().splitlines()
    cells = lines[5].split(",")
    cells[6] = "old"  # Age
    lines[5] = ",".join(cells)
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    result = cli("train", "churn", "--data", "bad.csv", cwd=tmp_path)
    assert result.returncode == 2
    assert "column 'Age', line 6: 'old' is not a finite number" in result.stderr
    assert "Traceback" not in result.stderr
    assert registry.versions(tmp_path / "models" / "churn") == []


def test_bad_spec_exits_2_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('name = "x"\n[target]\nname = "y"\nlabels = ["a"]\n')
    result = cli("train", "--spec", "bad.toml", "--data", "none.csv", cwd=tmp_path)
    assert result.returncode == 2
    assert "target.labels" in result.stderr and "Traceback" not in result.stderr


def test_unknown_task_is_refused(tmp_path: Path) -> None:
    result = cli("train", "nba", cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_killed_run_leaves_the_served_version_alone(tmp_path: Path) -> None:
    assert cli("train", "draft_pick", "--quiet", cwd=tmp_path).returncode == 0
    task_dir = tmp_path / "models" / "draft_pick"
    before = registry.versions(task_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "train", "draft_pick", "--seed", "3", "--quiet"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if any(p.name.startswith(STAGING_PREFIX) for p in task_dir.iterdir()):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the run finished before it could be killed"
    assert registry.versions(task_dir) == before
    assert read_pointer(task_dir) == before[-1]
    after = cli("train", "draft_pick", "--seed", "3", "--quiet", "--force", cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert not [p for p in task_dir.iterdir() if p.name.startswith(STAGING_PREFIX)]


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # make an oversized write fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE")
def test_failing_write_leaves_the_served_version_alone(tmp_path: Path) -> None:
    assert cli("train", "draft_pick", "--rows", "400", "--quiet", cwd=tmp_path).returncode == 0
    task_dir = tmp_path / "models" / "draft_pick"
    before = registry.versions(task_dir)
    result = cli(
        "train",
        "draft_pick",
        "--rows",
        "400",
        "--seed",
        "5",
        "--force",
        cwd=tmp_path,
        preexec_fn=_limit_file_size,
    )
    assert result.returncode == 1
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr
    assert registry.versions(task_dir) == before
    assert read_pointer(task_dir) == before[-1]
    assert not [p for p in task_dir.iterdir() if p.name.startswith(STAGING_PREFIX)]
