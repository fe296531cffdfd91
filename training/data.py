"""Turn a CSV (or a generated frame) into checked feature columns and class indices, then split it.

Every value is read as text and converted here, so a bad cell is reported with its column and CSV
line instead of surfacing later as a NaN inside the model. A cell the spec's `na_values` calls
missing (or a blank one) is allowed in a nullable feature only: it becomes NaN for a number and
MISSING_CATEGORY for a category, as the service feeds it to the graph, which imputes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.model_selection import train_test_split

from service.manifest import MISSING_CATEGORY, header_keys
from training.spec import FeatureSpec, SplitSpec, TaskSpec

TRUE_WORDS = frozenset({"1", "1.0", "true", "yes", "y", "t"})
FALSE_WORDS = frozenset({"0", "0.0", "false", "no", "n", "f"})
FIRST_DATA_LINE = 2  # line 1 of a CSV is its header


class DataError(ValueError):
    """The data cannot be trained on; the message names the file, column and line."""


@dataclass(frozen=True)
class Dataset:
    """Checked features (spec columns, spec order), class indices, and the truth where known;
    `headers` maps each spec name (features and target) to the column it was read from."""

    X: pd.DataFrame
    y: npt.NDArray[np.int64]
    probability: npt.NDArray[np.float64] | None
    source: str
    sha256: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: npt.NDArray[np.int64]) -> Dataset:
        """The rows at `index`, keeping source and fingerprint."""
        prob = None if self.probability is None else self.probability[index]
        X = self.X.iloc[index].reset_index(drop=True)
        return Dataset(X, self.y[index], prob, self.source, self.sha256, self.headers)


@dataclass(frozen=True)
class Splits:
    train: Dataset
    validation: Dataset
    test: Dataset


def read_csv(spec: TaskSpec, path: Path) -> Dataset:
    """Load a user's CSV: headers matched through the spec's aliases, other columns dropped."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
    if not raw.strip():
        raise DataError(f"{path}: the file is empty")
    options = {"dtype": str, "keep_default_na": False, "skipinitialspace": True}
    try:
        frame = pd.read_csv(path, encoding="utf-8", **options)
        header = pd.read_csv(path, encoding="utf-8", header=None, nrows=1, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from exc
    names = [str(name) for name in header.iloc[0]]
    if len(set(names)) < len(names) == len(frame.columns):
        # pandas renames a repeated header (`Age`, `Age.1`); keep both as written, so that two
        # columns meaning one feature are refused rather than the second silently dropped.
        frame.columns = pd.Index(names)
    return from_frame(spec, frame, source=f"csv:{path.name}", where=str(path), sha256=_sha(raw))


def from_frame(
    spec: TaskSpec,
    frame: pd.DataFrame,
    *,
    source: str,
    where: str,
    sha256: str | None = None,
    probability: npt.NDArray[np.float64] | None = None,
) -> Dataset:
    """Check a raw frame (any headers the spec knows) and convert it into a Dataset."""
    if frame.empty:
        raise DataError(f"{where}: no data rows")
    columns = _match_columns(spec, frame, where)
    X = pd.DataFrame(
        {
            f.name: _convert(f, frame[columns[f.name]], where, columns[f.name], spec.na_values)
            for f in spec.features
        }
    )
    y = _labels(spec, frame[columns[spec.target.name]], where, columns[spec.target.name])
    if len(np.unique(y)) < 2:
        only = spec.target.labels[int(y[0])]
        raise DataError(
            f"{where}: column {columns[spec.target.name]!r} has a single class "
            f"({only!r}); training needs at least two"
        )
    if sha256 is None:
        sha256 = _sha(frame.to_csv(index=False).encode())
    return Dataset(X, y, probability, source, sha256, columns)


def missing_mask(spec: TaskSpec, X: pd.DataFrame) -> pd.DataFrame:
    """True where a feature value is missing: NaN for a number, MISSING_CATEGORY for a category."""
    return pd.DataFrame(
        {
            f.name: X[f.name] == MISSING_CATEGORY if f.type == "category" else X[f.name].isna()
            for f in spec.features
        }
    )


def split(data: Dataset, plan: SplitSpec, seed: int) -> Splits:
    """Stratified train / validation / test split, reproducible from the seed."""
    index = np.arange(len(data))
    test_size: int | float = plan.test_fraction
    if plan.test_rows is not None:
        test_size = min(plan.test_rows, len(data) // 2)
    try:
        learn, test = train_test_split(
            index, test_size=test_size, stratify=data.y, random_state=seed
        )
        train, validation = train_test_split(
            learn, test_size=plan.validation_fraction, stratify=data.y[learn], random_state=seed
        )
    except ValueError as exc:
        raise DataError(f"{data.source}: too few rows of some class to split ({exc})") from exc
    return Splits(data.take(train), data.take(validation), data.take(test))


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _match_columns(spec: TaskSpec, frame: pd.DataFrame, where: str) -> dict[str, str]:
    """Map each spec name (features and target) to the CSV header it arrives under; every header
    problem (missing, two columns for one name, one column for two names) is reported at once."""
    headers = [str(header) for header in frame.columns]
    by_key: dict[str, list[int]] = {}
    for position, header in enumerate(headers):
        for key in header_keys(header):
            by_key.setdefault(key, []).append(position)
    wanted = [(f.name, f.aliases, f"features.{f.name}.aliases") for f in spec.features]
    wanted.append((spec.target.name, spec.target.aliases, "target.aliases"))
    columns: dict[str, str] = {}
    claimed: dict[int, str] = {}
    problems: list[str] = []
    for name, aliases, key in wanted:
        accepted = {k for alias in (name, *aliases) for k in header_keys(alias)}
        found = sorted({position for k in accepted for position in by_key.get(k, [])})
        if not found:
            problems.append(
                f"missing column {name!r} (also accepted: {', '.join(aliases) or 'no aliases'}); "
                f"add its header to {key} (case, spaces and punctuation are ignored)"
            )
        elif len(found) > 1:
            listed = ", ".join(repr(headers[position]) for position in found)
            problems.append(
                f"columns {listed} all mean {name!r} (case, spaces and punctuation are ignored); "
                "keep one"
            )
        elif found[0] in claimed:
            problems.append(
                f"column {headers[found[0]]!r} matches both {claimed[found[0]]!r} and {name!r}; "
                "change an alias so that each column has one meaning"
            )
        else:
            columns[name] = headers[found[0]]
            claimed[found[0]] = name
    if problems:
        found_headers = ", ".join(headers)
        if len(problems) == 1:
            raise DataError(f"{where}: {problems[0]}; found: {found_headers}")
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise DataError(
            f"{where}: {len(problems)} problems with the header:\n{listed}\nfound: {found_headers}"
        )
    return columns


def _convert(
    feature: FeatureSpec, cells: pd.Series, where: str, header: str, na_values: tuple[str, ...]
) -> pd.Series:
    """Text cells to checked values: floats for numbers (ints and bools too), str for categories;
    a missing cell is NaN, or MISSING_CATEGORY for a category (nullable features only)."""
    text = cells.astype(str).str.strip()
    missing = _missing(cells, text, na_values)
    if feature.type == "category":  # a category spelled like a missing value is that category
        missing &= ~text.isin(feature.categories or ())
    if not feature.nullable:
        _fail_missing(
            missing,
            where,
            header,
            text,
            f"a required feature: to allow missing values set features.{feature.name}.impute "
            "(or [defaults] impute)",
        )
    elif bool(missing.all()):
        raise DataError(
            f"{where}: column {header!r}: every value is missing, so there is nothing to learn "
            f"features.{feature.name}.impute from"
        )
    present = ~missing
    if feature.type == "category":
        allowed = feature.categories or ()
        _fail_first(
            present & ~text.isin(allowed),
            where,
            header,
            text,
            f"is not a known category (allowed: {', '.join(allowed)})",
        )
        return text.where(present, MISSING_CATEGORY).astype(object)
    if feature.type == "bool":
        lower = text.str.lower()
        _fail_first(
            present & ~lower.isin(TRUE_WORDS | FALSE_WORDS),
            where,
            header,
            text,
            "is not a boolean (use 0/1 or true/false)",
        )
        return lower.isin(TRUE_WORDS).astype(np.float64).where(present)
    values = pd.to_numeric(text.where(present), errors="coerce").astype(np.float64)
    _fail_first(present & ~np.isfinite(values), where, header, text, "is not a finite number")
    if feature.type == "int":
        whole = values == np.round(values)
        _fail_first(present & ~whole, where, header, text, "is not a whole number")
    low = -np.inf if feature.min is None else feature.min
    high = np.inf if feature.max is None else feature.max
    _fail_first(
        (values < low) | (values > high),
        where,
        header,
        text,
        f"is outside the allowed range {feature.min:g} to {feature.max:g}"
        if feature.min is not None and feature.max is not None
        else "is out of range",
    )
    return values


def _missing(cells: pd.Series, text: pd.Series, na_values: tuple[str, ...]) -> pd.Series:
    """Cells that mean "missing": a blank, one of the spec's na_values, or a frame's own NaN."""
    return cells.isna() | (text == "") | text.isin(na_values)


def _labels(spec: TaskSpec, cells: pd.Series, where: str, header: str) -> npt.NDArray[np.int64]:
    """Target cells to class indices; a cell may hold the label itself or its CSV value."""
    text = cells.astype(str).str.strip()
    lookup = {str(label): i for i, label in enumerate(spec.target.labels)}
    lookup.update({str(value): i for i, value in enumerate(spec.target.raw_values)})
    known = ", ".join(dict.fromkeys(lookup))
    missing = _missing(cells, text, spec.na_values) & ~text.isin(lookup)
    _fail_missing(missing, where, header, text, "every row needs its target (drop the row)")
    _fail_first(~text.isin(lookup), where, header, text, f"is not a known class ({known})")
    return np.asarray(text.map(lookup).to_numpy(), dtype=np.int64)


def _fail_first(bad: pd.Series, where: str, header: str, text: pd.Series, rule: str) -> None:
    """Raise for the first bad row, naming the column, the CSV line and the value."""
    if not bool(bad.any()):
        return
    row = int(np.flatnonzero(bad.to_numpy())[0])
    raise DataError(
        f"{where}: column {header!r}, line {row + FIRST_DATA_LINE}: "
        f"{text.iloc[row][:60]!r} {rule}{_more(bad)}"
    )


def _fail_missing(
    missing: pd.Series, where: str, header: str, text: pd.Series, advice: str
) -> None:
    """Raise for the first missing cell where none may be, naming column, line and what to do."""
    if not bool(missing.any()):
        return
    row = int(np.flatnonzero(missing.to_numpy())[0])
    shown = repr(text.iloc[row][:60]) if text.iloc[row] else "empty"
    raise DataError(
        f"{where}: column {header!r}, line {row + FIRST_DATA_LINE}: {shown} (missing)"
        f"{_more(missing)}; {advice}"
    )


def _more(bad: pd.Series) -> str:
    count = int(bad.sum())
    return f" ({count - 1} more rows like it)" if count > 1 else ""
