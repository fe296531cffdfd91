"""`service.codecs.csv_blocks`, the byte-level reader for plain CSV, against the csv module path.

Where the fast path reads a block it must give exactly the general path's batch (same floats to
the bit, same categories, same flags); where it cannot, it must say so (None) rather than guess.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.codecs import csv_blocks
from service.codecs.csv import Layout, batch_from_block, batch_from_rows, layout
from service.manifest import read_pointer
from service.model import LoadedModel, load_model
from service.validation import Batch, Validator

MODELS = Path(__file__).resolve().parents[2] / "models"

digits = st.text("0123456789", min_size=1, max_size=9)  # one word up to 8, two past it
# Every form of number the fast path claims to read, and some it must refuse.
decimal = st.one_of(
    st.builds(lambda sign, whole: sign + whole, st.sampled_from(["", "-"]), digits),
    st.builds(
        lambda sign, whole, part: f"{sign}{whole}.{part}",
        st.sampled_from(["", "-"]),
        st.text("0123456789", max_size=7),
        st.text("0123456789", max_size=7),
    ),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: f"{v:.{abs(hash(v)) % 9}f}"),
)
odd = st.sampled_from(
    ["", "-", ".", "-.", "+1", "1e5", " 1", "1 ", "1.2.3", "--1", "1-", "0x1", "nan", "inf",
     "1_0", "\uff11", "1234567890123456", "\u0663"]
)  # fmt: skip


def batch_from_cells(validator: Validator, table: Layout, block: bytes) -> Batch | None:
    """The bytes path as the CSV endpoint and the score command take it: split, then read."""
    split = csv_blocks.split(block, len(table.header))
    return None if split is None else batch_from_block(validator, table, split)


def block_of(column: list[str]) -> csv_blocks.Block | None:
    return csv_blocks.split(("".join(f"{cell},x\n" for cell in column)).encode("utf-8"), 2)


@settings(max_examples=300, deadline=None)
@given(st.lists(decimal, min_size=1, max_size=40))
def test_decimals_are_read_to_the_bit_as_the_text_path_reads_them(column: list[str]) -> None:
    block = block_of(column)
    assert block is not None
    values = csv_blocks.numbers(block, [0], [])
    short = all(len(cell) <= csv_blocks.MAX_NUMBER_BYTES for cell in column)
    has_digit = all(any(c.isdigit() for c in cell) for cell in column)
    if not (short and has_digit):
        assert values is None
        return
    assert values is not None
    expected = np.asarray(column, dtype=np.float64)
    assert values[0].tobytes() == expected.tobytes()  # bit for bit, so -0.0 stays -0.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(decimal, odd), min_size=1, max_size=20))
def test_any_cell_it_reads_it_reads_as_the_text_path_does(column: list[str]) -> None:
    block = block_of(column)
    values = None if block is None else csv_blocks.numbers(block, [0], [])
    if values is None:
        return  # the general path then reads or refuses the block
    assert values[0].tobytes() == np.asarray(column, dtype=np.float64).tobytes()


@pytest.mark.parametrize("cell", ["", "-", ".", "-.", "+1", "1e5", " 1", "1 ", "1.2.3", "1-",
                                  "--1", "nan", "inf", "1_0", "1234567890123456", "12345678-",
                                  "00000000-0", "1234567-8", "-1234567-", "1.5-"])  # fmt: skip
def test_what_it_cannot_read_exactly_is_left_to_the_text_path(cell: str) -> None:
    block = block_of(["1", cell, "2"])
    assert block is None or csv_blocks.numbers(block, [0], []) is None


@pytest.mark.parametrize(
    ("cell", "read"),
    [("0", True), ("1", True), ("2", False), ("9", False), ("1.0", False), ("-0", False),
     ("01", False), ("true", False)],
)  # fmt: skip
def test_flag_columns_take_only_0_or_1(cell: str, read: bool) -> None:
    """Cells "1.0" and "true" are the text path's to read; "-0" and "01" are not 0/1 there."""
    block = block_of(["0", cell])
    assert block is not None
    assert (csv_blocks.numbers(block, [0], [0]) is not None) is read


@pytest.mark.parametrize(
    "block",
    [
        b'1,"x"\n',
        b"1,x\x00\n",
        b"1,x\r2,y\n",
        b"1,x\r",
        b"1,x\n\n2,y\n",
        b"\n1,x\n",
        b"1,x,3\n",
        b"1\n",
        b"",
    ],
)
def test_blocks_that_are_not_plain_are_refused(block: bytes) -> None:
    assert csv_blocks.split(block, 2) is None


def test_crlf_and_a_missing_last_line_end_are_plain() -> None:
    block = csv_blocks.split(b"1,a\r\n22,bb\r\n333,c", 2)
    assert block is not None
    assert block.rows == 3
    values = csv_blocks.numbers(block, [0], [])
    assert values is not None
    assert values.tolist() == [[1.0, 22.0, 333.0]]


def test_categories_match_exactly_or_not_at_all() -> None:
    allowed = ["France", "Spain", "España"]
    block = csv_blocks.split("France,1\nEspaña,2\nSpain,3\n".encode(), 2)
    assert block is not None
    index = csv_blocks.categories(block, 0, allowed)
    assert index is not None
    assert index.tolist() == [0, 2, 1]
    for odd_cell in (" Spain", "Spai", "Spain ", "spain", "Germany", "a" * 17, ""):
        block = csv_blocks.split(f"France,1\n{odd_cell},2\n".encode(), 2)
        assert block is not None
        assert csv_blocks.categories(block, 0, allowed) is None
    # A category the text path could never match (it strips cells) is not matched here either.
    block = csv_blocks.split(b" Spain,1\n", 2)
    assert block is not None
    assert csv_blocks.categories(block, 0, [" Spain", "France"]) is None


@pytest.fixture(scope="module")
def churn() -> LoadedModel:
    return load_model(MODELS / "churn" / read_pointer(MODELS / "churn"), 1)


def test_a_clean_block_gives_the_text_paths_batch(churn: LoadedModel) -> None:
    """The committed example records as CSV: the fast path takes them, with the same batch."""
    features = churn.manifest.features
    header = ["Surname", *(f.name for f in features)]
    rows = [
        ["Smith", *(_cell(example.record[f.name]) for f in features)]
        for example in churn.manifest.examples
    ] * 50
    text = "".join(",".join(row) + "\n" for row in rows)
    table = layout(churn.manifest, header)
    fast = batch_from_cells(churn.validator, table, text.encode())
    assert fast is not None
    slow = batch_from_rows(churn.validator, table, [line.split(",") for line in text.split()], 0)
    assert fast.size == slow.size == len(rows)
    for name, array in slow.inputs.items():
        assert fast.inputs[name].dtype == array.dtype
        np.testing.assert_array_equal(fast.inputs[name], array)
    assert fast.flags() == slow.flags()


def test_a_block_with_a_bad_value_is_left_to_the_text_path(churn: LoadedModel) -> None:
    features = churn.manifest.features
    header = [f.name for f in features]
    record = churn.manifest.examples[0].record
    good = ",".join(_cell(record[f.name]) for f in features)
    age = header.index("age")
    bad = good.split(",")
    bad[age] = "-3"
    table = layout(churn.manifest, header)
    block = f"{good}\n{','.join(bad)}\n".encode()
    assert batch_from_cells(churn.validator, table, block) is None


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def test_crlf_on_every_line_keeps_its_crs_out_of_the_last_cells() -> None:
    block = csv_blocks.split(b"1,Spain\r\n22,France\r\n333,Spain\r\n", 2)
    assert block is not None
    assert block.crlf
    assert block.rows == 3
    assert csv_blocks.categories(block, 1, ["France", "Spain"]) is not None
    block = csv_blocks.split(b"a,1\r\nb,22\r\n", 2)
    assert block is not None
    values = csv_blocks.numbers(block, [1], [])
    assert values is not None
    assert values.tolist() == [[1.0, 22.0]]


@pytest.mark.parametrize("block", [b"1,a\r\n\r\n2,b\r\n", b"\r\n1,a\r\n", b"1,a\r\n2\r\n"])
def test_blank_or_short_crlf_lines_are_refused(block: bytes) -> None:
    assert csv_blocks.split(block, 2) is None
