"""Helpers shared by every family's config dataclass.

A family config is a plain ``@dataclass`` that subclasses :class:`BaseConfig`. It validates itself
in ``__post_init__`` with :func:`check`, serialises to a JSON-able dict and back, and rejects unknown
keys with a suggestion, so a typo in a YAML file or a ``key=value`` override fails loudly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from .errors import ConfigError, suggest


def check(ok: bool, field: str, value: Any, allowed: str) -> None:
    """Raise ``ConfigError`` naming ``field``, its bad ``value`` and the ``allowed`` range."""
    if not ok:
        raise ConfigError(f"config field '{field}' = {value!r} is invalid: must be {allowed}")


def check_choice(field: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(
            f"config field '{field}' = {value!r} is invalid: must be one of {', '.join(map(repr, choices))}"
        )


def check_positive_int(field: str, value: Any, minimum: int = 1) -> None:
    check(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        field,
        value,
        f"an integer >= {minimum}",
    )


def check_prob(field: str, value: Any) -> None:
    check(
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0,
        field,
        value,
        "a number in [0, 1)",
    )


@dataclasses.dataclass
class BaseConfig:
    """Base for family configs: dict round trip and strict overrides."""

    family: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        unknown = [k for k in data if k not in cls.field_names()]
        if unknown:
            k = unknown[0]
            raise ConfigError(f"unknown config key '{k}' for {cls.__name__}.{suggest(k, cls.field_names())}")
        return cls(**data)

    def replace(self, **overrides):
        """A copy with ``overrides`` applied (validated, unknown keys rejected)."""
        data = self.to_dict()
        unknown = [k for k in overrides if k not in data]
        if unknown:
            k = unknown[0]
            raise ConfigError(f"unknown config key '{k}' for {type(self).__name__}.{suggest(k, list(data))}")
        data.update(overrides)
        return type(self)(**data)
