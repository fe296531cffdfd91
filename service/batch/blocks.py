"""A CSV file as a stream of byte blocks that each end on a record boundary, and the hand-off of
blocks to the scoring worker processes and of scored bytes back, without the pool's pipes."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

BLOCK_BYTES = 1024 * 1024  # the best of the sizes tried (bench/RESULTS.md, batch scoring)
QUOTE = ord('"')
NEWLINE = ord("\n")


class UnterminatedQuote(Exception):
    """The file ends inside a quoted cell."""


def read_record(stream: BinaryIO, block_bytes: int = BLOCK_BYTES) -> tuple[bytes, bytes]:
    """The first record (the header) and the bytes already read after it."""
    buffer = b""
    while True:
        cut = last_boundary(buffer, first=True)
        if cut is not None:
            return buffer[: cut + 1], buffer[cut + 1 :]
        more = stream.read(block_bytes)
        if not more:
            if buffer.count(b'"') % 2:
                raise UnterminatedQuote("the header ends inside a quoted cell")
            return buffer, b""
        buffer += more


def blocks(stream: BinaryIO, start: bytes, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Blocks of about `block_bytes` holding whole records, `start` first; memory stays bounded."""
    buffer = start
    while True:
        more = stream.read(block_bytes)
        if not more:
            break
        buffer += more
        if len(buffer) < block_bytes:
            continue
        cut = last_boundary(buffer)
        if cut is not None:
            yield buffer[: cut + 1]
            buffer = buffer[cut + 1 :]
    if buffer.count(b'"') % 2:
        raise UnterminatedQuote("the file ends inside a quoted cell")
    # Only line ends (blank lines) are dropped: a last line of spaces is a row, reported as too
    # short whether a read happened to end just before it or not (and as the service reports it).
    if buffer.strip(b"\r\n"):
        yield buffer


def last_boundary(data: bytes, first: bool = False) -> int | None:
    """Index of the last (or first) newline outside quotes, or None when there is none."""
    if b'"' not in data:
        index = data.find(b"\n") if first else data.rfind(b"\n")
        return None if index < 0 else index
    raw = np.frombuffer(data, dtype=np.uint8)
    outside = np.cumsum(raw == QUOTE) % 2 == 0
    candidates = np.flatnonzero((raw == NEWLINE) & outside)
    if not len(candidates):
        return None
    return int(candidates[0] if first else candidates[-1])


class SourceChanged(Exception):
    """The block a worker reads does not start and end where the parent cut it: the file was
    shortened or edited in place during the run.
    """


@dataclass(frozen=True)
class Ticket:
    """One block's way to a worker: its place in the input file, its last byte as the parent
    read it, and its output slot.
    """

    slot: int
    offset: int
    length: int
    last: bytes


class Handoff:
    """The shared slots and the input descriptor of one run; made before the workers fork.

    Slot `i % slots` belongs to the i-th block. The caller keeps at most `slots` blocks in flight
    and writes a block's output before submitting the block that reuses its slot.
    """

    def __init__(self, source_fd: int, slots: int, slot_bytes: int) -> None:
        self.source_fd = source_fd
        self.slots = slots
        self.slot_bytes = slot_bytes
        # Anonymous and shared: pages are only touched as outputs are written, and forked
        # workers see the same memory. It is unmapped with the last view of it, not closed
        # by hand, as the caller may still hold the view of the last block written.
        self._memory = mmap.mmap(-1, slots * slot_bytes)

    def ticket(self, index: int, offset: int, block: bytes) -> Ticket:
        """The ticket for the `index`-th block, which the parent read at `offset` in the file."""
        return Ticket(index % self.slots, offset, len(block), block[-1:])

    def read(self, ticket: Ticket) -> bytes:
        """In a worker: the block's bytes, and the newline before them (every block starts
        after one: the header's or the previous block's last).

        The parent cut the block at record boundaries. Were the file edited in place since, a
        record could now straddle the cut and be scored shortened, and that with no error. With
        both edges checked, every record a worker scores is whole, as the file holds it when read.
        """
        data = os.pread(self.source_fd, ticket.length + 1, ticket.offset - 1)
        if len(data) != ticket.length + 1 or data[:1] != b"\n" or data[-1:] != ticket.last:
            raise SourceChanged("the file changed while it was being scored")
        return data[1:]

    def park(self, ticket: Ticket, output: bytes) -> bool:
        """In a worker: put the output in the ticket's slot; False when it does not fit."""
        if len(output) > self.slot_bytes:
            return False
        start = ticket.slot * self.slot_bytes
        self._memory[start : start + len(output)] = output
        return True

    def parked(self, ticket: Ticket, length: int) -> memoryview:
        """In the parent: the output a worker parked, valid until the slot's next block."""
        start = ticket.slot * self.slot_bytes
        return memoryview(self._memory)[start : start + length]
