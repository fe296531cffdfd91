"""How the encoders write probabilities: rounded to DECIMALS, as text (one orjson call for a
whole array, `repr` for the few values it writes differently) or as NUL-padded byte cells built
by numpy for thousands of rows at once (`probability_bytes`). Both give `repr`'s text (or
orjson's, for JSON), so every format writes the same digits
(tests/service/test_csv_blocks_writing.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import orjson

# The model computes in float32 (about 7 significant digits); more decimals would be noise.
DECIMALS = 7
FLAG_SEPARATOR = ";"
REPR_AGREES_FROM = 1e-4
SLICE_ROWS = 4096  # rows joined per numpy pass, so the temporaries stay in the CPU cache
POINT_DIGITS = np.uint64(0x30303030_3030302E)  # added to a word of digits: "." then "0"s
ZERO = ord("0")
FIRST_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(9)], dtype=np.uint64)  # [n]: n bytes
Bytes = npt.NDArray[np.uint8]
Sizes = npt.NDArray[np.int64]


def rounded(values: npt.NDArray[np.float32] | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Probabilities as written: float64, rounded to DECIMALS."""
    return values.astype(np.float64).round(DECIMALS)


def needs_repr(values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """The rounded values written in exponent notation (below 1e-4, zero excepted) or unexpected
    (NaN, negative, > 1): formatted one by one with `repr`, the rest in one whole-array call.
    """
    magnitude = np.abs(values)
    usual = ((magnitude >= REPR_AGREES_FROM) & (magnitude <= 1.0)) | (values == 0.0)
    odd: npt.NDArray[np.bool_] = ~usual | np.signbit(values)
    return odd


def probability_text(values: npt.NDArray[np.float64]) -> list[str]:
    """Rounded probabilities as `repr` writes them (the CSV cells), formatted by orjson in one call.

    orjson and `repr` agree on every 7-decimal value from 1e-4 to 1 (checked exhaustively, see
    tests/service/test_render_text.py); below that `repr` switches to exponent notation, so zero
    excepted, those few values (and anything unexpected: NaN, > 1) are formatted by `repr`.
    """
    if not len(values):
        return []
    values = np.ascontiguousarray(values, dtype=np.float64)
    encoded = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)
    tokens = encoded[1:-1].decode("ascii").split(",")
    for index in np.flatnonzero(needs_repr(values)).tolist():
        tokens[index] = repr(float(values[index]))
    return tokens


def probability_bytes(
    values: npt.NDArray[np.float64], prefix: bytes = b"", *, json: bool = False
) -> tuple[Bytes, Sizes]:
    """Rounded probabilities as `repr` writes them (`probability_text`) after `prefix`,
    one NUL-padded row each, and their sizes; with `json`, as orjson writes them.

    From 1e-4 to 1 that is the integer digit, "." and the 7 decimals without trailing zeros (one
    kept): a float with at most 15 significant digits prints as its shortest decimal. Zero
    excepted, values below (exponent notation) or anything unexpected (NaN, > 1) are written by
    `repr` (or orjson, whose exponents differ: 5e-5, not 5e-05), one by one.
    """
    odd = needs_repr(values)
    usual = np.where(odd, 0.0, values) if odd.any() else values
    scaled = np.rint(usual * 10**DECIMALS).astype(np.uint64)
    units = scaled >= 10**DECIMALS  # the integer digit: 1 for 1.0, else 0
    digits = _digit_word(scaled - units * np.uint64(10**DECIMALS))  # a 0, then the decimals
    kept = (_last_nonzero(digits) + 1).clip(2)  # the point and at least one decimal
    write = orjson.dumps if json else _repr_bytes
    texts = {i: prefix + write(float(values[i])) for i in np.flatnonzero(odd).tolist()}
    start = len(prefix)
    data = np.zeros((len(values), max([start + 9, *map(len, texts.values())])), dtype=np.uint8)
    data[:, :start] = np.frombuffer(prefix, dtype=np.uint8)
    data[:, start] = ZERO + units
    data[:, start + 1 : start + 9] = (
        ((digits + POINT_DIGITS) & FIRST_BYTES[kept]).view(np.uint8).reshape(-1, 8)
    )
    sizes = start + 1 + kept
    for i, text in texts.items():
        data[i] = 0
        data[i, : len(text)] = np.frombuffer(text, dtype=np.uint8)
        sizes[i] = len(text)
    return data, sizes


def _repr_bytes(value: float) -> bytes:
    return repr(value).encode()


def padded_rows(texts: list[bytes]) -> Bytes:
    """One NUL-padded row per text (a label's cell, say), so a row per record is one gather."""
    width = max(map(len, texts))
    return np.array([list(text.ljust(width, b"\0")) for text in texts], dtype=np.uint8)


def side_by_side(parts: list[Bytes]) -> Bytes:
    """The parts' rows side by side, as one matrix: each part is copied into its own columns
    (measured quicker than `np.concatenate` of fancy-indexed and broadcast parts).
    """
    widths = [part.shape[1] for part in parts]
    whole = np.empty((len(parts[0]), sum(widths)), dtype=np.uint8)
    at = 0
    for part, width in zip(parts, widths, strict=True):
        whole[:, at : at + width] = part
        at += width
    return whole


def _digit_word(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Integers below 10**8 as their 8 decimal digits, one a byte, the first digit in the lowest
    byte (little-endian order): each step splits every lane of the word into two halves at once
    (4+4 digits, then 2+2, then 1+1), each division by a constant done as a multiply and shift.
    """
    high = (values * np.uint64(109_951_163)) >> np.uint64(40)  # // 10**4
    word = high | ((values - high * np.uint64(10_000)) << np.uint64(32))
    high = ((word * np.uint64(10_486)) >> np.uint64(20)) & np.uint64(0x0000007F_0000007F)
    word = high | ((word - high * np.uint64(100)) << np.uint64(16))  # // 100 per 32-bit lane
    high = ((word * np.uint64(103)) >> np.uint64(10)) & np.uint64(0x000F000F_000F000F)
    word = high | ((word - high * np.uint64(10)) << np.uint64(8))  # // 10 per 16-bit lane
    digits: npt.NDArray[np.uint64] = word.astype("<u8", copy=False)
    return digits


def _last_nonzero(digits: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """The index of each word's highest nonzero byte (negative for 0), from the exponent of its
    float value: digits are below 16, so rounding to a float never reaches the next byte.
    """
    exponents = (digits.astype(np.float64).view(np.int64) >> 52) - 1023
    return exponents >> 3


MINUS = ord("-")


def contribution_bytes(values: npt.NDArray[np.float64], prefix: bytes = b"") -> tuple[Bytes, Sizes]:
    """Contributions (differences of probabilities, in [-1, 1]) rounded to DECIMALS, as fixed
    point text after `prefix`, one NUL-padded row each, and their sizes: `0.0123`, `-0.5`, `0.0`
    (never an exponent, never `-0.0`). A NUL stands where a positive value has no sign; every
    writer drops NULs (`contribution_text`, the CSV block writer).
    """
    values = np.nan_to_num(np.clip(rounded(values), -1.0, 1.0)) + 0.0  # + 0.0: no -0.0
    negative = values < 0
    scaled = np.rint(np.abs(values) * 10**DECIMALS).astype(np.uint64)
    units = scaled >= 10**DECIMALS
    digits = _digit_word(scaled - units * np.uint64(10**DECIMALS))
    kept = (_last_nonzero(digits) + 1).clip(2)
    start = len(prefix)
    data = np.zeros((len(values), start + 10), dtype=np.uint8)
    data[:, :start] = np.frombuffer(prefix, dtype=np.uint8)
    data[:, start] = negative * MINUS
    data[:, start + 1] = ZERO + units
    data[:, start + 2 : start + 10] = (
        ((digits + POINT_DIGITS) & FIRST_BYTES[kept]).view(np.uint8).reshape(-1, 8)
    )
    return data, start + negative + 1 + kept


def contribution_text(values: npt.NDArray[np.float64]) -> list[str]:
    """Contributions as `contribution_bytes` writes them, as text (the CSV cells)."""
    data, _ = contribution_bytes(np.ascontiguousarray(values, dtype=np.float64))
    return [row.tobytes().replace(b"\0", b"").decode("ascii") for row in data]
