"""The vectorised validator: whole-batch checks that still name each offending record and field."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.errors import InvalidInput
from service.manifest import Feature, Manifest
from service.validation import MAX_PROBLEMS, Validator, batch_from_records

BAD_VALUES: dict[str, list[Any]] = {
    "float": ["text", None, [1], {"a": 1}, True, -1e9, 1e9],
    "int": ["7", None, False, 0.5, -1e9, 1e9],
    "bool": [1, 0.0, "true", None],
    "category": ["Atlantis", 1, None, True],
}


def feature_values(feature: Feature) -> st.SearchStrategy[Any]:
    """Any value the manifest allows for this feature, as JSON would carry it."""
    if feature.type == "category":
        return st.sampled_from(feature.categories or [])
    if feature.type == "bool":
        return st.booleans()
    low, high = feature.min or 0.0, feature.max or 1.0
    if feature.type == "int":
        return st.integers(int(np.ceil(low)), int(np.floor(high)))
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def valid_records(manifest: Manifest) -> st.SearchStrategy[list[dict[str, Any]]]:
    record = st.fixed_dictionaries({f.name: feature_values(f) for f in manifest.features})
    return st.lists(record, min_size=1, max_size=20)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_valid_batch_becomes_one_float32_or_string_column_per_feature(
    churn: Manifest, data: st.DataObject
) -> None:
    records = data.draw(valid_records(churn))
    batch = batch_from_records(Validator(churn), records)
    assert batch.size == len(records)
    for feature in churn.features:
        column = batch.inputs[feature.name]
        assert column.shape == (len(records), 1)
        expected = [r[feature.name] for r in records]
        if feature.type == "category":
            assert column.dtype == object and column[:, 0].tolist() == expected
        else:
            assert column.dtype == np.float32
            np.testing.assert_allclose(column[:, 0], np.asarray(expected, dtype=np.float32))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_the_quick_rules_accept_only_what_the_columnar_rules_accept_and_give_the_same_batch(
    churn: Manifest, data: st.DataObject
) -> None:
    """`Validator.quick` (plain Python, for a few records) is generated from the same rules as
    `assemble`: on valid records, and on records with one value from outside the rules, it
    answers the same batch or declines (None), never a batch the columnar rules refuse."""
    validator = Validator(churn)
    records = data.draw(valid_records(churn).map(lambda rows: rows[:16]))
    if data.draw(st.booleans()):
        feature = data.draw(st.sampled_from(churn.features))
        row = data.draw(st.integers(0, len(records) - 1))
        records[row][feature.name] = data.draw(st.sampled_from(BAD_VALUES[feature.type]))
    quick = validator.quick([validator.getter(record) for record in records])
    try:
        checked = batch_from_records(validator, records)
    except InvalidInput:
        assert quick is None
        return
    if quick is None:
        return  # declined: the columnar rules take it
    assert quick.size == checked.size and quick.flags() == checked.flags()
    for name, column in checked.inputs.items():
        assert quick.inputs[name].dtype == column.dtype
        np.testing.assert_array_equal(quick.inputs[name], column)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_one_bad_value_anywhere_is_reported_at_its_record_and_field(
    churn: Manifest, data: st.DataObject
) -> None:
    records = data.draw(valid_records(churn))
    index = data.draw(st.integers(0, len(records) - 1))
    feature = data.draw(st.sampled_from(churn.features))
    bad = data.draw(st.sampled_from(BAD_VALUES[feature.type]))
    records[index][feature.name] = bad
    with pytest.raises(InvalidInput) as caught:
        batch_from_records(Validator(churn), records)
    problems = caught.value.problems
    assert {(p.index, p.field) for p in problems} == {(index, feature.name)}


def test_out_of_range_flags_are_per_record(churn: Manifest) -> None:
    age = churn.feature("age")
    assert age.train_min is not None and age.train_max is not None
    records = [dict(churn.examples[0].record) for _ in range(3)]
    records[1]["age"] = 100 if age.train_max < 100 else 18
    batch = batch_from_records(Validator(churn), records)
    assert batch.flags() == [[], ["age"], []]


def test_open_bounds_still_reject_values_that_overflow_float32(churn: Manifest) -> None:
    unbounded = [
        f.model_copy(update={"max": None}) if f.name == "balance" else f for f in churn.features
    ]
    manifest = churn.model_copy(update={"features": unbounded})
    records = [dict(churn.examples[0].record, balance=1e300)]
    with pytest.raises(InvalidInput) as caught:
        batch_from_records(Validator(manifest), records)
    problem = caught.value.problems[0]
    assert (problem.field, problem.type) == ("balance", "finite_number")


def test_many_problems_are_listed_up_to_the_cap_by_record_and_the_rest_counted(
    churn: Manifest,
) -> None:
    records = [dict(churn.examples[0].record, age=-1, geography="Mars") for _ in range(100)]
    with pytest.raises(InvalidInput) as caught:
        batch_from_records(Validator(churn), records)
    problems = caught.value.problems
    assert len(problems) == MAX_PROBLEMS == 100  # the first 50 records, two problems each
    assert caught.value.not_listed == 100
    assert [(p.index, p.field) for p in problems[:4]] == [
        (0, "geography"), (0, "age"), (1, "geography"), (1, "age"),
    ]  # fmt: skip
    assert [p.index for p in problems] == [i // 2 for i in range(100)]


def test_without_a_limit_every_problem_is_listed(churn: Manifest) -> None:
    records = [dict(churn.examples[0].record, age=-1, geography="Mars") for _ in range(100)]
    with pytest.raises(InvalidInput) as caught:
        batch_from_records(Validator(churn), records, limit=None)
    assert len(caught.value.problems) == 200 and caught.value.not_listed == 0


def test_a_missing_field_does_not_hide_the_records_other_problems(churn: Manifest) -> None:
    """The issue's case: a record lacking a field, with an unknown category and more."""
    good = dict(churn.examples[0].record)
    bad = dict(good, geography="Italy", age="forty", surname="Rossi")
    del bad["estimated_salary"]
    odd: list[Any] = [good, bad, "not a record", dict(good, balance=-1.0)]
    with pytest.raises(InvalidInput) as caught:
        batch_from_records(Validator(churn), odd)
    found = [(p.index, p.field, p.type) for p in caught.value.problems]
    assert found == [  # by record, then in the manifest's feature order, unknown keys last
        (1, "geography", "enum"),
        (1, "age", "int_type"),
        (1, "estimated_salary", "missing"),
        (1, "surname", "extra_forbidden"),
        (2, None, "dict_type"),
        (3, "balance", "greater_than_equal"),
    ]
    assert caught.value.not_listed == 0


def test_a_model_of_categories_only_is_validated(churn: Manifest) -> None:
    only = [f for f in churn.features if f.type == "category"]
    manifest = churn.model_copy(update={"features": only})
    records = [
        {"geography": "Spain", "gender": "Male"},
        {"geography": "France", "gender": "Female"},
    ]
    batch = batch_from_records(Validator(manifest), records)
    assert sorted(batch.inputs) == ["gender", "geography"]
    assert batch.inputs["geography"][:, 0].tolist() == ["Spain", "France"]
