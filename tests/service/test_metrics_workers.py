"""/metrics with two workers reports the sum over both, whichever worker answers the scrape.

Each test starts the real service (`python -m service`, PREDICT_WORKERS=2) on the committed
models. Which worker answered a request or a scrape is read from the workers' own files in the
metrics directory (one file per process and metric type), so a test whose requests all went to
one worker fails instead of proving nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from uvicorn.config import STARTUP_FAILURE

from service.manifest import Manifest, read_pointer, task_dirs
from service.observability.metrics import LATENCY_BUCKETS
from tests.reliability.test_swaps import release
from tests.service.helpers import REPO, Server, children, copy_registry, free_port, manifest_of
from tests.service.test_metrics import samples, value

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc")

COMMITTED = REPO / "models"
COMMITTED_TASKS = [task for task in task_dirs(COMMITTED) if (task / "current").is_file()]
ROUTE = "/v1/models/{task}/predict"
OK = {"route": ROUTE, "model": "churn", "status": "200"}
SCRAPES = {"route": "/metrics", "model": "", "status": "200"}
REQUESTS = 60  # at least; more until both workers answered some
CLIENTS = 6  # concurrent clients, each request on a fresh connection
STALE_REQUESTS = 1000
# HTTP only: the gRPC server's default port would collide with other servers on this machine.
HTTP_ONLY = {"PREDICT_GRPC_PORT": "0"}
WORKERS = {"PREDICT_WORKERS": "2", "PREDICT_POLL_INTERVAL_SECONDS": "0", **HTTP_ONLY}
PREDICTIONS = ("counter", "predict_http_requests_total", OK)

StartServer = Callable[..., Server]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def churn() -> Manifest:
    return manifest_of(COMMITTED, "churn")


def test_two_workers_report_the_sum_whichever_answers_and_stale_files_are_deleted(
    start_server: StartServer, churn: Manifest, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    stale = _write_stale_counts(metrics_dir)
    keep = metrics_dir / "README"  # not prometheus-client's: left alone
    keep.write_text("operator's note")
    server = start_server(COMMITTED, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), **WORKERS)
    assert server.process is not None

    assert not any(path.exists() for path in stale)
    assert keep.exists()
    sent = _predict_until_both_workers_answered(server, churn, metrics_dir)
    _assert_scrapes_count(server, metrics_dir, sent, _workers(server.process.pid))


def test_a_killed_worker_keeps_its_counts_and_its_replacement_reports_the_versions(
    start_server: StartServer, churn: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No PROMETHEUS_MULTIPROC_DIR: the supervisor's private directory, removed at its exit."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    server = start_server(COMMITTED, **WORKERS)
    assert server.process is not None
    workers = _workers(server.process.pid)
    metrics_dir = Path(_environment_of(workers[0])["PROMETHEUS_MULTIPROC_DIR"])
    assert metrics_dir.is_dir()
    sent = _predict_until_both_workers_answered(server, churn, metrics_dir)

    victim, survivor = workers
    os.kill(victim, signal.SIGKILL)
    replacement = _wait_for_replacement(server, workers, metrics_dir)
    assert not (metrics_dir / f"gauge_livemax_{victim}.db").exists()  # marked dead
    assert _per_worker(metrics_dir, "counter", "predict_http_requests_total", OK)[victim] > 0
    found = _assert_scrapes_count(server, metrics_dir, sent, [survivor, replacement])
    versions = _per_worker(metrics_dir, "gauge_livemax", "predict_model_info", {})
    assert versions == {survivor: len(COMMITTED_TASKS), replacement: len(COMMITTED_TASKS)}
    for task_dir in COMMITTED_TASKS:
        labels = {"model": task_dir.name, "version": read_pointer(task_dir)}
        assert value(found, "predict_model_info", **labels) == 1

    server.stop()
    assert not metrics_dir.exists()


def test_after_a_reload_by_both_workers_the_old_version_reads_0_and_the_new_1(
    start_server: StartServer, tmp_path: Path
) -> None:
    """prometheus-client cannot remove a series from its files: the old version stays, at 0."""
    models = copy_registry(COMMITTED, tmp_path / "models")
    task_dir = models / "churn"
    old = read_pointer(task_dir)
    server = start_server(models, **(WORKERS | {"PREDICT_POLL_INTERVAL_SECONDS": "0.1"}))
    assert server.process is not None
    workers = _workers(server.process.pid)
    metrics_dir = Path(_environment_of(workers[0])["PROMETHEUS_MULTIPROC_DIR"])

    new = "29990101T000001Z"
    release(task_dir, task_dir / old, new, damage=lambda _: None)
    info = ("gauge_livemax", "predict_model_info", {"model": "churn", "version": new})
    deadline = time.monotonic() + 30.0
    while set(_per_worker(metrics_dir, *info)) != set(workers):
        assert time.monotonic() < deadline, f"not reloaded by both workers:\n{server.log()}"
        time.sleep(0.1)
    found = _scrape(server)
    assert value(found, "predict_model_info", model="churn", version=new) == 1
    assert ("predict_model_info", frozenset({"model": "churn", "version": old}.items())) in found
    assert value(found, "predict_model_info", model="churn", version=old) == 0


def test_one_worker_keeps_its_metrics_in_memory(
    start_server: StartServer, churn: Manifest, tmp_path: Path
) -> None:
    """One process has nothing to merge: PROMETHEUS_MULTIPROC_DIR is not used, no file written."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    server = start_server(COMMITTED, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), **HTTP_ONLY)
    with server.client() as client:
        for _ in range(3):
            response = client.post("/v1/models/churn/predict", json=_body(churn))
            assert response.status_code == 200, response.text
        assert value(samples(client), "predict_http_requests_total", **OK) == 3
    assert list(metrics_dir.iterdir()) == []


def test_an_unusable_metrics_directory_stops_the_start_with_one_line(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "metrics"
    not_a_directory.write_text("a file")
    environment = {
        **os.environ,
        **WORKERS,
        "PROMETHEUS_MULTIPROC_DIR": str(not_a_directory),
        "PREDICT_MODELS_DIR": str(COMMITTED),
        "PREDICT_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == STARTUP_FAILURE, result.stderr
    assert f"PROMETHEUS_MULTIPROC_DIR={not_a_directory} unusable" in result.stderr
    assert "Traceback" not in result.stderr


def _write_stale_counts(metrics_dir: Path) -> list[Path]:
    """A previous run's files: STALE_REQUESTS churn predictions counted by the real Metrics."""
    code = (
        "from service.observability.metrics import Metrics\n"
        "metrics = Metrics()\n"
        f"for _ in range({STALE_REQUESTS}):\n"
        f"    metrics.observe_request({ROUTE!r}, 'churn', 200, 0.001)\n"
    )
    metrics_dir.mkdir()
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, check=True)
    stale = sorted(metrics_dir.glob("*.db"))
    assert stale, "the stale counts were not written"
    return stale


def _body(churn: Manifest) -> dict[str, object]:
    return {"records": [churn.examples[0].record]}


def _predict_until_both_workers_answered(server: Server, churn: Manifest, metrics_dir: Path) -> int:
    """Send REQUESTS predictions, more until both workers answered some; return how many."""
    sent = 0
    while sent < REQUESTS or len(_per_worker(metrics_dir, *PREDICTIONS)) < 2:
        assert sent < 10 * REQUESTS, "every prediction went to one worker"
        with ThreadPoolExecutor(CLIENTS) as pool:
            statuses = list(pool.map(lambda _: _predict(server, churn), range(REQUESTS // 2)))
        assert statuses == [200] * len(statuses)
        sent += len(statuses)
    return sent


def _predict(server: Server, churn: Manifest) -> int:
    url = f"{server.url}/v1/models/churn/predict"
    return httpx.post(url, json=_body(churn), timeout=60.0).status_code  # a fresh connection


def _assert_scrapes_count(
    server: Server, metrics_dir: Path, sent: int, answering: list[int]
) -> Samples:
    """Scrape over fresh connections until each of `answering` answered one; each counts `sent`."""
    found: Samples = {}
    for _ in range(20):
        with ThreadPoolExecutor(2) as pool:
            for found in pool.map(lambda _: _scrape(server), range(4)):
                assert value(found, "predict_http_requests_total", **OK) == sent
                assert value(found, "predict_http_request_duration_seconds_count", **OK) == sent
                _assert_buckets(found, sent)
        scraped = _per_worker(metrics_dir, "counter", "predict_http_requests_total", SCRAPES)
        if set(answering) <= set(scraped):
            return found
    raise AssertionError(f"not every worker of {answering} answered a scrape: {scraped}")


def _scrape(server: Server) -> Samples:
    with server.client() as client:
        return samples(client)


def _assert_buckets(found: Samples, sent: int) -> None:
    """Every latency bucket is there, cumulative, and the +Inf one holds every request."""
    name = "predict_http_request_duration_seconds_bucket"
    bounds = [str(float(bound)) for bound in LATENCY_BUCKETS] + ["+Inf"]
    counts = [value(found, name, **OK, le=bound) for bound in bounds]
    assert all((name, frozenset({**OK, "le": b}.items())) in found for b in bounds), bounds
    assert counts == sorted(counts)
    assert counts[-1] == sent


def _per_worker(
    metrics_dir: Path, kind: str, name: str, labels: dict[str, str]
) -> dict[int, float]:
    """One sample's value in each process's file of `kind` (pid -> value; zeros left out).

    The series whose labels include `labels` are summed (all of them, for empty `labels`).
    """
    found: dict[int, float] = {}
    for path in metrics_dir.glob(f"{kind}_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        # untyped in prometheus_client
        merged = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        for family in merged:
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    found[pid] = found.get(pid, 0.0) + sample.value
    return {pid: count for pid, count in found.items() if count}


def _workers(supervisor: int) -> list[int]:
    """The supervisor's worker processes (their command line names multiprocessing's spawn)."""
    workers = [pid for pid, command in children(supervisor).items() if b"spawn_main" in command]
    assert len(workers) == 2, workers
    return workers


def _environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode().partition("=") for item in raw if item)
    return {key: value for key, _, value in pairs}


def _wait_for_replacement(server: Server, workers: list[int], metrics_dir: Path) -> int:
    """Wait until the supervisor started another worker and it loaded every model."""
    assert server.process is not None
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        loads = _per_worker(metrics_dir, "counter", "predict_model_reloads_total", {})
        for pid in children(server.process.pid):
            if pid not in workers and loads.get(pid) == len(COMMITTED_TASKS):
                return pid
        time.sleep(0.1)
    raise AssertionError(f"the killed worker was not replaced:\n{server.log()}")
