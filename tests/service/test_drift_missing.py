"""Drift with missing values: a nullable feature's missing value counts into its "missing" bin,
one record at a time (queued) as in a batch."""

from __future__ import annotations

from service.drift import Tally, binning_of
from service.manifest import MISSING_BIN
from service.model import load_model
from service.validation import batch_from_records
from tests.service.missing_models import NullableModel, nullable  # noqa: F401 (the fixture)


def test_missing_values_count_into_the_missing_bin(nullable: NullableModel) -> None:  # noqa: F811
    model = load_model(nullable.folder, 1)
    rules = binning_of(model)
    assert rules is not None
    record = dict(model.manifest.examples[0].record)
    missing = dict.fromkeys((f.name for f in nullable.nullable), None)
    records = [record, {**record, **missing}, {**record, **missing}]
    tally = Tally(rules)
    for one in records:  # one record each: queued as Python scalars
        batch = batch_from_records(model.validator, [one])
        tally.add(batch, model.predict(batch))
    batch = batch_from_records(model.validator, records)  # a batch: binned at once
    tally.add(batch, model.predict(batch))

    window = tally.window()
    assert window.records == 6
    for column in rules.columns[:-1]:
        distribution = column.distribution
        assert distribution.bins[-1] == MISSING_BIN
        counts = window.counts[column.offset : column.offset + column.size].tolist()
        given = record.get(column.name) is not None  # an example may leave one out
        expected = 0 if column.name not in missing else (4 if given else 6)
        assert counts[-1] == expected, column.name
        assert sum(counts) == 6
