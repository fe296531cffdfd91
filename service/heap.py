"""Keep freed memory for reuse, where glibc allows it: in the score command and in service workers.

Scoring a block allocates a few dozen arrays of about a megabyte and frees them all. By default
glibc serves such sizes from fresh `mmap` regions and returns them on free (or trims the heap),
so every block faults in pages the process held a moment before: for 1,000,000 churn rows that
was about 100,000 minor page faults and 0.2-0.3 s of system time. With a high mmap threshold
and trim threshold the freed memory stays in the heap and the next block reuses it. A batch job
holds a few blocks at a time, so what is kept is bounded by the block size, not the file.

A service worker does the same per big request: 10,000-record JSON requests sent one after
another faulted in about 1,000 fresh pages (4 MB) each, 4-5 ms of system time of 47 ms of CPU
(with requests overlapping, the heap rarely shrinks and the gain is small). Big requests take
the app's lane one at a time (`service.api.lane`), so what is kept is about one request's
working memory; the worker keeps less than the score command (`SERVICE_TRIM_THRESHOLD`), so a
rare huge body does not leave hundreds of megabytes behind.
"""

from __future__ import annotations

import ctypes

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems
TRIM_THRESHOLD = 256 * 1024 * 1024
SERVICE_TRIM_THRESHOLD = 64 * 1024 * 1024


def keep_freed_memory(trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Raise glibc's mmap and trim thresholds for this process and those it forks later.

    False, changing nothing, where the C library has no `mallopt` (musl, macOS).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no CDLL(None)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = [
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX),
        mallopt(M_TRIM_THRESHOLD, trim_threshold),
    ]
    return all(done)
