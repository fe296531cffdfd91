"""`python -m bench.profile`: py-spy's samples sorted into where the worker's time goes.

The sorting is checked on stacks written as py-spy writes them; one short real run checks that
the command attaches to a real worker under wrk's load and names the service's functions.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.profile import ProfileCase, py_spy_path
from bench.spy import INTERPRETER, OUR_CODE, OUTSIDE, read_raw

REPO = Path(__file__).resolve().parents[2]
THREAD = "_run_module_as_main (<frozen runpy>:198);main (service/__main__.py:41)"
WORKER = "Thread._bootstrap (threading.py:1002);WorkerThread.run (anyio/_backends/_asyncio.py:1124)"
BATCH = (
    f"{WORKER};answer (service/codecs/v1_json.py:48);"
    "RecordsDecoder.batch (service/codecs/v1_json.py:150)"
)
RAW = [
    # msgspec decoding, down in the C runtime: msgspec's time, where RecordsDecoder.batch asked
    f"{BATCH};JSONDecoder_decode (msgspec/_core.cpython-311-x86_64-linux-gnu.so);"
    "PyFloat_FromDouble (libpython3.11.so.1.0);0x7f00 (libc.so.6) 30",
    # the column reader that v1_json writes with exec
    f"{BATCH};read (<string>:2);read.<locals>.<listcomp> (<string>:2) 20",
    # the interpreter running one of our functions is our Python code
    f"{BATCH};_PyEval_EvalFrameDefault (libpython3.11.so.1.0) 10",
    # onnxruntime under LoadedModel.predict
    f"{WORKER};answer (service/codecs/v1_json.py:55);LoadedModel.predict (service/model.py:70);"
    "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:395);"
    "0x7f01 (onnxruntime/capi/onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so) 15",
    # the event loop in uvloop's C code, no function of ours below the entry point
    f"{THREAD};run_forever (loop.c:33192);uv_run (core.c:464);uv__io_poll (linux.c:1546) 5",
    # waiting for I/O, and a worker thread blocked on its queue: idle
    f"{THREAD};run_forever (loop.c:33192);uv__io_poll (linux.c:1452);epoll_pwait (libc.so.6) 40",
    f"{WORKER};Queue.get (queue.py:171);Condition.wait (threading.py:327);"
    "lock_PyThread_acquire_lock (libpython3.11.so.1.0);"
    "PyThread_acquire_lock_timed (libpython3.11.so.1.0);0x7f02 (libc.so.6) 50",
    # parked on the GIL's condition variable while running our code
    f"{BATCH};pthread_cond_timedwait (libc.so.6);0x7f03 (libc.so.6) 7",
    "",
    "not a stack line",
]


def test_samples_are_sorted_into_busy_waiting_and_idle() -> None:
    profile = read_raw(line + "\n" for line in RAW)
    assert (profile.busy_total, profile.gil_wait, profile.idle) == (80, 7, 90)
    assert profile.total == 177
    batch = "codecs/v1_json.py RecordsDecoder.batch"
    assert profile.busy == {
        (batch, "msgspec"): 30,
        (batch, "generated code"): 20,
        (batch, OUR_CODE): 10,
        ("model.py LoadedModel.predict", "onnxruntime"): 15,
        (OUTSIDE, "uvloop"): 5,
    }
    assert profile.by_where()[batch] == 60
    assert profile.by_package()["onnxruntime"] == 15
    assert INTERPRETER not in profile.by_package()


@pytest.mark.parametrize("text", ["v1-10:2", "json-1:16", "v1-1", "v1-1:x", "v2-10000:"])
def test_a_case_names_a_body_of_the_benchmark_and_connections(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="BODY:CONNECTIONS"):
        ProfileCase.parse(text)
    case = ProfileCase.parse("csv-10000:2")
    assert (case.body, case.connections, case.path) == ("csv-10000", 2, "/v1/models/churn/predict")
    assert ProfileCase.parse("v2-1:16").title == "V2, 1 record, 16 connections"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_a_short_real_run_names_where_the_service_spends_its_time() -> None:
    py_spy_path()  # a dev dependency: fails here, not in the subprocess, if it is missing
    argv = [sys.executable, "-m", "bench.profile", "--case", "v1-1:16", "--seconds", "2"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "#### v1 JSON, 1 record, 16 connections" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert any(row.startswith("| model.py LoadedModel.predict | onnxruntime |") for row in rows)
    assert "errors 0." in done.stdout
