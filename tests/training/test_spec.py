"""Task spec parsing: the built-in specs load, and a bad spec names the key that is wrong."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from service.manifest import DEFAULT_NA_VALUES
from training.spec import (
    LABEL_MAX_CHARS,
    NAME_RULE,
    TASKS_DIR,
    SpecError,
    builtin_tasks,
    load_spec,
    load_task,
)

MINIMAL = """
name = "tiny"
[target]
name = "y"
labels = ["no", "yes"]
positive = "yes"
[[features]]
name = "x"
type = "float"
min = 0
max = 1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_tasks_are_the_three_of_the_story() -> None:
    assert builtin_tasks() == ["churn", "digits", "draft_pick"]


@pytest.mark.parametrize("task", ["churn", "digits", "draft_pick"])
def test_builtin_spec_loads_with_name_matching_file(task: str) -> None:
    spec = load_task(task)
    assert spec.name == task
    assert spec.features and all(f.description for f in spec.features)


def test_draft_pick_declares_the_ten_scouting_features() -> None:
    spec = load_task("draft_pick")
    assert len(spec.features) == 10
    assert spec.target.kind == "binary" and spec.target.positive == "yes"
    assert all(f.unit for f in spec.features)


def test_churn_declares_categories_and_bools() -> None:
    spec = load_task("churn")
    assert spec.categorical_features == ["geography", "gender"]
    assert {f.name for f in spec.features if f.type == "bool"} == {
        "has_cr_card",
        "is_active_member",
    }


def test_digits_is_multiclass_with_64_pixels() -> None:
    spec = load_task("digits")
    assert spec.target.kind == "multiclass" and len(spec.target.labels) == 10
    assert len(spec.features) == 64


def test_minimal_spec_gets_defaults(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.mlp.hidden_layer_sizes == (32, 16)
    assert spec.split.test_fraction == 0.2
    assert spec.target.raw_values == ("no", "yes")


@pytest.mark.parametrize(
    ("change", "key", "rule"),
    [
        (("max = 1", "max = -1"), "features.x", "greater than max"),
        (('type = "float"', 'type = "complex"'), "features.x.type", "Input should be"),
        (('type = "float"', 'type = "category"'), "features.x", "categories"),
        (('positive = "yes"', 'positive = "no"'), "target", "second label"),
        (('name = "x"', 'name = "X Bad"'), "features.0.name", "not a valid name"),
        (("min = 0", 'min = "zero"'), "features.x.min", "number (got 'zero')"),
        (("[target]", 'colour = "red"\n[target]'), "colour", "unknown key"),
        (('name = "y"', 'name = "x"'), "target.name", "also the name of features.0"),
        (("max = 1", "max = 1\n[mlp]\nalpha = -1"), "mlp.alpha", "greater than or equal"),
        (
            ("max = 1", 'max = 1\n[mlp]\nactivation = "softmax"'),
            "mlp.activation",
            "Input should be",
        ),
        (("max = 1", "max = 1\n[split]\ntest_fraction = 2"), "split.test_fraction", "less than"),
        (("max = 1", 'max = 1\n[mlp]\nmax_iter = "10"'), "mlp.max_iter", "integer"),
    ],
)
def test_bad_spec_names_the_key(
    tmp_path: Path, change: tuple[str, str], key: str, rule: str
) -> None:
    path = write(tmp_path, MINIMAL.replace(*change, 1))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}"), message
    assert rule in message


def test_missing_target_is_named(tmp_path: Path) -> None:
    text = MINIMAL.split("[target]")[0] + MINIMAL.split('positive = "yes"')[1]
    with pytest.raises(SpecError, match=r"target: required key is missing"):
        load_spec(write(tmp_path, text))


def test_invalid_toml_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(write(tmp_path, "name = [unclosed"))


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "nope.toml")


def test_unknown_builtin_task_lists_the_known_ones() -> None:
    with pytest.raises(SpecError, match="churn, digits, draft_pick"):
        load_task("nba")


def test_spec_files_are_valid_toml() -> None:
    for task in builtin_tasks():
        path = TASKS_DIR / f"{task}.toml"
        assert tomllib.loads(path.read_text())["name"] == task


MANY_PROBLEMS = """
name = "Bad Name"
colour = "red"
[target]
name = "y"
labels = ["a", "b"]
values = [0, 1.5]
positive = "b"
[mlp]
hidden_layer_sizes = [0, -3]
[[features]]
name = "age"
type = "float"
min = 10
max = 5
[[features]]
name = "height"
type = "flaot"
min = "x"
[[features]]
type = "category"
categories = ["a", "b"]
[[features]]
name = "age"
type = "int"
"""


def test_every_problem_of_a_spec_is_listed_with_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, MANY_PROBLEMS)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    head, *lines = str(caught.value).splitlines()
    assert head == f"{path}: {len(lines)} problems:"
    keys = [line.strip().split(": ", 1)[0] for line in lines]
    assert keys == [
        "name",
        "target.values.1",
        "mlp.hidden_layer_sizes.0",
        "mlp.hidden_layer_sizes.1",
        "features.0",
        "features.height.type",
        "features.height.min",
        "features.2.name",
        "features.3",
        "colour",
        "features.3.name",
    ]
    text = str(caught.value)
    assert "more)" not in text and "after validation" not in text
    assert "target.values.1: Input should be a valid integer or a valid string (got 1.5)" in text
    assert "features.height.type: Input should be 'float', 'int', 'bool' or 'category'" in text
    assert "features.3: an int feature needs both min and max" in text
    assert "features.3.name: 'age' is already the name of features.0" in text


def test_a_bad_name_states_the_rule_and_points_to_aliases(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('name = "x"', 'name = "score [usd]"', 1))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == (
        f"{path}: features.0.name: 'score [usd]' is not a valid name: a lowercase letter, then up "
        f"to 63 lowercase letters, digits or underscores ({NAME_RULE}); any CSV header can be "
        "matched through `aliases`"
    )


@pytest.mark.parametrize("name", ["x\\n", "x" * 65, "_x", "9x", "été"])
def test_names_outside_the_rule_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SpecError, match=r"features\.0\.name: .* is not a valid name"):
        load_spec(write(tmp_path, MINIMAL.replace('name = "x"', f'name = "{name}"', 1)))


def test_the_longest_name_is_accepted(tmp_path: Path) -> None:
    name = "x" + "_" * 63
    assert load_spec(write(tmp_path, MINIMAL.replace('name = "x"', f'name = "{name}"', 1)))


def test_the_readme_states_the_name_rule_and_the_way_around_it() -> None:
    readme = (TASKS_DIR.parents[1] / "README.md").read_text(encoding="utf-8")
    rule = readme.split("**Names.**", 1)[1].split("\n\n", 1)[0]
    assert f"`{NAME_RULE}`" in rule
    assert "any header" in rule and "`aliases`" in rule


# Missing values: impute, fill_value, missing_indicator, [defaults], na_values.

NULLABLE = """
name = "tiny"
[target]
name = "y"
labels = ["no", "yes"]
positive = "yes"
[[features]]
name = "x"
type = "float"
min = 0
max = 1
impute = "median"
[[features]]
name = "n"
type = "int"
min = 0
max = 9
impute = "constant"
fill_value = 3
[[features]]
name = "b"
type = "bool"
impute = "constant"
fill_value = true
[[features]]
name = "c"
type = "category"
categories = ["a", "b"]
impute = "most_frequent"
missing_indicator = true
[[features]]
name = "r"
type = "float"
min = 0
max = 1
"""


def test_missing_value_keys_are_read(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, NULLABLE))
    assert spec.nullable_features == ["x", "n", "b", "c"]
    assert [f.rule for f in spec.features] == [
        "median",
        "constant",
        "constant",
        "most_frequent",
        None,
    ]
    assert spec.feature("n").fill_value == 3 and spec.feature("b").fill_value is True
    assert spec.feature("c").missing_indicator and not spec.feature("x").missing_indicator
    assert not spec.feature("r").nullable  # no impute: required, as before
    assert spec.na_values == DEFAULT_NA_VALUES


@pytest.mark.parametrize("task", ["churn", "digits", "draft_pick"])
def test_builtin_specs_keep_every_feature_required(task: str) -> None:
    spec = load_task(task)
    assert spec.nullable_features == [] and spec.na_values == DEFAULT_NA_VALUES


@pytest.mark.parametrize(
    ("change", "key", "rule"),
    [
        (('impute = "median"', 'impute = "medium"'), "features.x.impute", "Input should be"),
        (
            ('impute = "most_frequent"', 'impute = "mean"'),
            "features.c.impute",
            'a category feature is imputed with "most_frequent" or "constant", not "mean"',
        ),
        (("fill_value = 3", ""), "features.n.fill_value", 'impute = "constant" needs a fill_value'),
        (
            ('impute = "median"', 'impute = "median"\nfill_value = 0.5'),
            "features.x.fill_value",
            'fill_value is only used with impute = "constant" (impute is "median")',
        ),
        (
            ("fill_value = 3", "fill_value = 12"),
            "features.n.fill_value",
            "fill_value 12 is outside the feature's range 0 to 9",
        ),
        (
            ("fill_value = 3", "fill_value = 2.5"),
            "features.n.fill_value",
            "fill_value 2.5 is not a whole number",
        ),
        (
            ("fill_value = 3", 'fill_value = "3"'),
            "features.n.fill_value",
            "the fill_value of an int feature is a number, not '3'",
        ),
        (
            ("fill_value = true", "fill_value = 2"),
            "features.b.fill_value",
            "a bool feature's fill_value is true, false, 0 or 1, not 2",
        ),
        (
            ('impute = "most_frequent"', 'impute = "constant"\nfill_value = "z"'),
            "features.c.fill_value",
            "fill_value 'z' is not one of the categories (a, b)",
        ),
        (
            ('name = "b"', 'name = "b"\ntransform = "spline"'),
            "features.b.transform",
            'transform = "spline" is for int and float features (a range of numbers), not bool',
        ),
        (
            ('name = "r"', 'name = "r"\ntransform = "splines"'),
            "features.r.transform",
            "Input should be 'standard' or 'spline'",
        ),
        (
            ('name = "r"', 'name = "r"\nmissing_indicator = true'),
            "features.r.missing_indicator",
            "missing_indicator needs impute",
        ),
        (
            ('categories = ["a", "b"]', 'categories = ["a", ""]'),
            "features.c.categories",
            "categories are non-empty strings",
        ),
        (
            ('categories = ["a", "b"]', 'categories = ["a", " b"]'),
            "features.c.categories",
            "without surrounding spaces",
        ),
        (('name = "tiny"', 'name = "tiny"\nna_values = "NA"'), "na_values", "valid array"),
        (
            ('name = "tiny"', 'name = "tiny"\n[defaults]\nimpute = "medium"'),
            "defaults.impute",
            "Input should be",
        ),
        (
            ('name = "tiny"', 'name = "tiny"\n[defaults]\ncolour = 1'),
            "defaults.colour",
            "unknown key",
        ),
    ],
)
def test_a_bad_missing_value_setting_names_its_key(
    tmp_path: Path, change: tuple[str, str], key: str, rule: str
) -> None:
    path = write(tmp_path, NULLABLE.replace(*change, 1))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert rule in message


def test_every_missing_value_problem_is_listed_with_its_key(tmp_path: Path) -> None:
    text = (
        NULLABLE.replace("fill_value = 3", "fill_value = 12", 1)
        .replace("fill_value = true", "", 1)
        .replace('impute = "most_frequent"', 'impute = "median"', 1)
        .replace('name = "r"', 'name = "r"\nmissing_indicator = true', 1)
    )
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    head, *lines = str(caught.value).splitlines()
    assert head == f"{path}: 4 problems:"
    assert [line.strip().split(": ", 1)[0] for line in lines] == [
        "features.n.fill_value",
        "features.b.fill_value",
        "features.c.impute",
        "features.r.missing_indicator",
    ]


DEFAULTS = """
name = "tiny"
[defaults]
impute = "median"
missing_indicator = true
[target]
name = "y"
labels = ["no", "yes"]
positive = "yes"
[[features]]
name = "x"
type = "float"
min = 0
max = 1
[[features]]
name = "m"
type = "float"
min = 0
max = 1
impute = "mean"
missing_indicator = false
[[features]]
name = "kept"
type = "int"
min = 0
max = 9
impute = "none"
[[features]]
name = "c"
type = "category"
categories = ["a", "b"]
"""


def test_defaults_apply_to_every_feature_without_its_own(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, DEFAULTS))
    rules = {f.name: (f.rule, f.missing_indicator) for f in spec.features}
    assert rules == {
        "x": ("median", True),
        "m": ("mean", False),  # its own settings win
        "kept": (None, False),  # impute = "none": required whatever [defaults] says
        "c": ("most_frequent", True),  # a category's central value is its most frequent one
    }


def test_a_constant_default_brings_its_fill_value(tmp_path: Path) -> None:
    text = DEFAULTS.replace('impute = "median"', 'impute = "constant"\nfill_value = 0', 1)
    text = text.replace('categories = ["a", "b"]', 'categories = ["a", "b"]\nimpute = "none"')
    spec = load_spec(write(tmp_path, text))
    assert (spec.feature("x").rule, spec.feature("x").fill_value) == ("constant", 0)
    assert spec.feature("m").fill_value is None  # "mean": no fill value


def test_a_bad_inherited_value_is_named_at_the_feature_and_traced_to_defaults(
    tmp_path: Path,
) -> None:
    text = DEFAULTS.replace('impute = "median"', 'impute = "constant"\nfill_value = 5', 1)
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    lines = [line.strip() for line in str(caught.value).splitlines()[1:]]
    assert lines == [
        "features.x.fill_value: fill_value 5 is outside the feature's range 0 to 1 (the value "
        "comes from [defaults] fill_value; set it here to override)",
        "features.c.fill_value: fill_value 5 is not one of the categories (a, b) (the value "
        "comes from [defaults] fill_value; set it here to override)",
    ]


def test_na_values_are_stripped(tmp_path: Path) -> None:
    text = NULLABLE.replace('name = "tiny"', 'name = "tiny"\nna_values = [" -999 ", "n/a"]', 1)
    assert load_spec(write(tmp_path, text)).na_values == ("-999", "n/a")


def test_transform_is_read_and_defaults_to_standard(tmp_path: Path) -> None:
    spec = load_spec(
        write(tmp_path, NULLABLE.replace('name = "x"', 'name = "x"\ntransform = "spline"'))
    )
    assert spec.feature("x").transform == "spline"
    assert spec.feature("r").transform == "standard"
    assert spec.feature("x").to_manifest(0.0, 1.0, impute_value=0.5).transform == "spline"


def test_a_label_is_read_stripped_and_written_to_the_manifest(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL.replace('name = "x"', 'name = "x"\nlabel = " X "')))
    assert spec.feature("x").label == "X"
    assert spec.feature("x").to_manifest(0.0, 1.0).label == "X"


def test_without_a_label_the_manifest_gets_the_name_in_words(tmp_path: Path) -> None:
    text = MINIMAL.replace('name = "x"', 'name = "height_cm"\nunit = "cm"')
    feature = load_spec(write(tmp_path, text)).feature("height_cm")
    assert feature.label is None
    assert feature.display_label == "Height"
    assert feature.to_manifest(0.0, 1.0).label == "Height"


@pytest.mark.parametrize(
    ("label", "rule"),
    [
        ('""', "leave the key out for the default"),
        ('"   "', "leave the key out for the default"),
        ('"two\\nlines"', "one line"),
        ('"tab\\there"', "one line"),
        (f'"{"x" * (LABEL_MAX_CHARS + 1)}"', f"at most {LABEL_MAX_CHARS} characters"),
        ("5", "valid string (got 5)"),
    ],
)
def test_a_bad_label_is_named_with_its_feature(tmp_path: Path, label: str, rule: str) -> None:
    path = write(tmp_path, MINIMAL.replace('name = "x"', f'name = "x"\nlabel = {label}'))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: features.x.label: "), message
    assert rule in message


def test_a_label_of_the_longest_length_is_accepted(tmp_path: Path) -> None:
    label = "é" * LABEL_MAX_CHARS
    spec = load_spec(
        write(tmp_path, MINIMAL.replace('name = "x"', f'name = "x"\nlabel = "{label}"'))
    )
    assert spec.feature("x").label == label


def test_builtin_specs_label_the_features_whose_names_read_badly() -> None:
    churn = {f.name: f.display_label for f in load_task("churn").features}
    assert churn["num_of_products"] == "Number of products"
    assert churn["has_cr_card"] == "Has a credit card"
    assert churn["is_active_member"] == "Active member"
    assert churn["geography"] == "Country"
    assert churn["credit_score"] == "Credit score"  # the default reads well
    draft_pick = {f.name: f.display_label for f in load_task("draft_pick").features}
    assert draft_pick["height_cm"] == "Height"
    assert draft_pick["free_throws_made_per_game"] == "Free throws made per game"
    assert draft_pick["wins"] == "Team wins"
    digits = load_task("digits")
    assert digits.feature("pixel_3_5").display_label == "Pixel at row 3, column 5"
    for task in builtin_tasks():
        labels = [f.display_label for f in load_task(task).features]
        assert len(set(labels)) == len(labels), task
