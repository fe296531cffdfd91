"""Soak: at least 200,000 requests against one worker; RSS after warm-up grows by under 20 MiB.

Slow (about a minute or two), so it is marked `soak` and deselected by default:

    .venv/bin/python -m pytest tests/reliability/test_soak.py -m soak -q

wrk (loopback only, bounded rounds) drives a mix of v1 JSON (1 and 10 records), CSV, V2 infer,
model metadata and a refused record (422), so the error path is soaked too. Any status other than
200 or 422, or any socket error, fails the run. Set RELIABILITY_FIGURES_DIR to keep the figures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from service.manifest import Manifest
from tests.reliability.conftest import StartServer
from tests.reliability.helpers import rss_mib

pytestmark = pytest.mark.soak

REQUESTS = 200_000
WARM_UP_SECONDS = 10
ROUND_SECONDS = 15
MAX_ROUNDS = 40  # bounded even on a slow machine: at most ten minutes of load
GROWTH_BUDGET_MIB = 20.0
WRK = shutil.which("wrk")
SCRIPT = """
local requests = {%s}
local counter = 0
unexpected = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local r = requests[(counter %% #requests) + 1]
  return wrk.format(r[1], r[2], {["Content-Type"] = r[3]}, r[4])
end

function response(status, headers, body)
  if status ~= 200 and status ~= 422 then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("unexpected")
  end
  io.write(string.format("UNEXPECTED %%d\\n", total))
end
"""


def test_rss_stays_flat_over_200000_requests(
    registry_dir: Path, churn: Manifest, tmp_path: Path, start_server: StartServer
) -> None:
    if WRK is None:
        pytest.skip("needs wrk (apt-get install wrk)")
    server = start_server(
        registry_dir, PREDICT_POLL_INTERVAL_SECONDS="0", PREDICT_LOG_LEVEL="WARNING"
    )
    assert server.process is not None
    script = tmp_path / "mix.lua"
    script.write_text(SCRIPT % _lua_requests(churn), encoding="utf-8")
    warm_up = _wrk(server.url, script, WARM_UP_SECONDS)
    warm_rss = rss_mib(server.process.pid)
    total, seconds, samples = 0, 0.0, [warm_rss]
    started = time.monotonic()
    for _ in range(MAX_ROUNDS):
        count, duration = _wrk(server.url, script, ROUND_SECONDS)
        total, seconds = total + count, seconds + duration
        samples.append(rss_mib(server.process.pid))
        if total >= REQUESTS and len(samples) >= 4:
            break
    figures = {
        "requests": total,
        "warm_up_requests": warm_up[0],
        "seconds": round(seconds, 1),
        "wall_seconds": round(time.monotonic() - started, 1),
        "requests_per_second": round(total / seconds),
        "rss_warm_mib": round(warm_rss, 1),
        "rss_end_mib": round(samples[-1], 1),
        "rss_max_mib": round(max(samples), 1),
        "rss_samples_mib": [round(s, 1) for s in samples],
    }
    _keep(figures)
    assert total >= REQUESTS, figures
    assert samples[-1] - warm_rss < GROWTH_BUDGET_MIB, figures


def _lua_requests(manifest: Manifest) -> str:
    record = manifest.examples[0].record
    bad = {**record, "age": 7}
    csv = ",".join(record) + "\n" + ",".join(str(v).lower() for v in record.values()) + "\n"
    inputs = [
        {
            "name": f.name,
            "shape": [1],
            "datatype": {"category": "BYTES", "bool": "BOOL"}.get(f.type, "FP32"),
            "data": [record[f.name]],
        }
        for f in manifest.features
    ]
    predict = "/v1/models/churn/predict"
    mix: list[tuple[str, str, str, Any]] = [
        ("POST", predict, "application/json", {"records": [record]}),
        ("POST", predict, "application/json", {"records": [record] * 10}),
        ("POST", predict, "text/csv", csv),
        ("POST", "/v2/models/churn/infer", "application/json", {"inputs": inputs}),
        ("GET", "/v1/models/churn", "application/json", ""),
        ("POST", predict, "application/json", {"records": [bad]}),
    ]
    entries = []
    for method, path, content_type, body in mix:
        text = body if isinstance(body, str) else json.dumps(body)
        entries.append(f'{{"{method}", "{path}", "{content_type}", [==[{text}]==]}}')
    return ", ".join(entries)


def _wrk(url: str, script: Path, seconds: int) -> tuple[int, float]:
    """One bounded wrk run on loopback: (requests, seconds); fails on any unexpected answer."""
    assert WRK is not None
    command = [WRK, "-t2", "-c16", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    out = result.stdout
    assert "Socket errors" not in out, out
    assert "UNEXPECTED 0" in out, out
    match = re.search(r"(\d+) requests in ([\d.]+)s", out)
    assert match is not None, out
    return int(match.group(1)), float(match.group(2))


def _keep(figures: dict[str, Any]) -> None:
    folder = os.environ.get("RELIABILITY_FIGURES_DIR")
    if folder:
        path = Path(folder) / "soak.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
