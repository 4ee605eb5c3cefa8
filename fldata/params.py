"""Declared parameter constraints, checked in one place (scikit-learn's ``_parameter_constraints``).

Every configurable class lists, once, what each of its parameters may be: a mapping from the
parameter name to a list of constraints, any one of which a value must satisfy::

    parameter_constraints = {
        "lr": [Interval(float, 0, None, closed="neither")],         # finite float > 0
        "batch_size": [Interval(int, 1, None, closed="left"), None],  # int >= 1, or None
        "weights": [Options("equal", "samples")],
        "hardening": [Boolean()],
    }

:func:`validate_params` checks a mapping of values against such a declaration and returns the
values normalised (an int for a float field becomes a float, the strings ``"true"`` / ``"false"``
become booleans, a list for a tuple field becomes a tuple). Every violation raises
:class:`ConfigError` with one line naming the (dotted) key and what is allowed, e.g.
``attack.scale must be a finite float in (0, inf); got inf``.

Rules shared by all configs (fliplab issue 11, item 4):

* numbers are finite unless a constraint says ``allow_inf=True``; NaN is never accepted;
* a boolean is ``True`` / ``False`` or one of the strings ``"true"`` / ``"false"`` (any case),
  never a number or another string (``bool("false")`` is True, which is how such typos slip);
* an int field takes an integer, not a float and not a boolean; a float field takes an int too.

A renamed parameter keeps working for one release: the owner declares
``renamed_parameters = {"old_name": "new_name"}``, and :func:`validate_params` (given
``renamed=``; :func:`check_params` and :class:`Section` pass the owner's) accepts the old key as
the new one with a :class:`DeprecationWarning` that names both; giving both is an error.

This module is numpy- and torch-free: fldata, linear_fl, theory and deepfl all import it.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import inspect
import math
import numbers
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "BOOLEAN",
    "NON_NEGATIVE_FLOAT",
    "NON_NEGATIVE_INT",
    "RENAMED_KEY_WARNING",
    "POSITIVE_FLOAT",
    "POSITIVE_INT",
    "UNIT_FLOAT",
    "Boolean",
    "ConfigError",
    "Constraint",
    "Constraints",
    "Interval",
    "ListOf",
    "Options",
    "Section",
    "Table",
    "Text",
    "TupleOf",
    "argparse_type",
    "check_declarations",
    "check_params",
    "declared",
    "describe",
    "renamed_parameters",
    "unknown_key_error",
    "upgrade_renamed",
    "validate_fields",
    "validate_params",
    "validate_value",
    "validated_init",
]


class ConfigError(ValueError, TypeError):
    """A config key or value is not allowed; the one-line message names the key and what is.

    A ValueError (bad value) and, as scikit-learn's ``InvalidParameterError``, a TypeError
    (an unknown keyword argument to a constructor used to raise TypeError).
    """


class _Rejected(Exception):
    """Internal: a value does not satisfy one constraint (others may still accept it)."""


class Constraint:
    """One admissible kind of value; :meth:`check` returns the value normalised."""

    def check(self, value: Any, key: str) -> Any:
        """The normalised value; raises ``_Rejected`` if the constraint does not hold."""
        raise NotImplementedError

    def describe(self) -> str:
        """What the constraint allows, as a phrase ("an int in [1, inf)")."""
        raise NotImplementedError


Constraints = Mapping[str, Sequence["Constraint | None"]]

_CLOSED = Literal["both", "left", "right", "neither"]


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Interval(Constraint):
    """A number of type ``kind`` (int or float) in an interval; ``None`` ends are unbounded.

    ``closed`` says which ends belong to the interval. Floats must be finite unless
    ``allow_inf`` (an infinite end then belongs to the interval); NaN never passes.
    """

    kind: type
    low: float | None
    high: float | None
    closed: _CLOSED = "both"
    allow_inf: bool = False

    def check(self, value: Any, key: str) -> Any:
        if self.kind is int:
            if not _is_integer(value):
                raise _Rejected
            value = int(value)
        else:
            if not _is_real(value) or math.isnan(value):
                raise _Rejected
            value = float(value)
            if math.isinf(value) and not self.allow_inf:
                raise _Rejected
        if not self._inside(value):
            raise _Rejected
        return value

    def _inside(self, value: float) -> bool:
        low_ok = self.low is None or (
            value >= self.low if self.closed in ("both", "left") else value > self.low
        )
        high_ok = self.high is None or (
            value <= self.high if self.closed in ("both", "right") else value < self.high
        )
        return low_ok and high_ok

    def describe(self) -> str:
        if self.kind is int:
            noun = "an int"
        else:
            noun = "a float" if self.allow_inf else "a finite float"
        if self.low is None and self.high is None:
            return noun
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        if self.allow_inf:
            left = "[" if self.low is None else left
            right = "]" if self.high is None else right
        low = "-inf" if self.low is None else self._number(self.low)
        high = "inf" if self.high is None else self._number(self.high)
        return f"{noun} in {left}{low}, {high}{right}"

    def _number(self, end: float) -> str:
        return str(int(end)) if self.kind is int else f"{end:g}"


class Options(Constraint):
    """One of a fixed set of values (compared by type and value, so ``True`` is not ``1``).

    ``Options("a", "b")`` lists them; ``Options(source=f)`` asks ``f()`` for the
    values at check time (a registry that should not be imported before it is needed).
    """

    def __init__(self, *values: Any, source: Callable[[], Iterable[Any]] | None = None) -> None:
        self._values = tuple(values)
        self._source = source

    @property
    def values(self) -> tuple[Any, ...]:
        """The allowed values."""
        return tuple(self._source()) if self._source is not None else self._values

    def check(self, value: Any, key: str) -> Any:
        if any(type(value) is type(option) and value == option for option in self.values):
            return value
        raise _Rejected

    def describe(self) -> str:
        return "one of " + ", ".join(str(option) for option in self.values)


class Boolean(Constraint):
    """``True`` / ``False``, or the strings ``"true"`` / ``"false"`` (any case), parsed."""

    def check(self, value: Any, key: str) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _Rejected

    def describe(self) -> str:
        return 'a boolean (true/false or the strings "true"/"false")'


@dataclasses.dataclass(frozen=True)
class Text(Constraint):
    """A string, optionally matching ``pattern`` in full (``description`` says what it means)."""

    pattern: str | None = None
    description: str = "a string"

    def check(self, value: Any, key: str) -> Any:
        if not isinstance(value, str):
            raise _Rejected
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            raise _Rejected
        return value

    def describe(self) -> str:
        return self.description


@dataclasses.dataclass(frozen=True)
class ListOf(Constraint):
    """A list (or tuple) of items each satisfying ``item``, at least ``min_length`` long; a list."""

    item: Constraint
    min_length: int = 0

    def check(self, value: Any, key: str) -> Any:
        if not isinstance(value, (list, tuple)) or len(value) < self.min_length:
            raise _Rejected
        return [self.item.check(entry, key) for entry in value]

    def describe(self) -> str:
        least = {0: "a list of", 1: "a non-empty list of"}.get(
            self.min_length, f"a list of at least {self.min_length}"
        )
        return f"{least} {_plural(self.item.describe())}"


@dataclasses.dataclass(frozen=True)
class TupleOf(Constraint):
    """A list or tuple of items each satisfying ``item`` (``length`` of them if given); a tuple."""

    item: Constraint
    length: int | None = None
    min_length: int = 0

    def check(self, value: Any, key: str) -> Any:
        if not isinstance(value, (list, tuple)) or len(value) < self.min_length:
            raise _Rejected
        if self.length is not None and len(value) != self.length:
            raise _Rejected
        return tuple(self.item.check(entry, key) for entry in value)

    def describe(self) -> str:
        if self.length is not None:
            return f"a list of {self.length} {_plural(self.item.describe())}"
        least = " non-empty" if self.min_length else ""
        return f"a{least} list of {_plural(self.item.describe())}"


@dataclasses.dataclass(frozen=True)
class Table(Constraint):
    """A mapping (a TOML table / JSON object). With ``constraints``, its keys are validated too
    (errors name ``key.subkey``); without, it is copied as is and checked elsewhere."""

    constraints: Constraints | None = None

    def check(self, value: Any, key: str) -> Any:
        if not isinstance(value, Mapping):
            raise _Rejected
        if self.constraints is None:
            return _deep_copy(value)
        return validate_params(self.constraints, value, prefix=f"{key}.", where=key)

    def describe(self) -> str:
        return "a table of keys (dict)"


@dataclasses.dataclass(frozen=True)
class Section(Constraint):
    """A nested config dataclass ``cls``: a mapping of its fields (missing ones keep their
    defaults) or an instance; validated against ``cls.parameter_constraints``."""

    cls: type

    def check(self, value: Any, key: str) -> Any:
        if isinstance(value, self.cls):
            validate_fields(value, prefix=f"{key}.")
            return value
        if not isinstance(value, Mapping):
            raise _Rejected
        values = validate_params(
            declared(self.cls),
            value,
            prefix=f"{key}.",
            where=f"[{key}]",
            renamed=renamed_parameters(self.cls),
        )
        return self.cls(**values)

    def describe(self) -> str:
        return f"a table of {self.cls.__name__} keys"


# The constraint lists most fields use (tuples: shared, never mutated); extend with ``(*X, None)``.
POSITIVE_INT: tuple[Constraint, ...] = (Interval(int, 1, None, closed="left"),)
NON_NEGATIVE_INT: tuple[Constraint, ...] = (Interval(int, 0, None, closed="left"),)
POSITIVE_FLOAT: tuple[Constraint, ...] = (Interval(float, 0, None, closed="neither"),)
NON_NEGATIVE_FLOAT: tuple[Constraint, ...] = (Interval(float, 0, None, closed="left"),)
UNIT_FLOAT: tuple[Constraint, ...] = (Interval(float, 0, 1, closed="both"),)
BOOLEAN: tuple[Constraint, ...] = (Boolean(),)


def _plural(phrase: str) -> str:
    """'an int in [0, 3]' -> 'ints in [0, 3]' (for list descriptions)."""
    for article in ("an ", "a "):
        if phrase.startswith(article):
            head, _, rest = phrase[len(article) :].partition(" in ")
            return f"{head}s in {rest}" if rest else f"{head}s"
    return phrase


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value


def declared(owner: type) -> Constraints:
    """``owner.parameter_constraints``, the declaration of a config class or component."""
    constraints: Constraints = getattr(owner, "parameter_constraints")  # noqa: B009
    return constraints


def renamed_parameters(owner: type) -> Mapping[str, str]:
    """``owner.renamed_parameters`` (``{old name: new name}``; empty if it declares none)."""
    renamed: Mapping[str, str] = getattr(owner, "renamed_parameters", {})
    return renamed


# Every renamed-key warning matches this (fldata.cli.main_guard shows them on the CLIs).
RENAMED_KEY_WARNING = r".* is deprecated and will be removed in the next release; use .*"


def upgrade_renamed(
    values: Mapping[str, Any], renamed: Mapping[str, str], *, prefix: str = ""
) -> dict[str, Any]:
    """``values`` with every old key of ``renamed`` replaced by its new name, warning once per key
    (``DeprecationWarning``: ``'defense.num_attackers' is deprecated; use 'defense.x'``).

    Raises:
        ConfigError: both the old and the new name are given.
    """
    upgraded = dict(values)
    for old, new in renamed.items():
        if old not in upgraded:
            continue
        if new in upgraded:
            raise ConfigError(
                f"{prefix}{old} and {prefix}{new} are the same setting ({prefix}{old} is its "
                f"deprecated name); give only {prefix}{new}"
            )
        warnings.warn(
            f"{prefix}{old!s} is deprecated and will be removed in the next release; use "
            f"{prefix}{new} (same meaning)",
            DeprecationWarning,
            stacklevel=3,
        )
        upgraded = {(new if key == old else key): value for key, value in upgraded.items()}
    return upgraded


def describe(options: Sequence[Constraint | None]) -> str:
    """What a list of constraints allows: 'an int in [1, inf) or None'."""
    return " or ".join("None" if option is None else option.describe() for option in options)


def validate_value(key: str, value: Any, options: Sequence[Constraint | None]) -> Any:
    """``value`` normalised by the first constraint in ``options`` that accepts it.

    Raises:
        ConfigError: ``"{key} must be {what is allowed}; got {value!r}"`` if none does.
    """
    for option in options:
        if option is None:
            if value is None:
                return None
            continue
        try:
            return option.check(value, key)
        except _Rejected:
            continue
    raise ConfigError(f"{key} must be {describe(options)}; got {value!r}")


def unknown_key_error(key: str, allowed: Sequence[str], *, where: str = "") -> ConfigError:
    """``unknown key 'warmup_stpes' (did you mean 'warmup_steps'?) in WHERE; allowed keys: ...``."""
    message = f"unknown key {key!r}"
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    if where:
        message += f" in {where}"
    listed = ", ".join(allowed) if allowed else "none (it takes no parameters)"
    return ConfigError(f"{message}; allowed keys: {listed}")


def validate_params(
    constraints: Constraints,
    values: Mapping[str, Any],
    *,
    prefix: str = "",
    where: str = "",
    renamed: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Check every entry of ``values`` against its declared constraints; return them normalised.

    Args:
        constraints: the declaration, ``{name: [constraint, ...]}`` (``None`` allows None).
        values: the given values (a subset of the declared names; others keep their defaults).
        prefix: prepended to names in messages (``"defense.client_params."``).
        where: what is being configured, for the unknown-key message (``"[attack]"``;
            default: the prefix).
        renamed: deprecated names still accepted, ``{old: new}`` (:func:`upgrade_renamed`).

    Raises:
        ConfigError: an unknown key (with the closest allowed one) or a value outside its
            constraints; the first one found, in the order of ``values``.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"{where or prefix.rstrip('.') or 'parameters'} must be a table of keys (dict); got "
            f"{values!r}"
        )
    if renamed:
        values = upgrade_renamed(values, renamed, prefix=prefix)
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in constraints:
            raise unknown_key_error(key, list(constraints), where=where or prefix.rstrip("."))
        checked[key] = validate_value(f"{prefix}{key}", value, constraints[key])
    return checked


def check_declarations(cls: type, constraints: Constraints | None = None) -> None:
    """Raise ``RuntimeError`` unless a dataclass declares constraints for exactly its fields."""
    keys = set(declared(cls) if constraints is None else constraints)
    names = {item.name for item in dataclasses.fields(cls)}
    if keys != names:
        raise RuntimeError(
            f"{cls.__name__}.parameter_constraints must cover exactly its fields; undeclared: "
            f"{sorted(names - keys)}, not fields: {sorted(keys - names)}"
        )


def validate_fields(obj: Any, *, prefix: str = "") -> None:
    """Validate every field of dataclass instance ``obj`` and store the normalised values
    (frozen dataclasses too: this is meant for ``__post_init__``)."""
    cls = type(obj)
    check_declarations(cls)
    for item in dataclasses.fields(obj):
        value = getattr(obj, item.name)
        options = declared(cls)[item.name]
        checked = validate_value(f"{prefix}{item.name}", value, options)
        if checked is not value:
            object.__setattr__(obj, item.name, checked)


def check_params(
    owner: type,
    values: Mapping[str, Any],
    *,
    prefix: str = "",
    where: str = "",
    exclude: Iterable[str] = (),
) -> dict[str, Any]:
    """``values`` checked against ``owner.parameter_constraints`` (minus ``exclude``), then
    against ``owner.check_consistency(values, prefix)`` when the owner defines cross-field rules;
    returns them normalised. ``owner`` is a config class or a component (defense, attacker)."""
    skipped = set(exclude)
    constraints = {
        name: options for name, options in declared(owner).items() if name not in skipped
    }
    checked = validate_params(
        constraints, values, prefix=prefix, where=where, renamed=renamed_parameters(owner)
    )
    consistency = getattr(owner, "check_consistency", None)
    if consistency is not None:
        consistency(checked, prefix)
    return checked


def validated_init(init: Callable[..., None]) -> Callable[..., None]:
    """Decorate a constructor so that its arguments are checked against
    ``type(self).parameter_constraints`` (and normalised) before its body runs.

    An unknown keyword or a bad value raises :class:`ConfigError` (also a TypeError, as an
    unknown keyword did before), prefixed by the class's registry ``name`` if it has one.
    """
    names = [name for name in inspect.signature(init).parameters if name != "self"]

    @functools.wraps(init)
    def checked_init(self: Any, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        if len(args) > len(names) or set(names[: len(args)]) & set(kwargs):
            raise TypeError(f"{cls.__name__}: give at most {len(names)} arguments, each once")
        values = {**dict(zip(names, args, strict=False)), **kwargs}  # args may be fewer than names
        try:
            checked = validate_params(declared(cls), values)
        except ConfigError as error:
            raise ConfigError(f"{getattr(cls, 'name', cls.__name__)}: {error}") from None
        init(self, **checked)

    return checked_init


def argparse_type(
    options: Sequence[Constraint | None], parse: Callable[[str], Any]
) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses the text with ``parse`` and checks ``options``; a bad
    value becomes argparse's usage error (exit 2): ``argument --seed: must be an int in ...``."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {describe(options)}; got {text!r}") from None
        try:
            return validate_value("value", value, options)
        except ConfigError:
            raise argparse.ArgumentTypeError(f"must be {describe(options)}; got {text!r}") from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert
