"""Validation shared by the frozen parameter records (fusion thresholds of every family, tracker)."""

from __future__ import annotations

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
