"""Big requests take one lane (`service.api.context`): one at a time, off the event loop.

The lane is what keeps a worker's peak memory to one big batch and its event loop free for small
requests; these tests provoke both: big bodies at once (each still answered in full and in kind)
and small requests while they run.
"""

from __future__ import annotations

import platform
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from service.api.context import INLINE_BYTES, Lane
from service.manifest import Manifest
from tests.service.helpers import Server


def test_the_lane_runs_one_work_at_a_time_in_a_worker_thread() -> None:
    lane = Lane()
    active, peak, threads = 0, 0, set()
    guard = threading.Lock()

    def work(number: int) -> int:
        nonlocal active, peak
        with guard:
            active += 1
            peak = max(peak, active)
            threads.add(threading.get_ident())
        time.sleep(0.02)
        with guard:
            active -= 1
        return number

    results: list[int] = []

    async def main() -> None:
        async def one(number: int) -> None:
            results.append(await lane.run(work, number))

        async with anyio.create_task_group() as group:
            for number in range(5):
                group.start_soon(one, number)

    anyio.run(main)
    assert sorted(results) == list(range(5))
    assert peak == 1
    assert threading.get_ident() not in threads


def test_small_work_runs_inline_and_big_work_takes_the_lane() -> None:
    lane = Lane()

    async def main() -> tuple[int, int]:
        small = await lane.run_sized(INLINE_BYTES, threading.get_ident)
        big = await lane.run_sized(INLINE_BYTES + 1, threading.get_ident)
        return small, big

    small, big = anyio.run(main)
    assert small == threading.get_ident()
    assert big != threading.get_ident()


def test_big_bodies_at_once_are_each_answered_in_full_while_small_ones_are_served(
    server: Server, churn: Manifest
) -> None:
    record = dict(churn.examples[0].record)
    big = {"records": [record] * 5_000}
    header = ",".join(record)
    row = ",".join(str(int(v)) if isinstance(v, bool) else str(v) for v in record.values())
    csv_body = (header + "\n" + (row + "\n") * 5_000).encode()
    assert len(csv_body) > INLINE_BYTES
    url = "/v1/models/churn/predict"
    stop = threading.Event()
    small_answers: list[tuple[float, int]] = []  # when each was answered, and its status

    def small_requests() -> None:
        with server.client() as client:
            while not stop.is_set():
                answer = client.post(url, json={"records": [record]})
                small_answers.append((time.monotonic(), answer.status_code))

    def big_request(kind: str) -> httpx.Response:
        with server.client() as client:
            if kind == "csv":
                return client.post(url, content=csv_body, headers={"content-type": "text/csv"})
            return client.post(url, json=big)

    bystander = threading.Thread(target=small_requests)
    bystander.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            started = time.monotonic()
            answers = list(pool.map(big_request, ["json", "csv", "json", "csv"]))
            finished = time.monotonic()
    finally:
        stop.set()
        bystander.join()
    for kind, answer in zip(["json", "csv", "json", "csv"], answers, strict=True):
        assert answer.status_code == 200, answer.text[:200]
        if kind == "json":
            body: Any = answer.json()
            assert len(body["predictions"]) == 5_000
        else:
            assert answer.text.count("\r\n") == 5_001  # the header and every row
    assert {status for _, status in small_answers} == {200}
    assert any(started < when < finished for when, _ in small_answers)


def _minor_faults(pid: int) -> int:
    """Pages the process has faulted in since it started (`minflt`, /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_worker_reuses_the_memory_of_its_last_big_request(
    server: Server, churn: Manifest
) -> None:
    """Once warm, a big request faults in next to no fresh pages (`model.keep_freed_memory`):
    with glibc's defaults each 10,000-record JSON request faulted in about 1,000 (4 MB).
    """
    assert server.process is not None
    body = {"records": [dict(churn.examples[0].record)] * 10_000}
    with server.client() as client:

        def post() -> None:
            answer = client.post("/v1/models/churn/predict", json=body)
            assert answer.status_code == 200, answer.text[:200]

        for _ in range(3):
            post()
        before = _minor_faults(server.process.pid)
        for _ in range(5):
            post()
        faults = (_minor_faults(server.process.pid) - before) / 5
    assert faults < 200, f"{faults:.0f} page faults per request"
