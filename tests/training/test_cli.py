"""The training CLI end to end in a temporary folder, including runs that die or cannot write."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from service.manifest import STAGING_PREFIX, Manifest, read_pointer
from tests.missing_values import write_files
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
    assert "best baseline" in first.stdout and "draft_pick: The network is " in first.stdout
    again = ["--rows", "400", "--seed", "1", "--force", "--cv-folds", "0"]
    second = cli("train", "draft_pick", *again, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    task_dir = tmp_path / "models" / "draft_pick"
    old, new = registry.versions(task_dir)
    assert read_pointer(task_dir) == new
    cv = Manifest.load(task_dir / old).cross_validation
    assert cv is not None and cv.folds == 5
    assert Manifest.load(task_dir / new).cross_validation is None

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


def test_one_cv_fold_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    result = cli("train", "draft_pick", "--cv-folds", "1", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--cv-folds: 1 is not a number of folds" in result.stderr
    assert "0 (no cross-validation) or 2 or more" in result.stderr
    assert not (tmp_path / "models").exists()


def test_unknown_task_is_refused(tmp_path: Path) -> None:
    result = cli("train", "nba", cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_killed_run_leaves_the_served_version_alone(tmp_path: Path) -> None:
    quick = ("--cv-folds", "0")  # what is killed is the export; cross-validation only delays it
    assert cli("train", "draft_pick", "--quiet", *quick, cwd=tmp_path).returncode == 0
    task_dir = tmp_path / "models" / "draft_pick"
    before = registry.versions(task_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "train", "draft_pick", "--seed", "3", "--quiet", *quick],
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
    after = cli("train", "draft_pick", "--seed", "3", "--quiet", "--force", *quick, cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert not [p for p in task_dir.iterdir() if p.name.startswith(STAGING_PREFIX)]


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # make an oversized write fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE")
def test_failing_write_leaves_the_served_version_alone(tmp_path: Path) -> None:
    quick = ("--rows", "400", "--cv-folds", "0")
    assert cli("train", "draft_pick", *quick, "--quiet", cwd=tmp_path).returncode == 0
    task_dir = tmp_path / "models" / "draft_pick"
    before = registry.versions(task_dir)
    result = cli(
        "train",
        "draft_pick",
        *quick,
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


def _one_line_error(result: Completed) -> str:
    """The whole of stderr, checked to be one `error:` line with no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_user_text_is_never_parsed_as_markup(tmp_path: Path, sports: tuple[Path, Path]) -> None:
    spec_path, csv_path = sports
    spec = spec_path.read_text(encoding="utf-8")
    frame = pd.read_csv(csv_path)

    # A header holding a closing tag, and a bad cell quoting another, in a one-line error.
    odd = frame.rename(columns={"PTS [avg]": "PTS [/x]"}).astype({"PTS [/x]": object})
    odd.loc[4, "PTS [/x]"] = "[bold]9"
    odd.to_csv(tmp_path / "odd.csv", index=False)
    (tmp_path / "odd.toml").write_text(spec.replace("PTS [avg]", "PTS [/x]"), encoding="utf-8")
    result = cli("train", "--spec", "odd.toml", "--data", "odd.csv", cwd=tmp_path)
    line = _one_line_error(result)
    assert line.endswith("column 'PTS [/x]', line 6: '[bold]9' is not a finite number")

    # Headers with brackets and emoji codes are listed as they are.
    frame.rename(columns={"GP": "score [usd]", "Name": ":smile:"}).to_csv(
        tmp_path / "renamed.csv", index=False
    )
    line = _one_line_error(
        cli("train", "--spec", spec_path.name, "--data", "renamed.csv", cwd=tmp_path)
    )
    assert "missing column 'games_played' (also accepted: GP)" in line
    assert "found: :smile:, score [usd], PTS [avg]," in line and "😄" not in line

    # The spec's rule for names is printed, not eaten as a style.
    (tmp_path / "badname.toml").write_text(spec.replace('"age"', '"Age [years]"'), encoding="utf-8")
    line = _one_line_error(cli("train", "--spec", "badname.toml", "--data", "x.csv", cwd=tmp_path))
    assert "'Age [years]' is not a valid name" in line and "(^[a-z][a-z0-9_]{0,63}$)" in line


def test_bracketed_paths_and_sources_print_as_they_are(tmp_path: Path) -> None:
    made = cli("generate", "draft_pick", "--rows", "300", "--out", "[red]players.csv", cwd=tmp_path)
    assert made.stdout == "wrote 300 rows to [red]players.csv\n", made.stderr
    # "reg [/x]" is the folder `x]` inside `reg [`: its path prints with a closing tag in it.
    trained = cli(
        "train", "draft_pick", "--data", "[red]players.csv", "--out", "reg [/x]", cwd=tmp_path
    )
    assert trained.returncode == 0, trained.stderr
    assert "draft_pick: load data done" in trained.stderr
    listing = cli("list", "--out", "reg [/x]", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "csv:[red]players.csv" in listing.stdout
    report = cli("report", "draft_pick", "--out", "reg [/x]", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    version = read_pointer(tmp_path / "reg [/x]" / "draft_pick")
    expected = tmp_path / "reg [/x]" / "draft_pick" / version / "report" / "model_card.md"
    assert report.stdout == f"{expected}\n"


def test_every_spec_problem_is_shown_with_its_key(
    tmp_path: Path, sports: tuple[Path, Path]
) -> None:
    spec_path, _ = sports
    spec = spec_path.read_text(encoding="utf-8")
    spec = spec.replace("min = 0\nmax = 60", "min = 60\nmax = 0", 1)  # points
    spec = spec.replace('name = "ft_rate"\ntype = "float"', 'name = "ft_rate"\ntype = "real"', 1)
    spec = spec.replace("max_iter = 40", 'max_iter = "40"\nlearning_rate = 1', 1)
    spec = spec.replace('name = "season"', 'name = "age"', 1)
    (tmp_path / "bad.toml").write_text(spec, encoding="utf-8")
    result = cli("train", "--spec", "bad.toml", "--data", "rookies.csv", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "error: bad.toml: 5 problems:",
        "  mlp.max_iter: Input should be a valid integer (got '40')",
        "  mlp.learning_rate: unknown key (not part of a task spec; check the spelling)",
        "  features.points: min 60.0 is greater than max 0.0",
        "  features.ft_rate.type: Input should be 'float', 'int', 'bool' or 'category' "
        "(got 'real')",
        "  features.7.name: 'age' is already the name of features.5",
    ]
    assert not (tmp_path / "models").exists()


def test_a_real_looking_file_trains_unchanged_and_its_flaws_are_reported(
    tmp_path: Path, sports: tuple[Path, Path]
) -> None:
    spec_path, csv_path = sports
    result = cli(
        "train", "--spec", spec_path.name, "--data", csv_path.name, "--quiet", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    summary = result.stdout.split("training summary", 1)[1]
    assert "rookies: data quality: 6 warnings (240 rows; details in the model card)" in summary
    for finding in [
        "warning: 6 duplicate rows (2.5%)",
        "warning: 8 rows have the same features as a row with another label",
        "warning: constant columns (one value in every row, so no information): season",
        'every value is a whole number (a count? declare type = "int"): height_cm',
        "like a fraction: requests must use the same scale (0.45, not 45): ft_rate",
        "like a percentage: requests must use the same scale (45, not 0.45): three_point",
    ]:
        assert finding in summary
    task_dir = tmp_path / "models" / "rookies"
    manifest = Manifest.load(task_dir / read_pointer(task_dir))
    assert manifest.target == "target_5yrs"  # matched `TARGET_5Yrs` without an alias
    aliases = {f.name: f.aliases for f in manifest.features}
    assert aliases["fg3pa"] == [] and aliases["age"] == ["年龄"]  # the spec's aliases, no more
    report = task_dir / manifest.version / "report"
    document = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    assert document["data_quality"]["duplicate_rows"] == 6
    assert "## Data quality" in (report / "model_card.md").read_text(encoding="utf-8")


def test_a_clean_run_says_it_has_no_warnings(tmp_path: Path) -> None:
    result = cli("train", "draft_pick", "--rows", "400", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "draft_pick: data quality: no warnings (400 rows)" in result.stdout


def test_the_summary_lists_the_features_that_may_be_missing(tmp_path: Path) -> None:
    write_files(tmp_path)
    result = cli("train", "--spec", "loans.toml", "--data", "loans.csv", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = Manifest.load(
        tmp_path / "models" / "loans" / read_pointer(tmp_path / "models" / "loans")
    )
    lines = result.stdout.split("training summary", 1)[1].splitlines()
    start = lines.index("loans: may be missing (6 of 7):")
    income = manifest.feature("income")
    assert lines[start + 1] == (
        f"  income: median -> {income.impute_value:.4g} "
        f"({income.train_missing_rate:.1%} missing in training)"
    )
    assert "  purpose: constant -> other, with an indicator input (" in lines[start + 6]


def test_a_blank_in_a_required_feature_exits_2_naming_the_key(tmp_path: Path) -> None:
    write_files(tmp_path)
    frame = pd.read_csv(tmp_path / "loans.csv", dtype=str, keep_default_na=False)
    frame.loc[11, "Age"] = " NA "
    frame.to_csv(tmp_path / "loans.csv", index=False)
    result = cli("train", "--spec", "loans.toml", "--data", "loans.csv", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "error: loans.csv: column 'Age', line 13: 'NA' (missing); a required feature: to allow "
        "missing values set features.age.impute (or [defaults] impute)"
    )
    assert not (tmp_path / "models").exists()
