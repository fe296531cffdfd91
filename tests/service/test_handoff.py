"""The shared slots and offset reads between the score command and its workers."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from service.handoff import Handoff, SourceChanged


def test_a_worker_reads_its_block_at_its_offset_and_parks_its_output(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(b"header\nfirst\nsecond\n")
    with source.open("rb") as handle:
        handoff = Handoff(handle.fileno(), slots=3, slot_bytes=16)
        tickets = [handoff.ticket(i, 7 + 6 * i, 6) for i in range(4)]

        assert [handoff.read(t) for t in tickets[:2]] == [b"first\n", b"second"]
        assert [t.slot for t in tickets] == [0, 1, 2, 0]
        assert handoff.park(tickets[0], b"scored first")
        assert handoff.park(tickets[1], b"scored second")
        assert bytes(handoff.parked(tickets[0], 12)) == b"scored first"
        assert bytes(handoff.parked(tickets[1], 13)) == b"scored second"


def test_output_bigger_than_a_slot_is_not_parked(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(b"x")
    with source.open("rb") as handle:
        handoff = Handoff(handle.fileno(), slots=2, slot_bytes=8)
        first, second = handoff.ticket(0, 0, 1), handoff.ticket(1, 0, 1)
        assert handoff.park(second, b"12345678")

        assert not handoff.park(first, b"123456789")
        assert bytes(handoff.parked(second, 8)) == b"12345678"  # the neighbour is untouched


def test_a_file_cut_short_during_the_run_is_an_error_not_a_short_block(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(b"header\n" + b"row\n" * 100)
    with source.open("rb") as handle:
        handoff = Handoff(handle.fileno(), slots=1, slot_bytes=64)
        ticket = handoff.ticket(0, 7, 400)
        os.truncate(source, 200)

        with pytest.raises(SourceChanged, match="changed while it was being scored"):
            handoff.read(ticket)


def test_forked_workers_share_the_slots(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(b"abcdef")
    with source.open("rb") as handle:
        handoff = Handoff(handle.fileno(), slots=2, slot_bytes=16)
        ticket = handoff.ticket(1, 2, 3)
        child = os.fork()
        if child == 0:  # the worker's side: read at the offset, park an answer, leave at once
            os._exit(0 if handoff.park(ticket, handoff.read(ticket).upper()) else 1)
        _, status = os.waitpid(child, 0)

        assert os.waitstatus_to_exitcode(status) == 0
        assert bytes(handoff.parked(ticket, 3)) == b"CDE"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_is_kept_under_glibc() -> None:
    """In a fresh process: the thresholds then stay in place for this test process's heap."""
    code = "from service.heap import keep_freed_memory; print(keep_freed_memory())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"
