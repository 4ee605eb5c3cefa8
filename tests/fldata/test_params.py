"""The declared-constraints machinery (fldata.params): intervals, booleans, choices, nesting."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from fldata.params import (
    BOOLEAN,
    POSITIVE_INT,
    Boolean,
    ConfigError,
    Constraints,
    Interval,
    ListOf,
    Options,
    Section,
    Table,
    Text,
    TupleOf,
    argparse_type,
    check_declarations,
    check_params,
    declared,
    upgrade_renamed,
    validate_fields,
    validate_params,
    validate_value,
    validated_init,
)


@pytest.mark.parametrize(
    "constraint, accepted, refused",
    [
        (Interval(int, 1, None, closed="left"), [1, 7, 10**30], [0, -1, 1.0, 2.5, True, "3", None]),
        (
            Interval(float, 0, 1, closed="neither"),
            [1e-9, 0.5, 1 - 1e-9],
            [0, 0.0, 1, 1.0, math.nan, True],
        ),
        (Interval(float, 0, 1, closed="left"), [0, 0.0, 0.999], [1.0, -0.0001]),
        (Interval(float, 0, 1, closed="right"), [1, 0.5], [0.0]),
        (
            Interval(float, 0, None, closed="left"),
            [0.0, 1e300],
            [math.inf, -math.inf, math.nan, -1.0],
        ),
        (
            Interval(float, 0, None, closed="left", allow_inf=True),
            [0.0, math.inf],
            [math.nan, -math.inf],
        ),
        (Interval(float, None, None), [-1e300, 0, 3.5], [math.inf, math.nan, "1.0"]),
        (
            Boolean(),
            [True, False, "true", "false", "False", "TRUE"],
            [1, 0, "yes", "no", "", None, "t"],
        ),
        (Options("sgd", "adam"), ["sgd", "adam"], ["SGD", "rmsprop", None, 1]),
        (Options(1, 2), [1, 2], [True, 1.0, "1"]),
        (Text(r"cuda(:[0-9]+)?"), ["cuda", "cuda:0", "cuda:12"], ["cuda:", "cuda:x", "cpu", 3]),
        (
            ListOf(Interval(float, 0, 1), min_length=1),
            [[0.5], (0, 1)],
            [[], [0.5, 2.0], "0.5", 0.5],
        ),
        (
            TupleOf(Interval(int, 0, 3), length=2),
            [[0, 3], (1, 2)],
            [[0], [0, 1, 2], [0, 4], [0, 1.0]],
        ),
    ],
)
def test_constraints_accept_and_refuse(constraint: Any, accepted: list, refused: list) -> None:
    for value in accepted:
        validate_value("key", value, [constraint])
    for value in refused:
        with pytest.raises(ConfigError, match=r"^key must be .*; got "):
            validate_value("key", value, [constraint])


def test_values_are_normalised() -> None:
    assert validate_value("k", "false", BOOLEAN) is False
    assert validate_value("k", "True", BOOLEAN) is True
    as_float = validate_value("k", 2, [Interval(float, 0, None)])
    assert as_float == 2.0 and isinstance(as_float, float)
    assert validate_value("k", [1, 2], [TupleOf(Interval(int, 0, None))]) == (1, 2)
    assert validate_value("k", (0.5,), [ListOf(Interval(float, 0, 1))]) == [0.5]
    assert validate_value("k", None, (*POSITIVE_INT, None)) is None


@pytest.mark.parametrize(
    "options, message",
    [
        (
            [Interval(float, 0, None, closed="neither")],
            "k must be a finite float in (0, inf); got inf",
        ),
        (
            [Interval(float, 0, None, closed="left", allow_inf=True)],
            "k must be a float in [0, inf]; got nan",
        ),
        (
            [Interval(int, 1, None, closed="left"), None],
            "k must be an int in [1, inf) or None; got 'x'",
        ),
        ([Interval(float, 0, 0.5, closed="left")], "k must be a finite float in [0, 0.5); got 'x'"),
        ([Options("a", "b")], "k must be one of a, b; got 'x'"),
        ([Boolean()], 'k must be a boolean (true/false or the strings "true"/"false"); got \'x\''),
        (
            [TupleOf(Interval(float, 0, 1, closed="left"), length=2)],
            "k must be a list of 2 finite floats in [0, 1); got 'x'",
        ),
    ],
)
def test_messages_name_the_key_and_what_is_allowed_on_one_line(options: list, message: str) -> None:
    bad = math.inf if "inf);" in message else math.nan if "nan" in message else "x"
    with pytest.raises(ConfigError) as error:
        validate_value("k", bad, options)
    assert str(error.value) == message and "\n" not in message


def test_config_error_is_a_value_error_and_a_type_error() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, TypeError)


def test_unknown_keys_get_the_closest_allowed_one() -> None:
    constraints = {"warmup_steps": POSITIVE_INT, "pair_steps": POSITIVE_INT}
    with pytest.raises(ConfigError) as error:
        validate_params(constraints, {"warmup_stpes": 5}, prefix="flip.", where="[flip]")
    assert str(error.value) == (
        "unknown key 'warmup_stpes' (did you mean 'warmup_steps'?) in [flip]; allowed keys: "
        "warmup_steps, pair_steps"
    )
    with pytest.raises(ConfigError, match="pair_steps must be an int"):
        validate_params(constraints, {"pair_steps": 0})


@dataclass
class _Inner:
    steps: int = 1
    parameter_constraints: ClassVar[Constraints] = {"steps": POSITIVE_INT}


@dataclass(frozen=True)
class _Outer:
    flag: bool = False
    inner: _Inner = field(default_factory=_Inner)
    parameter_constraints: ClassVar[Constraints] = {"flag": BOOLEAN, "inner": [Section(_Inner)]}

    def __post_init__(self) -> None:
        validate_fields(self)


def test_sections_and_tables_validate_nested_keys_with_dotted_names() -> None:
    parsed = _Outer(flag="true", inner={"steps": 3})  # type: ignore[arg-type]
    assert parsed == _Outer(True, _Inner(3))
    with pytest.raises(ConfigError, match=r"^inner\.steps must be an int in \[1, inf\); got 0$"):
        _Outer(inner={"steps": 0})  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"unknown key 'step' \(did you mean 'steps'\?\) in \[inner\]"
    ):
        _Outer(inner={"step": 2})  # type: ignore[arg-type]
    table = [Table({"epochs": POSITIVE_INT})]
    with pytest.raises(ConfigError, match=r"^opts\.epochs must be an int"):
        validate_value("opts", {"epochs": -1}, table)
    assert validate_value("opts", {"any": [1]}, [Table()]) == {"any": [1]}


def test_a_field_without_a_declared_constraint_is_a_programming_error() -> None:
    @dataclass
    class Undeclared:
        a: int = 0
        b: int = 0
        parameter_constraints: ClassVar[Constraints] = {"a": POSITIVE_INT}

    with pytest.raises(RuntimeError, match=r"undeclared: \['b'\]"):
        check_declarations(Undeclared)


class _Rule:
    name = "rule"
    parameter_constraints: ClassVar[Constraints] = {"f": POSITIVE_INT, "weighted": BOOLEAN}

    @validated_init
    def __init__(self, f: int = 1, weighted: bool = False) -> None:
        self.f, self.weighted = f, weighted


def test_validated_init_checks_and_normalises_constructor_arguments() -> None:
    assert _Rule(2, "false").weighted is False and _Rule(weighted="true").weighted is True
    with pytest.raises(
        TypeError, match=r"^rule: unknown key 'wieghted' \(did you mean 'weighted'\?\)"
    ):
        _Rule(wieghted=True)
    with pytest.raises(ValueError, match=r"^rule: f must be an int in \[1, inf\); got 0$"):
        _Rule(0)


def test_argparse_type_turns_violations_into_usage_errors() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=argparse_type([Interval(float, 0, None)], float))
    assert parser.parse_args(["--budget", "0.5"]).budget == 0.5
    for bad in ("-1", "nan", "inf", "abc"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["--budget", bad])
        assert exit_info.value.code == 2


@dataclass
class _Renamed:
    assumed_attackers: int = -1
    rounds: int = 1
    parameter_constraints: ClassVar[Constraints] = {
        "assumed_attackers": [Interval(int, -1, None, closed="left")],
        "rounds": POSITIVE_INT,
    }
    renamed_parameters: ClassVar[dict[str, str]] = {"num_attackers": "assumed_attackers"}


def test_a_renamed_key_is_accepted_with_a_deprecation_warning_naming_the_new_key() -> None:
    with pytest.warns(
        DeprecationWarning,
        match=r"defense\.num_attackers is deprecated.*"
        r"use defense\.assumed_attackers",
    ):
        section = validate_value("defense", {"num_attackers": 7, "rounds": 2}, [Section(_Renamed)])
    assert section == _Renamed(assumed_attackers=7, rounds=2)
    with pytest.warns(DeprecationWarning):
        values = check_params(_Renamed, {"num_attackers": 3})
    assert values == {"assumed_attackers": 3}


def test_a_renamed_key_is_validated_under_its_new_name() -> None:
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(
            ConfigError, match=r"defense\.assumed_attackers must be an int in \[-1, inf\); got -5"
        ),
    ):
        validate_value("defense", {"num_attackers": -5}, [Section(_Renamed)])


def test_the_old_and_the_new_name_together_are_an_error() -> None:
    with pytest.raises(ConfigError, match="same setting"):
        validate_params(
            declared(_Renamed),
            {"num_attackers": 1, "assumed_attackers": 2},
            renamed=_Renamed.renamed_parameters,
        )


def test_without_a_declared_rename_the_old_key_is_unknown() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'num_attackers'"):
        validate_params(declared(_Renamed), {"num_attackers": 1})
    assert upgrade_renamed({"rounds": 1}, _Renamed.renamed_parameters) == {"rounds": 1}
