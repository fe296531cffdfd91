"""Blocks into batch-scoring workers and scored bytes out of them, without the pool's pipes.

Through a process pool a block is pickled, pushed through a pipe 64 KiB at a time and unpickled,
and its scored form (which holds every input line again) makes the same trip back: for 1,000,000
churn rows that was 180 MB through pipes and a sixth of all CPU samples of the score command.
Here only small tickets travel: a worker reads its block from the input file itself (`os.pread`
on the descriptor it inherited by fork), and writes what it scored into a slot of an anonymous
shared mapping, which the parent writes straight to the output. A scored block too big for its
slot goes back through the pipe as before. (Workers only ever score regular files: the command
scores a pipe, whose size it cannot know, in its own process.)
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass


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
