"""The benchmark's gRPC cases: `bench.grpc_load` against our real server with gRPC on (a small
bounded run, every call answered OK, refusals counted by code), and how the cases are wired
into the run and its targets. No timing is asserted (the machine is shared)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cases import GRPC_CEILING, MLS_ONNX_GRPC, MLSERVER, OURS, OURS_GRPC, Case, all_cases
from bench.grpc_load import MARKER, load
from bench.load import LoadResult, run_grpc_load
from bench.payloads import Body, churn_records, grpc_request, write_bodies
from bench.report import grpc_checks
from bench.runner import Measurement, Run, Setup, started
from service.manifest import Manifest, read_pointer

REPO = Path(__file__).resolve().parents[2]
SIZES = [1, 1_000]


@pytest.fixture(scope="module")
def churn() -> tuple[Path, Manifest]:
    folder = REPO / "models" / "churn"
    version_dir = folder / read_pointer(folder)
    return version_dir, Manifest.load(version_dir)


@pytest.fixture(scope="module")
def bodies(
    tmp_path_factory: pytest.TempPathFactory, churn: tuple[Path, Manifest]
) -> dict[str, Body]:
    folder = tmp_path_factory.mktemp("bodies")
    return write_bodies(churn[1], folder, SIZES, {"grpc": "churn"})


@pytest.fixture(scope="module")
def server_address(
    tmp_path_factory: pytest.TempPathFactory,
    churn: tuple[Path, Manifest],
    bodies: dict[str, Body],
) -> Iterator[str]:
    """Our service as the benchmark starts it (`bench.runner.started`): gRPC on a free port."""
    setup = Setup(tmp_path_factory.mktemp("cache"), bodies, 1.0, churn[0])
    with started(setup, OURS) as server:
        assert server.grpc_address.startswith("127.0.0.1:")
        yield server.grpc_address


def grpc_load(address: str, request: Path, *options: str) -> dict[str, object]:
    argv = [sys.executable, "-m", "bench.grpc_load", address, str(request), *options]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)]
    summary: dict[str, object] = json.loads(line.removeprefix(MARKER))
    return summary


def test_a_bounded_run_stops_at_its_call_count_and_every_call_is_answered(
    server_address: str, bodies: dict[str, Body]
) -> None:
    options = ["--concurrency", "4", "--seconds", "30", "--max-calls", "60", "--rows", "1"]
    summary = grpc_load(server_address, bodies["grpc-1"].path, *options)
    assert summary["calls"] == summary["ok"] == 60
    assert summary["errors"] == {} and summary["first_error"] == ""
    assert summary["checked"] is True  # the first answer held probabilities for the row sent


def test_the_runner_measures_one_record_and_a_batch_without_errors(
    server_address: str, bodies: dict[str, Body]
) -> None:
    for key, concurrency in (("grpc-1", 8), ("grpc-1000", 2)):
        result = run_grpc_load(server_address, bodies[key], concurrency, 1.0)
        assert result.requests > 0 and result.errors == 0, result
        assert 0 < result.p50_ms <= result.p99_ms


def test_refusals_are_counted_by_status_code(
    tmp_path: Path, server_address: str, churn: tuple[Path, Manifest]
) -> None:
    manifest = churn[1]
    request = tmp_path / "unknown-model.body"
    records = churn_records(manifest, 100)[:1]  # the generator needs both classes
    request.write_bytes(grpc_request(manifest, records, "no_such_model"))
    summary = grpc_load(server_address, request, "--concurrency", "2", "--max-calls", "10")
    assert summary["errors"] == {"NOT_FOUND": 10} and summary["ok"] == 0
    assert str(summary["first_error"]).startswith("NOT_FOUND: ")


def test_the_grpc_ceiling_answers_every_call(tmp_path: Path, bodies: dict[str, Body]) -> None:
    setup = Setup(tmp_path, bodies, 1.0, tmp_path)
    with started(setup, GRPC_CEILING) as ceiling:
        result = run_grpc_load(ceiling.grpc_address, bodies["grpc-1"], 4, 1.0)
    assert result.requests > 0 and result.errors == 0, result


def test_only_loopback_is_loaded() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        asyncio.run(load("192.0.2.1:8001", b"", 1, 1.0, 1))


def test_grpc_cases_run_ours_beside_mlserver_and_without_it() -> None:
    quick = [case for case in all_cases(quick=True, mlserver=True) if case.is_grpc]
    assert {(c.server, c.system, c.records, c.connections) for c in quick} == {
        (OURS, OURS_GRPC, 1, 16),
        (OURS, OURS_GRPC, 10_000, 2),
        (MLSERVER, MLS_ONNX_GRPC, 1, 16),
        (MLSERVER, MLS_ONNX_GRPC, 10_000, 2),
        (GRPC_CEILING, GRPC_CEILING, 1, 16),  # what grpc.aio alone allows, answering a constant
    }
    assert {c.body for c in quick if c.server == MLSERVER} == {"grpcmls-1", "grpcmls-10000"}
    alone = [case for case in all_cases(quick=False, mlserver=False) if case.is_grpc]
    assert alone and {case.server for case in alone} == {OURS, GRPC_CEILING}


def test_targets_are_ratios_to_mlserver_and_unmet_when_a_call_failed() -> None:
    def measured(
        system: str, records: int, connections: int, rate: float, errors: int
    ) -> Measurement:
        server = OURS if system == OURS_GRPC else MLSERVER
        case = Case(server, system, "grpc", f"grpc-{records}", connections)
        result = LoadResult(int(rate * 10), 10.0, 1.0, 2.0, errors, 0)
        return Measurement(case, 1, result, 1.0)

    run = Run(
        [
            measured(OURS_GRPC, 1, 16, 3000.0, 0),
            measured(MLS_ONNX_GRPC, 1, 16, 1000.0, 0),
            measured(OURS_GRPC, 10_000, 2, 20.0, 0),
            measured(MLS_ONNX_GRPC, 10_000, 2, 10.0, 3),
        ]
    )
    (one, batch) = grpc_checks(run)
    assert one[1] == pytest.approx(3.0) and one[2] == 2.0
    assert batch[1] is None  # MLServer failed calls: no ratio, the target shows unmet
