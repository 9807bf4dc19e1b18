"""Validation shared by the frozen parameter records (fusion thresholds of every family, tracker):
one message per kind of refusal, naming the field."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from panoptic_ros.errors import ConfigError

T = TypeVar("T")


def from_mapping(cls: type[T], values: Mapping[str, object], what: str) -> T:
    """``cls`` (a dataclass) with its defaults overridden by ``values``.

    Raises:
        ConfigError: a key is not a field of ``cls`` (the message names ``what`` and lists the valid
            keys), or the record's own checks refuse a value.
    """
    valid = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(str(key) for key in values if key not in valid)
    if unknown:
        raise ConfigError(f"unknown {what} parameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return cls(**values)  # type: ignore[arg-type]


def check_int(name: str, value: Any, *, minimum: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


def check_number(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    finite: bool = True,
) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a number (not a bool, not NaN; finite unless
    ``finite`` is False) in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if finite and not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must lie in {bracket}{low}, {high}], got {value}")


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(allowed)}")


def json_object(text: str, what: str, error: type[Exception] = ConfigError) -> Mapping[str, Any]:
    """``text`` parsed as a JSON object, or ``error`` saying that ``what`` is not valid JSON or not
    an object."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{what} is not valid JSON: {err}") from err
    if not isinstance(data, Mapping):
        raise error(f"{what} must hold a JSON object, got {type(data).__name__}")
    return data
