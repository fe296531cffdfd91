"""Big requests run off the event loop, one at a time per worker process.

Parsing, checking, running and encoding a 10,000-record batch is pure CPU work that holds the
GIL, so two of them in two threads take no less time than one after the other; they only
double the objects alive at once (the peak memory of a worker) and delay each other's answer.
So a big body waits its turn for a single lane, in a worker thread; the event loop meanwhile
keeps answering small requests, which never take the lane.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
from starlette.concurrency import run_in_threadpool

# Below this body size the work takes less time than the thread hop, so it runs on the loop
# (about 500 JSON records or 2,000 CSV rows of the committed models).
INLINE_BYTES = 96 * 1024

P = ParamSpec("P")
T = TypeVar("T")


class Lane:
    """One big request at a time, in a worker thread."""

    def __init__(self) -> None:
        self._lock = anyio.Lock()

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._lock:
            return await run_in_threadpool(work, *args, **kwargs)

    async def run_sized(
        self, size: int, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`work` inline when the body is small, else in the lane."""
        if size <= INLINE_BYTES:
            return work(*args, **kwargs)
        return await self.run(work, *args, **kwargs)
