"""Typed, range-checked hyperparameters shared by the optimizer and learning-rate-policy registries.

Options arrive from the CLI, config files and the fine-tuning API as a flat mapping
``str -> float | int | bool | str | None | list of numbers``. Each registered optimizer or policy declares
its options as a tuple of :class:`Hyperparameter` objects; :func:`resolve_options` checks a user mapping
against them and fills defaults, so every bad value fails here, before any training starts, with one
message naming the owner, the option, the value and what is allowed::

    InvalidHyperparameter: momentum: momentum must be in [0, 1), got 1.0
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from training.errors import InvalidHyperparameter


class _Required:
    """Marker for an option without a default (the user must give it)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


# ---------------------------------------------------------------------------------------------------------
# Ranges
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """A real interval; ``None`` bounds are unbounded. ``str()`` gives the text used in error messages."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is excluded
    high_open: bool = False  # True: high itself is excluded

    def __contains__(self, x: float) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return not (self.high is not None and (x >= self.high if self.high_open else x > self.high))

    def __str__(self) -> str:
        if self.high is None and self.low is not None:
            return f"{'>' if self.low_open else '>='} {_fmt(self.low)}"
        if self.low is None and self.high is not None:
            return f"{'<' if self.high_open else '<='} {_fmt(self.high)}"
        if self.low is None and self.high is None:
            return "any finite number"
        return f"in {'(' if self.low_open else '['}{_fmt(self.low)}, {_fmt(self.high)}{')' if self.high_open else ']'}"


def _fmt(x: float | None) -> str:
    return "inf" if x is None else f"{x:g}"


POSITIVE = Range(0.0, None, low_open=True)
NON_NEGATIVE = Range(0.0, None)
UNIT_OPEN = Range(0.0, 1.0, high_open=True)  # [0, 1): momenta, betas, decay rates
UNIT_CLOSED = Range(0.0, 1.0)
AT_LEAST_ONE = Range(1.0, None)


# ---------------------------------------------------------------------------------------------------------
# Hyperparameter kinds
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hyperparameter:
    """One named option. Subclasses say how a raw value is checked and converted."""

    name: str
    default: object = REQUIRED
    help: str = ""
    hint: str = field(default="", kw_only=True)  # appended to range errors, e.g. "use sgd for plain SGD"

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def convert(self, value: object, owner: str) -> object:
        raise NotImplementedError

    def _fail(self, owner: str, what: str, value: object, label: str | None = None) -> InvalidHyperparameter:
        hint = f" ({self.hint})" if self.hint else ""
        return InvalidHyperparameter(f"{owner}: {label or self.name} must be {what}, got {value!r}{hint}")

    def _number(self, value: object, owner: str, rng: Range, label: str | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(owner, f"a number {rng}", value, label)
        x = float(value)
        if not math.isfinite(x) or x not in rng:
            raise self._fail(owner, str(rng), value, label)
        return x


@dataclass(frozen=True)
class Float(Hyperparameter):
    range: Range = field(default=Range(), kw_only=True)

    def convert(self, value: object, owner: str) -> float:
        return self._number(value, owner, self.range)


@dataclass(frozen=True)
class Int(Hyperparameter):
    """An integer; an integral float such as ``1e3`` (YAML, JSON) is accepted and stored as int."""

    range: Range = field(default=AT_LEAST_ONE, kw_only=True)

    def convert(self, value: object, owner: str) -> int:
        x = self._number(value, owner, self.range)
        if not x.is_integer():
            raise self._fail(owner, f"an integer {self.range}", value)
        return int(x)


@dataclass(frozen=True)
class Bool(Hyperparameter):
    def convert(self, value: object, owner: str) -> bool:
        if not isinstance(value, bool):
            raise self._fail(owner, "true or false", value)
        return value


@dataclass(frozen=True)
class Choice(Hyperparameter):
    """One of a few strings; the string ``"none"`` stands for ``None`` (config files and CLIs lack null)."""

    choices: tuple[str | None, ...] = field(default=(), kw_only=True)

    def convert(self, value: object, owner: str) -> str | None:
        if value == "none" and None in self.choices:
            return None
        if value not in self.choices:
            allowed = ", ".join("none" if c is None else c for c in self.choices)
            raise self._fail(owner, f"one of {allowed}", value)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Numbers(Hyperparameter):
    """A fixed-length list of numbers, one range per element (``betas``, ``etas``, ``step_sizes``).

    Stored as a list (JSON-friendly); optimizers that want a tuple convert it.
    """

    ranges: tuple[Range, ...] = field(default=(), kw_only=True)
    labels: tuple[str, ...] = field(default=(), kw_only=True)  # element names for messages

    def convert(self, value: object, owner: str) -> list[float]:
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != len(self.ranges):
            raise self._fail(owner, f"a list of {len(self.ranges)} numbers", value)
        return [
            self._number(v, owner, rng, f"{self.name}[{i}] ({label})" if label else f"{self.name}[{i}]")
            for i, (v, rng, label) in enumerate(
                zip(value, self.ranges, self.labels or ("",) * len(self.ranges), strict=True)
            )
        ]


@dataclass(frozen=True)
class IncreasingInts(Hyperparameter):
    """A non-empty, strictly increasing list of integers >= 1 (``milestones``)."""

    def convert(self, value: object, owner: str) -> list[int]:
        what = "a non-empty, strictly increasing list of integers >= 1"
        if not isinstance(value, Sequence) or isinstance(value, str) or not value:
            raise self._fail(owner, what, value)
        out: list[int] = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int | float) or not float(v).is_integer() or v < 1:
                raise self._fail(owner, what, value)
            if out and int(v) <= out[-1]:
                raise self._fail(owner, what, value)
            out.append(int(v))
        return out


# ---------------------------------------------------------------------------------------------------------
# Resolving a user mapping
# ---------------------------------------------------------------------------------------------------------

CrossCheck = Callable[[dict[str, object]], None]
"""Checks relations between already-converted options; raises InvalidHyperparameter."""


def defaults(params: Sequence[Hyperparameter]) -> dict[str, object]:
    """Default of each option; options without one show ``None`` (required, no default)."""
    return {p.name: None if p.required else copy.deepcopy(p.default) for p in params}


def resolve_options(
    owner: str,
    params: Sequence[Hyperparameter],
    options: Mapping[str, object],
    *,
    filled: Mapping[str, object] | None = None,
    check: CrossCheck | None = None,
    separate: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Validate ``options`` against ``params`` and fill defaults.

    ``filled`` supplies run-dependent defaults (e.g. ``max_iter`` from the run's total iterations) that
    take the place of a missing option. ``separate`` maps option names that are passed elsewhere to a hint
    (``{"lr": "learning_rate is a separate argument"}``) so a misplaced name gets a useful message.
    Returns a new dict in declaration order, holding only converted values.
    """
    known = {p.name: p for p in params}
    for key in options:
        if key not in known:
            extra = f"; {separate[key]}" if separate and key in separate else ""
            allowed = ", ".join(sorted(known)) or "none"
            raise InvalidHyperparameter(f"{owner}: unknown option {key!r} (allowed: {allowed}){extra}")
    resolved: dict[str, object] = {}
    for p in params:
        if p.name in options:
            resolved[p.name] = p.convert(options[p.name], owner)
        elif filled is not None and filled.get(p.name) is not None:
            resolved[p.name] = p.convert(filled[p.name], owner)
        elif p.required:
            raise InvalidHyperparameter(f"{owner} needs {p.name} ({p.help})" if p.help else f"{owner} needs {p.name}")
        else:
            resolved[p.name] = copy.deepcopy(p.default)  # lists must not alias the registry's
    if check is not None:
        check(resolved)
    return resolved


def check_number(name: str, value: object, rng: Range) -> float:
    """Check one top-level number (``learning_rate``, ``weight_decay``) and return it as float."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise InvalidHyperparameter(f"{name} must be a finite number {rng}, got {value!r}")
    if float(value) not in rng:
        raise InvalidHyperparameter(f"{name} must be {rng}, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------------------
# The registries' names against the service's lists
# ---------------------------------------------------------------------------------------------------------


def check_same_names(registry: str, registered: Sequence[str], listed: Sequence[str]) -> None:
    """Raise ``RuntimeError`` unless a registry holds exactly the names the service lists, in its order.

    The API checks a job's optimizer and policy against the lists in ``service/jobs/hyperparameters.py``
    (it has no torch, so no registry); a registry run at import keeps the two from drifting apart.
    """
    if list(registered) == list(listed):
        return
    only_registered = [name for name in registered if name not in listed]
    only_listed = [name for name in listed if name not in registered]
    differences = [
        *([f"only in the registry: {', '.join(only_registered)}"] if only_registered else []),
        *([f"only in the service's list: {', '.join(only_listed)}"] if only_listed else []),
    ] or [f"the same names in another order (registry: {', '.join(registered)})"]
    raise RuntimeError(
        f"the {registry} registry and service/jobs/hyperparameters.py differ: {'; '.join(differences)}; "
        "give both the same names in the same order"
    )
