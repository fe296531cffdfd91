"""py-spy's raw samples of one server worker, sorted into where its CPU time goes.

`py-spy record --native --format raw` writes one line per distinct stack: the frames from the
thread's entry down to what was running, `;`-separated, then how many samples had that stack.
Python frames read `function (path/to/file.py:line)`, native ones `symbol (file.c:line)` or
`0x7f... (libc.so.6)`.

A sample is one of three kinds:
- idle: the thread waits for I/O (`epoll_wait`) or blocks on a Python lock (a worker thread
  waiting for work);
- waiting for the GIL: a thread parked in `pthread_cond_wait` (under it only unnamed libc
  addresses) that no Python lock put there: on CPython 3.11 that is the GIL's condition
  variable (`take_gil` is inlined, so it has no frame of its own);
- busy: the rest, each given to the innermost function of ours on the stack (`where`) and the
  package running at that moment (`running`): `msgspec`, `onnxruntime`, the generated column
  reader, the interpreter itself, uvloop, ...

Only the busy samples are CPU time; the split is what the benchmark's figures cannot show.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

OURS = "service/"
ENTRY = "service/__main__.py"
OUTSIDE = "(none: the server and its event loop)"
# A frame that only waits: for I/O, or on a Python lock (not the GIL, which has no such frame).
IDLE_SYMBOLS = ("epoll_wait", "epoll_pwait", "PyThread_acquire_lock_timed")
GIL_WAIT_SYMBOLS = ("pthread_cond_wait", "pthread_cond_timedwait")
# Native frames are named by their C source file; these files belong to the server's stack.
C_SOURCES = {
    "uvloop": ("loop.c", "core.c", "linux.c", "stream.c", "timer.c", "loop-watcher.c", "tcp.c"),
    "httptools": ("parser.c", "llhttp.c", "api.c", "http.c"),
}
PACKAGE_OF_SOURCE = {source: package for package, files in C_SOURCES.items() for source in files}
# Code that runs on behalf of whatever called it: a sample there goes to the caller's package.
CARRIERS = ("libc", "native")
INTERPRETER = "the interpreter"
OUR_CODE = "our Python code"
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass(frozen=True)
class Frame:
    function: str
    file: str

    @property
    def ours(self) -> bool:
        return self.file.startswith(OURS)

    @property
    def package(self) -> str:
        """The package (or library) this frame's code belongs to."""
        name = self.file
        if name.startswith(OURS):
            return "service"
        if name == "<string>":
            return "generated code"  # service.codecs.v1_json's column reader, written with exec
        if "/" in name:
            return name.split("/", 1)[0]
        if name.startswith("libpython"):
            return INTERPRETER
        if name.startswith("libc.") or name.startswith("libpthread"):
            return "libc"
        if name in PACKAGE_OF_SOURCE:
            return PACKAGE_OF_SOURCE[name]
        if name.endswith(".py"):
            return name.removesuffix(".py")  # a standard-library module: threading, queue, ...
        return "native"

    @property
    def label(self) -> str:
        """`api/v1.py _predict_json` for ours: where in the service, without the line."""
        return f"{self.file.removeprefix(OURS)} {self.function}"


def parse_frame(text: str) -> Frame:
    match = FRAME.match(text.strip())
    if match is None:
        return Frame(text.strip(), "native")
    return Frame(match["function"], match["file"])


@dataclass
class Profile:
    """Sample counts of one run: busy ones by (where, running), and the idle and waiting ones."""

    busy: Counter[tuple[str, str]] = field(default_factory=Counter)
    gil_wait: int = 0
    idle: int = 0

    @property
    def busy_total(self) -> int:
        return sum(self.busy.values())

    @property
    def total(self) -> int:
        return self.busy_total + self.gil_wait + self.idle

    def by_where(self) -> Counter[str]:
        return self._summed(0)

    def by_package(self) -> Counter[str]:
        return self._summed(1)

    def _summed(self, part: int) -> Counter[str]:
        """Busy counts summed over one part of the (where, running) key."""
        totals: Counter[str] = Counter()
        for key, count in self.busy.items():
            totals[key[part]] += count
        return totals


def read_raw(lines: Iterable[str]) -> Profile:
    """A profile from py-spy's raw format (blank or malformed lines are skipped)."""
    profile = Profile()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        add(profile, [parse_frame(text) for text in stack.split(";")], int(count))
    return profile


def add(profile: Profile, frames: list[Frame], count: int) -> None:
    """Count one stack (outermost frame first) `count` times."""
    if any(frame.function.startswith(IDLE_SYMBOLS) for frame in frames):
        profile.idle += count
        return
    named = [frame for frame in frames if not frame.function.startswith("0x")]
    if named and named[-1].function.startswith(GIL_WAIT_SYMBOLS):
        profile.gil_wait += count
        return
    profile.busy[(where(frames), running(frames))] += count


def where(frames: list[Frame]) -> str:
    """The innermost frame of ours, past `service/__main__.py` (which only starts the server)."""
    for frame in reversed(frames):
        if frame.ours and frame.file != ENTRY:
            return frame.label
    return OUTSIDE


def running(frames: list[Frame]) -> str:
    """The package of the innermost frame that is not C runtime or interpreter machinery.

    So a float that msgspec builds is msgspec's time, and the interpreter running one of our
    functions (or a builtin it calls, like `list`) is "our Python code".
    """
    for frame in reversed(frames):
        package = frame.package
        if package not in (*CARRIERS, INTERPRETER):
            return OUR_CODE if package == "service" else package
    return INTERPRETER
