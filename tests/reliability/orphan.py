"""A worker orphaned before it asks to die with its parent (the race `die_with_parent` closes).

`start` runs in an intermediate process: it starts the worker and leaves at once. The worker
waits until it is orphaned, then calls `die_with_parent` and prints what it did next.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from service.server import die_with_parent

EXITED = "exited"
KEPT_GOING = "kept going"


def start() -> None:
    worker = multiprocessing.get_context("spawn").Process(target=_orphaned_worker)
    worker.start()
    os._exit(0)  # without joining the worker, as a supervisor killed by SIGKILL would


def _orphaned_worker() -> None:
    parent = multiprocessing.parent_process()
    assert parent is not None
    while os.getppid() == parent.pid:
        time.sleep(0.01)
    try:
        die_with_parent()
    except SystemExit:
        print(EXITED, flush=True)  # noqa: T201  # the test reads the worker's stdout
        raise
    print(KEPT_GOING, flush=True)  # noqa: T201
