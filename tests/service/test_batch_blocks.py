"""The shared slots and offset reads between the score command and its workers."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from service.batch.blocks import Handoff, SourceChanged

TEXT = b"header\nfirst\nsecond\n"


def blocks_of(handoff: Handoff) -> list[bytes]:
    return [handoff.read(handoff.ticket(i, 7 + 6 * i, part)) for i, part in enumerate(PARTS)]


PARTS = [b"first\n", b"second\n"]


def test_a_worker_reads_its_block_at_its_offset_and_parks_its_output(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(TEXT)
    with source.open("rb") as handle:
        handoff = Handoff(handle.fileno(), slots=3, slot_bytes=16)
        tickets = [handoff.ticket(i, 7, b"first\n") for i in range(4)]

        assert blocks_of(handoff) == PARTS
        assert [t.slot for t in tickets] == [0, 1, 2, 0]
        assert handoff.park(tickets[0], b"scored first")
        assert handoff.park(tickets[1], b"scored second")
        assert bytes(handoff.parked(tickets[0], 12)) == b"scored first"
        assert bytes(handoff.parked(tickets[1], 13)) == b"scored second"


def test_output_bigger_than_a_slot_is_not_parked(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(TEXT)
    with source.open("rb") as handle:
        handoff = Handoff(handle.fileno(), slots=2, slot_bytes=8)
        first, second = handoff.ticket(0, 7, b"first\n"), handoff.ticket(1, 13, b"second\n")
        assert handoff.park(second, b"12345678")

        assert not handoff.park(first, b"123456789")
        assert bytes(handoff.parked(second, 8)) == b"12345678"  # the neighbour is untouched


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda path: os.truncate(path, 16), "shorter: the second block is cut"),
        (lambda path: path.write_bytes(b"header\nfirs\ntsecond\n"), "a newline moved into it"),
        (lambda path: path.write_bytes(b"header\nfirst\nseco\nd"), "a record straddles its end"),
        (lambda path: path.write_bytes(b"header,first\nsecond\n"), "the newline before it moved"),
    ],
)
def test_a_file_edited_during_the_run_is_an_error_not_a_cut_record(
    tmp_path: Path, edit: object, why: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(TEXT)
    with source.open("rb") as handle:
        handoff = Handoff(handle.fileno(), slots=2, slot_bytes=64)
        tickets = [handoff.ticket(i, 7 + 6 * i, part) for i, part in enumerate(PARTS)]
        assert callable(edit)
        edit(source)

        with pytest.raises(SourceChanged, match="changed while it was being scored"):
            for ticket in tickets:
                handoff.read(ticket)


def test_an_edit_that_keeps_every_record_whole_is_read_as_it_now_is(tmp_path: Path) -> None:
    """As an edit made before the run would be: the check is about cut records, not content."""
    source = tmp_path / "in.csv"
    source.write_bytes(TEXT)
    with source.open("rb") as handle:
        handoff = Handoff(handle.fileno(), slots=2, slot_bytes=64)
        source.write_bytes(b"header\nfirsT\nSECOND\n")

        assert blocks_of(handoff) == [b"firsT\n", b"SECOND\n"]


def test_forked_workers_share_the_slots(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(TEXT)
    with source.open("rb") as handle:
        handoff = Handoff(handle.fileno(), slots=2, slot_bytes=16)
        ticket = handoff.ticket(1, 13, b"second\n")
        child = os.fork()
        if child == 0:  # the worker's side: read at the offset, park an answer, leave at once
            os._exit(0 if handoff.park(ticket, handoff.read(ticket).upper()) else 1)
        _, status = os.waitpid(child, 0)

        assert os.waitstatus_to_exitcode(status) == 0
        assert bytes(handoff.parked(ticket, 7)) == b"SECOND\n"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_memory_is_kept_under_glibc() -> None:
    """Both thresholds are accepted; run in a child so it does not depend on this process."""
    code = "from service.model import keep_freed_memory; print(keep_freed_memory())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"
