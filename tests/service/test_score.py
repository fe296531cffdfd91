"""`python -m service score`: the API's checks and answers for a file, bad rows set aside."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.batch import cli as score
from service.batch.blocks import BLOCK_BYTES, blocks, read_record
from service.manifest import Manifest
from tests.service.helpers import REPO, copy_registry

# The bank churn CSV's own headers (aliases of the features), in another order, plus columns
# the model does not use, which must come back untouched.
HEADER = [
    "RowNumber", "Surname", "Age", "CreditScore", "Geography", "gender", "Tenure", "Balance",
    "NumOfProducts", "HasCrCard", "IsActiveMember", "EstimatedSalary",
]  # fmt: skip
FEATURES = [
    "age", "credit_score", "geography", "gender", "tenure", "balance", "num_of_products",
    "has_cr_card", "is_active_member", "estimated_salary",
]  # fmt: skip
AGE = 2  # the column of HEADER holding the age


def cells(record: dict[str, Any]) -> list[str]:
    return [str(int(v)) if isinstance(v, bool) else str(v) for v in (record[f] for f in FEATURES)]


def table(manifest: Manifest, count: int, surname: str = "Smith") -> list[list[str]]:
    examples = manifest.examples
    return [[str(i + 1), surname, *cells(examples[i % len(examples)].record)] for i in range(count)]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *rows])
    return path


def run(registry: Path, *args: str | Path) -> int:
    return score.main(["--models", str(registry), "--model", "churn", *map(str, args)])


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_clean_file_is_scored_exactly_as_the_csv_endpoint_scores_it(
    registry_dir: Path, client: httpx.Client, churn: Manifest, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "in.csv", table(churn, 40, surname="Smith, Jr."))
    out = tmp_path / "scored.csv"

    assert run(registry_dir, source, "-o", out) == score.EXIT_OK

    api = client.post(
        "/v1/models/churn/predict",
        content=source.read_bytes(),
        headers={"Content-Type": "text/csv"},
    )
    assert api.status_code == 200, api.text
    assert out.read_bytes() == api.content


def test_extra_columns_pass_through_and_aliases_match_in_any_case(
    registry_dir: Path, churn: Manifest, tmp_path: Path
) -> None:
    rows = table(churn, 5)
    out = tmp_path / "scored.csv"

    assert run(registry_dir, write_csv(tmp_path / "in.csv", rows), "-o", out) == 0

    scored = read_rows(out)
    assert list(scored[0]) == [*HEADER, "label", "probability", "p_stayed", "p_churned",
                               "out_of_range"]  # fmt: skip
    for row, given, example in zip(scored, rows, churn.examples, strict=True):
        assert [row[name] for name in HEADER] == given
        assert float(row["probability"]) == pytest.approx(example.probabilities[1], abs=1e-5)


def test_bad_rows_are_reported_by_line_and_column_and_the_rest_is_scored(
    registry_dir: Path, churn: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = table(churn, 10)
    rows[2][AGE] = "150"
    rows[5][HEADER.index("Geography")] = "Mars"
    rows[7] = rows[7][:4]
    out = tmp_path / "scored.csv"

    code = run(registry_dir, write_csv(tmp_path / "in.csv", rows), "-o", out)

    assert code == score.EXIT_ROW_ERRORS
    assert [r["RowNumber"] for r in read_rows(out)] == ["1", "2", "4", "5", "7", "9", "10"]
    err = capsys.readouterr().err
    assert "line 4 (row 2), column 'Age': Input should be less than or equal to 100" in err
    assert "line 7 (row 5), column 'Geography': Input should be 'France', 'Germany' or " in err
    assert "line 9 (row 7): the row has 4 cells, the header has 12" in err
    assert "7 of 10 rows scored, 3 with errors" in err


def test_errors_file_lists_the_problems_with_their_row_column_and_value(
    registry_dir: Path, churn: Manifest, tmp_path: Path
) -> None:
    rows = table(churn, 6)
    rows[1][AGE] = "old"
    rows[3][AGE] = "150"
    rows[3][HEADER.index("CreditScore")] = "9999"
    rows[4][HEADER.index("HasCrCard")] = "maybe"
    errors = tmp_path / "errors.csv"

    code = run(
        registry_dir, write_csv(tmp_path / "in.csv", rows), "-o", tmp_path / "o.csv",
        "--errors", errors,
    )  # fmt: skip

    assert code == score.EXIT_ROW_ERRORS
    found = [(e["line"], e["row"], e["column"], e["value"]) for e in read_rows(errors)]
    assert found == [
        ("3", "1", "Age", "old"),
        ("5", "3", "CreditScore", "9999"),
        ("5", "3", "Age", "150"),
        ("6", "4", "HasCrCard", "maybe"),
    ]
    assert all(e["error"] for e in read_rows(errors))


def test_strict_stops_at_the_first_bad_row_and_writes_nothing(
    registry_dir: Path, churn: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = table(churn, 8)
    rows[3][AGE] = "-1"
    rows[6][AGE] = "-2"
    out = tmp_path / "scored.csv"

    code = run(registry_dir, write_csv(tmp_path / "in.csv", rows), "-o", out, "--strict")

    assert code == score.EXIT_ROW_ERRORS
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "in.csv"]  # no partial file left behind
    err = capsys.readouterr().err
    assert "line 5 (row 3), column 'Age'" in err
    assert "row 6" not in err
    assert "--strict" in err


def test_many_blocks_in_worker_processes_give_the_single_process_answer(
    registry_dir: Path, churn: Manifest, tmp_path: Path
) -> None:
    rows = table(churn, 3000)
    rows[2500][AGE] = "x"
    rows[10][HEADER.index("Surname")] = 'multi\nline "quoted"'  # a record spanning two lines
    source = write_csv(tmp_path / "in.csv", rows)
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    errors_one, errors_two = tmp_path / "e1.csv", tmp_path / "e2.csv"

    common = ["--block-bytes", "8192", "--quiet"]
    assert run(registry_dir, source, "-o", one, "--workers", "1", "--errors", errors_one,
               *common) == 1  # fmt: skip
    assert run(registry_dir, source, "-o", two, "--workers", "2", "--errors", errors_two,
               *common) == 1  # fmt: skip

    assert one.read_bytes() == two.read_bytes()
    assert len(read_rows(one)) == 2999
    assert errors_one.read_bytes() == errors_two.read_bytes()
    assert [(e["line"], e["row"]) for e in read_rows(errors_one)] == [("2503", "2500")]


def test_a_missing_column_unknown_model_or_unreadable_file_exits_2(
    registry_dir: Path, churn: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_age = write_csv(tmp_path / "no_age.csv", [r[:AGE] + r[AGE + 1 :] for r in table(churn, 2)],
                       header=HEADER[:AGE] + HEADER[AGE + 1 :])  # fmt: skip
    header_only = write_csv(tmp_path / "header_only.csv", [])
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(
        write_csv(tmp_path / "x.csv", table(churn, 2)).read_bytes() + "é\n".encode("latin-1")
    )
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text(",".join(HEADER) + '\n1,"Smith\n', encoding="utf-8")

    cases = {
        no_age: "Missing column 'age'",
        header_only: "has a header but no data rows",
        empty: "empty file",
        tmp_path / "missing.csv": "cannot read (No such file or directory)",
        latin1: "line 4: not valid UTF-8",
        unclosed: "ends inside a quoted cell",
    }
    for path, message in cases.items():
        assert run(registry_dir, path, "-o", tmp_path / "out.csv") == score.EXIT_BAD_INPUT, path
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out.csv").exists()

    code = score.main(["--models", str(registry_dir), "--model", "nope", str(no_age)])
    assert code == score.EXIT_BAD_INPUT
    assert "no model 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        score.main([str(no_age)])  # --model is required
    assert usage.value.code == score.EXIT_BAD_INPUT


def test_the_command_runs_from_python_m_service_and_writes_to_stdout(
    registry_dir: Path, churn: Manifest, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "in.csv", table(churn, 3))
    command = [sys.executable, "-m", "service", "score", "--models", str(registry_dir)]

    done = subprocess.run(
        [*command, "--model", "churn", str(source)], cwd=REPO, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert len(list(csv.reader(io.StringIO(done.stdout.decode())))) == 4
    assert b"3 of 3 rows scored" in done.stderr

    bad = subprocess.run([*command, "--model", "churn"], cwd=REPO, capture_output=True, timeout=120)
    assert bad.returncode == 2
    assert b"Traceback" not in bad.stderr


def test_with_workers_a_bad_header_or_a_corrupt_model_is_one_line_not_a_traceback(
    registry_dir: Path, churn: Manifest, tmp_path: Path
) -> None:
    """Workers start before the parent loads the model; their failures must not be printed."""
    no_age = write_csv(tmp_path / "no_age.csv", [r[:AGE] + r[AGE + 1 :] for r in table(churn, 400)],
                       header=HEADER[:AGE] + HEADER[AGE + 1 :])  # fmt: skip
    good = write_csv(tmp_path / "good.csv", table(churn, 400))
    broken = copy_registry(registry_dir, tmp_path / "models")
    version = broken / "churn" / (broken / "churn" / "current").read_text().strip()
    onnx = next(version.glob("*.onnx"))
    onnx.write_bytes(onnx.read_bytes()[:-10])  # sha256 no longer matches the manifest
    command = [sys.executable, "-m", "service", "score", "--model", "churn", "--workers", "2",
               "--block-bytes", "4096", "-o", str(tmp_path / "out.csv")]  # fmt: skip
    for models, source, message in [
        (registry_dir, no_age, b"Missing column 'age'"),
        (broken, good, b"sha256"),
    ]:
        done = subprocess.run(
            [*command, "--models", str(models), str(source)],
            cwd=REPO, capture_output=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == score.EXIT_BAD_INPUT, done.stderr
        assert message in done.stderr
        assert b"Traceback" not in done.stderr
        assert done.stderr.count(b"\n") == 1, done.stderr
        assert not (tmp_path / "out.csv").exists()


def test_blocks_end_on_record_boundaries_even_inside_quotes() -> None:
    text = b'a,b\n1,"x\ny"\n2,"p,q"\n3,z\n'
    stream = io.BytesIO(text)
    header, rest = read_record(stream, block_bytes=3)
    assert header == b"a,b\n"
    parts = list(blocks(stream, rest, block_bytes=4))
    assert b"".join(parts) == text[len(header) :]
    for part in blocks(io.BytesIO(text[len(header) :]), b"", block_bytes=5):
        assert part.endswith(b"\n")
        assert part.count(b'"') % 2 == 0


def test_a_scored_block_too_big_for_its_slot_comes_back_through_the_pipe(
    registry_dir: Path, churn: Manifest, tmp_path: Path
) -> None:
    """A record longer than the block makes a block (and its output) bigger than the slot."""
    rows = table(churn, 600)
    rows[300][HEADER.index("Surname")] = "S" * 20_000  # slots hold four blocks' worth: 16 KiB
    source = write_csv(tmp_path / "in.csv", rows)
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    common = ["--block-bytes", "4096", "--quiet"]

    assert run(registry_dir, source, "-o", one, "--workers", "1", *common) == score.EXIT_OK
    assert run(registry_dir, source, "-o", two, "--workers", "2", *common) == score.EXIT_OK

    assert one.read_bytes() == two.read_bytes()
    assert read_rows(two)[300]["Surname"] == "S" * 20_000


def test_from_a_pipe_the_file_is_scored_in_one_process_as_from_a_file(
    registry_dir: Path, churn: Manifest, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "in.csv", table(churn, 2000))
    command = [sys.executable, "-m", "service", "score", "--models", str(registry_dir), "--model",
               "churn", "--block-bytes", "4096", "--workers", "2", "--quiet"]  # fmt: skip

    piped = subprocess.run(
        [*command, "/dev/stdin"], input=source.read_bytes(), cwd=REPO, capture_output=True,
        timeout=120,
    )  # fmt: skip
    from_file = subprocess.run([*command, str(source)], cwd=REPO, capture_output=True, timeout=120)

    assert piped.returncode == from_file.returncode == score.EXIT_OK, piped.stderr
    assert piped.stdout == from_file.stdout
    assert piped.stdout.count(b"\r\n") == 2001


def test_row_errors_exit_1_from_python_m_service_with_every_good_row_written(
    registry_dir: Path, churn: Manifest, tmp_path: Path
) -> None:
    """The command ends with `os._exit` after a run: output and stderr must be flushed first."""
    rows = table(churn, 3000)
    rows[1234][AGE] = "-5"
    source = write_csv(tmp_path / "in.csv", rows)
    command = [sys.executable, "-m", "service", "score", "--models", str(registry_dir), "--model",
               "churn", "--workers", "2", "--block-bytes", "8192", str(source)]  # fmt: skip

    done = subprocess.run(command, cwd=REPO, capture_output=True, timeout=120)

    assert done.returncode == score.EXIT_ROW_ERRORS, done.stderr
    assert done.stdout.count(b"\r\n") == 3000  # the header and 2,999 rows
    assert b"line 1236 (row 1234), column 'Age'" in done.stderr
    assert b"2,999 of 3,000 rows scored" in done.stderr


@pytest.mark.parametrize("closed", [1, 2])
def test_a_closed_stdout_or_stderr_does_not_turn_a_good_run_into_an_error(
    registry_dir: Path, churn: Manifest, tmp_path: Path, closed: int
) -> None:
    """Python sets sys.stdout (or sys.stderr) to None then; the run still ends with 0."""
    source = write_csv(tmp_path / "in.csv", table(churn, 50))
    out = tmp_path / "out.csv"
    command = [sys.executable, "-m", "service", "score", "--models", str(registry_dir), "--model",
               "churn", "--quiet", str(source), "-o", str(out)]  # fmt: skip

    done = subprocess.run(
        command, cwd=REPO, capture_output=True, timeout=120, preexec_fn=lambda: os.close(closed)
    )

    assert done.returncode == score.EXIT_OK, done.stderr
    assert len(read_rows(out)) == 50


def test_a_file_cut_short_while_workers_read_it_stops_the_run_with_nothing_written(
    registry_dir: Path,
    churn: Manifest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The workers read their blocks from the file: the file shrinks under them after the
    parent has read the first block (the edit is made by wrapping the parent's block reader)."""
    source = write_csv(tmp_path / "in.csv", table(churn, 3000))
    out = tmp_path / "out.csv"
    real_blocks = blocks

    def blocks_then_truncate(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        for index, block in enumerate(real_blocks(*args, **kwargs)):
            yield block
            if index == 0:
                os.truncate(source, 5000)

    monkeypatch.setattr(score, "blocks", blocks_then_truncate)
    code = run(registry_dir, source, "-o", out, "--workers", "2", "--block-bytes", "8192")

    assert code == score.EXIT_BAD_INPUT
    assert "in.csv: the file changed while it was being scored" in capsys.readouterr().err
    assert not out.exists()
    assert not list(tmp_path.glob(".out.csv.partial-*"))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_file_still_growing_when_read_to_its_end_stops_the_run(
    registry_dir: Path,
    churn: Manifest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    workers: str,
) -> None:
    """Rows appended after the reader reached the end would be missing from the output: a run
    over a file still being written is refused, in one process and with workers."""
    source = write_csv(tmp_path / "in.csv", table(churn, 3000))
    out = tmp_path / "out.csv"
    real_blocks = blocks
    last_line = source.read_bytes().splitlines(keepends=True)[-1]

    def blocks_then_append(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield from real_blocks(*args, **kwargs)
        with source.open("ab") as grown:
            grown.write(last_line)

    monkeypatch.setattr(score, "blocks", blocks_then_append)
    code = run(registry_dir, source, "-o", out, "--workers", workers, "--block-bytes", "8192")

    assert code == score.EXIT_BAD_INPUT
    assert "in.csv: the file changed while it was being scored" in capsys.readouterr().err
    assert not out.exists()


def _pieces(path: Path, block_bytes: int) -> list[bytes]:
    """The header and the blocks, as the score command reads the file."""
    with path.open("rb") as source:
        header, rest = read_record(source)
        return [header, *blocks(source, rest, block_bytes)]


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("at_a_read_boundary", [True, False])
def test_a_last_line_of_spaces_is_a_short_row_wherever_a_read_ends(
    registry_dir: Path,
    churn: Manifest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    workers: str,
    at_a_read_boundary: bool,
) -> None:
    """Spaces after the last line are a row of one cell, as the service reports them: the same
    answer when a read ends right before them (the header's read takes BLOCK_BYTES, then each
    one `--block-bytes`) as when they share a block with rows."""
    source = tmp_path / "in.csv"
    rows = table(churn, 19_000)  # over BLOCK_BYTES
    write_csv(source, rows)
    if at_a_read_boundary:
        rows[-1][1] += "x" * ((BLOCK_BYTES - source.stat().st_size) % 4096)
        write_csv(source, rows)
    with source.open("ab") as handle:
        handle.write(b"  ")
    assert (_pieces(source, 4096)[-1] == b"  ") == at_a_read_boundary
    out = tmp_path / "out.csv"
    code = run(registry_dir, source, "-o", out, "--workers", workers, "--block-bytes", "4096")
    assert code == score.EXIT_ROW_ERRORS
    assert len(read_rows(out)) == len(rows)
    err = capsys.readouterr().err
    assert f"line {len(rows) + 2} (row {len(rows)}): the row has 1 cells" in err


def test_blank_lines_after_the_last_line_at_a_read_boundary_are_not_a_change(
    registry_dir: Path, churn: Manifest, tmp_path: Path
) -> None:
    """The reader drops a last piece of line ends alone; the file was still read to its end."""
    source = tmp_path / "in.csv"
    rows = table(churn, 19_000)
    write_csv(source, rows)
    rows[-1][1] += "x" * ((BLOCK_BYTES - source.stat().st_size) % 4096)
    write_csv(source, rows)
    with source.open("ab") as handle:
        handle.write(b"\r\n\n")
    assert sum(map(len, _pieces(source, 4096))) == source.stat().st_size - 3  # dropped
    out = tmp_path / "out.csv"
    code = run(registry_dir, source, "-o", out, "--block-bytes", "4096")
    assert code == 0
    assert len(read_rows(out)) == len(rows)


def test_a_header_then_blank_lines_has_no_data_rows(
    registry_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(",".join(HEADER).encode() + b"\n\r\n\n")
    assert run(registry_dir, source, "-o", tmp_path / "out.csv") == score.EXIT_BAD_INPUT
    assert "has a header but no data rows" in capsys.readouterr().err
