"""Task spec parsing: the built-in specs load, and a bad spec names the key that is wrong."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from training.spec import TASKS_DIR, SpecError, builtin_tasks, load_spec, load_task

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
        (("max = 1", "max = -1"), "features.0", "greater than max"),
        (('type = "float"', 'type = "complex"'), "features.0.type", "Input should be"),
        (('type = "float"', 'type = "category"'), "features.0", "categories"),
        (('positive = "yes"', 'positive = "no"'), "target", "second label"),
        (('name = "x"', 'name = "X Bad"'), "features.0.name", "pattern"),
        (("min = 0", 'min = "zero"'), "features.0.min", "number"),
        (("[target]", 'colour = "red"\n[target]'), "colour", "Extra inputs"),
        (('name = "y"', 'name = "x"'), "(top level)", "also a feature"),
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
    with pytest.raises(SpecError, match=r"target: Field required"):
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
