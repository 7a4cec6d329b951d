"""The spec validator (pydantic + the project's wording) on small sections of its own: every type, rule
and message form."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pytest
import yaml
from pydantic import Field

from model_zoo.registry import Registry
from trainables.schema import (
    Section,
    SpecError,
    check,
    dataclass_of,
    describe_schema,
    format_schema,
    from_dict,
    to_dict,
)

COLOURS: Registry = Registry("colour")
COLOURS.register("red")(lambda: None)
COLOURS.register("green")(lambda: None)


def _upper(value: str) -> None:
    if value != value.upper():
        raise ValueError(f"must be upper case, got {value!r} (valid: OK, YES)")


@dataclass
class Inner(Section):
    size: int = field(default=32, metadata={"ge": 32, "description": "side in px"})
    ratio: float = field(default=0.5, metadata={"gt": 0.0, "lt": 1.0})


@dataclass
class Outer(Section):
    name: str = "x"
    lr: float = field(default=1e-3, metadata={"gt": 0.0})
    epochs: int = field(default=5, metadata={"ge": 1})
    decay: float = field(default=0.0, metadata={"ge": 0.0})
    flag: bool = False
    mode: Literal["alpha", "beta", "gamma"] = "alpha"
    kind: Literal["red", "green"] = "red"
    names: list[str] = field(default_factory=lambda: ["a"])
    pair: tuple[float, float] = (0.0, 1.0)
    many: tuple[int, ...] = ()
    weights: dict[str, Annotated[float, Field(ge=0.0)]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    maybe: int | None = field(default=None, metadata={"ge": 1})
    either: str | list[str] = "auto"
    shout: Annotated[str, check(_upper)] = "OK"
    colour: Annotated[str, check(COLOURS.check)] = "red"
    inner: Inner = field(default_factory=Inner)
    opt_inner: Inner | None = None


@dataclass
class Required(Section):
    x: int


@dataclass
class Ordered(Section):
    low: int = 0
    high: int = 1

    def validate(self) -> list[str]:
        return (
            [] if self.low < self.high else [f"high: must be greater than low ({self.low}), got {self.high}"]
        )


@dataclass
class Numbered(Section):
    n: Literal[1, 2] = 1


@dataclass
class Plain:
    s: int = 0


def error_of(cls: type, data: Any, path: str = "") -> str:
    with pytest.raises(SpecError) as info:
        from_dict(cls, data, path)
    return str(info.value)


def test_defaults_when_empty_or_none() -> None:
    assert from_dict(Outer, None) == Outer()
    assert from_dict(Outer, {}) == Outer()


def test_positive_number_message_names_the_dotted_path() -> None:
    assert error_of(Outer, {"lr": "fast"}, "train") == "train.lr: expected a positive number, got 'fast'"


@pytest.mark.parametrize(
    ("data", "attr", "expected"),
    [
        ({"lr": "1e-3"}, "lr", 0.001),  # PyYAML reads 1e-3 (no dot) as a string
        ({"lr": 2}, "lr", 2.0),
        ({"epochs": "1e3"}, "epochs", 1000),
        ({"epochs": 2.0}, "epochs", 2),
        ({"epochs": " 7 "}, "epochs", 7),
    ],
)
def test_numbers_accept_yaml_forms(data: dict, attr: str, expected: Any) -> None:
    value = getattr(from_dict(Outer, data), attr)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"epochs": 2.5}, "epochs: expected a positive integer, got 2.5"),
        ({"epochs": True}, "epochs: expected a positive integer, got true"),
        ({"epochs": 0}, "epochs: expected a positive integer, got 0"),
        ({"lr": True}, "lr: expected a positive number, got true"),
        ({"lr": float("inf")}, "lr: expected a positive number, got inf"),
        ({"lr": "nan"}, "lr: expected a positive number, got 'nan'"),
        ({"lr": 0}, "lr: expected a positive number, got 0"),
        ({"lr": [1]}, "lr: expected a positive number, got [1]"),
        ({"decay": -0.1}, "decay: expected a non-negative number, got -0.1"),
        ({"inner": {"size": 16}}, "inner.size: expected an integer >= 32, got 16"),
        ({"inner": {"ratio": 1.0}}, "inner.ratio: expected a number in (0.0, 1.0), got 1.0"),
        ({"flag": "yes"}, "flag: expected true or false, got 'yes'"),
        ({"flag": 1}, "flag: expected true or false, got 1"),
        ({"name": 5}, "name: expected a string, got 5"),
        ({"names": "a"}, "names: expected a list of strings, got 'a'"),
        ({"names": ["a", 1]}, "names[1]: expected a string, got 1"),
        ({"pair": [1]}, "pair: expected a list of 2 numbers, got [1]"),
        ({"pair": [1, "x"]}, "pair[1]: expected a number, got 'x'"),
        ({"many": [1, 2.5]}, "many[1]: expected an integer, got 2.5"),
        ({"weights": {"a": -1}}, "weights.a: expected a non-negative number, got -1"),
        ({"weights": [1]}, "weights: expected a mapping of names to non-negative numbers, got [1]"),
        ({"weights": {1: 2.0}}, "weights: keys must be strings, got 1"),
        ({"maybe": 0}, "maybe: expected a positive integer or null, got 0"),
        ({"either": 5}, "either: expected a string or a list of strings, got 5"),
        ({"either": ["a", 1]}, "either[1]: expected a string, got 1"),
        ({"inner": None}, "inner: expected a mapping, got null (write {} for the defaults)"),
        ({"inner": 3}, "inner: expected a mapping, got 3"),
        ({"opt_inner": {"size": 8}}, "opt_inner.size: expected an integer >= 32, got 8"),
    ],
)
def test_wrong_types_and_out_of_range(data: dict, message: str) -> None:
    assert error_of(Outer, data) == message


def test_containers_and_unions_convert() -> None:
    out = from_dict(
        Outer,
        {
            "pair": [1, "2e-1"],
            "many": [3, 4, 5],
            "weights": {"a": 1},
            "extra": {"k": [1, {"b": None}]},
            "maybe": 3,
            "either": ["benign", "malignant"],
            "opt_inner": {"size": 64},
        },
    )
    assert out.pair == (1.0, 0.2)
    assert out.many == (3, 4, 5)
    assert out.weights == {"a": 1.0}
    assert out.extra == {"k": [1, {"b": None}]}
    assert out.maybe == 3
    assert out.either == ["benign", "malignant"]
    assert out.opt_inner == Inner(size=64)
    assert from_dict(Outer, {"either": "auto", "maybe": None}).either == "auto"


def test_literal_lists_choices_and_suggests_the_closest() -> None:
    assert (
        error_of(Outer, {"mode": "betta"})
        == "mode: expected one of alpha, beta, gamma, got 'betta' (did you mean 'beta'?)"
    )
    assert error_of(Outer, {"mode": "zzz"}) == "mode: expected one of alpha, beta, gamma, got 'zzz'"
    assert (
        error_of(Outer, {"kind": "gren"})
        == "kind: expected one of red, green, got 'gren' (did you mean 'green'?)"
    )


def test_literal_does_not_confuse_bool_with_int() -> None:
    assert from_dict(Numbered, {"n": 2}).n == 2
    assert error_of(Numbered, {"n": True}) == "n: expected one of 1, 2, got true"


def test_check_message_is_kept_and_prefixed() -> None:
    assert (
        error_of(Outer, {"shout": "quiet"}, "sec")
        == "sec.shout: must be upper case, got 'quiet' (valid: OK, YES)"
    )
    # A KeyError-style registry error keeps its readable message, not the KeyError repr.
    assert (
        error_of(Outer, {"colour": "gren"})
        == "colour: unknown colour 'gren'. Did you mean 'green'? Valid: green, red"
    )
    # The check never sees a value of the wrong type.
    assert error_of(Outer, {"shout": 3}) == "shout: expected a string, got 3"


def test_unknown_key_suggests_the_closest_valid_one() -> None:
    assert (
        error_of(Outer, {"inner": {"sise": 1}}, "model")
        == "model.inner.sise: unknown key, did you mean model.inner.size?"
    )
    message = error_of(Outer, {"zzzzzz": 1})
    assert message.startswith("zzzzzz: unknown key; valid keys: name, lr, epochs")
    assert message.endswith("inner, opt_inner")


def test_all_errors_are_collected_one_per_line() -> None:
    with pytest.raises(SpecError) as info:
        from_dict(Outer, {"lr": "fast", "epochs": 0, "inner": {"sise": 1}, "mode": "x"}, "train")
    assert info.value.errors == [
        "train.lr: expected a positive number, got 'fast'",
        "train.epochs: expected a positive integer, got 0",
        "train.inner.sise: unknown key, did you mean train.inner.size?",
        "train.mode: expected one of alpha, beta, gamma, got 'x'",
    ]
    assert str(info.value) == "\n".join(info.value.errors)
    assert isinstance(info.value, ValueError)


def test_missing_required_key_and_non_mapping_top_level() -> None:
    assert error_of(Required, {}) == "x: missing required key"
    assert from_dict(Required, {"x": 1}) == Required(1)
    assert error_of(Outer, [1, 2]) == "<spec>: expected a mapping, got [1, 2]"


def test_cross_field_validate_hook_is_prefixed() -> None:
    assert from_dict(Ordered, {"low": 1, "high": 2}) == Ordered(1, 2)
    assert (
        error_of(Ordered, {"low": 3, "high": 2}, "range") == "range.high: must be greater than low (3), got 2"
    )


def test_an_instance_is_accepted_as_a_section() -> None:
    assert from_dict(Outer, {"inner": Inner(size=64)}).inner == Inner(size=64)
    assert error_of(Outer, {"inner": Inner(size=8)}) == "inner.size: expected an integer >= 32, got 8"


def test_schema_mistakes_are_type_errors_not_spec_errors() -> None:
    with pytest.raises(TypeError, match="needs a Section dataclass"):
        from_dict(Plain, {"s": 1})
    with pytest.raises(TypeError, match="needs a Section dataclass"):
        from_dict(dict, {})


def test_to_dict_is_plain_and_round_trips_through_yaml_and_json() -> None:
    original = Outer(
        name="run",
        lr=3e-4,
        epochs=7,
        flag=True,
        mode="gamma",
        names=["a", "b"],
        pair=(0.9, 1.1),
        many=(1, 2),
        weights={"dice": 0.5},
        extra={"decoder_channels": [64, 32]},
        maybe=2,
        either=["benign"],
        inner=Inner(size=64, ratio=0.25),
        opt_inner=Inner(),
    )
    plain = to_dict(original)
    assert plain["pair"] == [0.9, 1.1]
    assert plain["inner"] == {"size": 64, "ratio": 0.25}
    assert from_dict(Outer, plain) == original
    assert from_dict(Outer, yaml.safe_load(yaml.safe_dump(plain))) == original
    assert from_dict(Outer, json.loads(json.dumps(plain))) == original


def test_describe_schema_rows() -> None:
    rows = {
        key: (type_text, default, help_text) for key, type_text, default, help_text in describe_schema(Outer)
    }
    assert rows["lr"] == ("float > 0.0", 1e-3, "")
    assert rows["inner.size"] == ("int >= 32", 32, "side in px")
    assert rows["inner.ratio"][0] == "float in (0.0, 1.0)"
    assert rows["mode"][0] == "alpha | beta | gamma"
    assert rows["pair"][1] == [0.0, 1.0]
    assert rows["maybe"][0] == "int | None >= 1"
    assert rows["kind"][0] == "red | green"
    assert "opt_inner" in rows  # an optional section is one row, not expanded
    table = format_schema(Outer)
    assert len(table.splitlines()) == len(rows)
    assert "side in px" in table


def test_dataclass_of() -> None:
    hints = {"inner": Inner, "opt": Inner | None, "leaf": int | None}
    assert dataclass_of(hints["inner"]) is Inner
    assert dataclass_of(hints["opt"]) is Inner
    assert dataclass_of(hints["leaf"]) is None


def test_exact_mode_takes_numbers_as_written_and_leaves_names_to_the_build() -> None:
    assert error_of_exact({"epochs": "7"}) == "epochs: expected a positive integer, got '7'"
    assert error_of_exact({"lr": "1e-3"}) == "lr: expected a positive number, got '1e-3'"
    assert from_dict(Looked, {"colour": "gren"}, exact=True).colour == "gren"  # a registry name
    assert error_of(Looked, {"colour": "gren"}).startswith("colour: unknown colour 'gren'")
    assert error_of_exact({"shout": "quiet"}) == "shout: must be upper case, got 'quiet' (valid: OK, YES)"


@dataclass
class Looked(Section):
    colour: Annotated[str, check(COLOURS.check, lookup=True)] = "red"


def error_of_exact(data: Any) -> str:
    with pytest.raises(SpecError) as info:
        from_dict(Outer, data, exact=True)
    return str(info.value)


def test_metadata_of_the_old_validator_is_refused() -> None:
    @dataclass
    class Stale(Section):
        n: int = field(default=1, metadata={"min": 1})

    with pytest.raises(TypeError, match=r"Stale: old validator metadata.*n \(min\)"):
        from_dict(Stale, {})
