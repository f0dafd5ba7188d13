"""Model registry (timm style): ``create_model(name, **overrides)`` and ``list_models()``.

A *family* registers its config dataclass and a builder ``config -> nn.Module``; a *preset* is a
name plus config values within a family. ``create_model`` looks the preset up, applies the
overrides (unknown keys and bad values raise ``ConfigError`` naming the field) and builds it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, UnknownModelError, suggest


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type
    build: Callable[[Any], Any]


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    values: dict
    description: str = ""


_FAMILIES: dict[str, Family] = {}
_PRESETS: dict[str, Preset] = {}


def register_family(name: str, config_cls: type, build: Callable[[Any], Any]) -> None:
    _FAMILIES[name] = Family(name, config_cls, build)


def register_model(name: str, family: str, description: str = "", **values: Any) -> None:
    if name in _PRESETS:
        raise ValueError(f"model name {name!r} registered twice")
    _PRESETS[name] = Preset(name, family, dict(values), description)


def _ensure_loaded() -> None:
    from . import models  # noqa: F401  (importing registers the families and presets)


def list_models(pattern: str | None = None, family: str | None = None) -> list[str]:
    """Registered preset names, sorted; ``pattern`` is a shell glob such as ``'lm-*'``."""
    _ensure_loaded()
    names = sorted(_PRESETS)
    if family is not None:
        names = [n for n in names if _PRESETS[n].family == family]
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def get_preset(name: str) -> Preset:
    _ensure_loaded()
    if name not in _PRESETS:
        raise UnknownModelError(
            f"unknown model '{name}'.{suggest(name, _PRESETS)} Run `polyformer list` to see all models."
        )
    return _PRESETS[name]


def get_config(name: str, **overrides: Any):
    """The config dataclass for preset ``name`` with ``overrides`` applied and validated."""
    preset = get_preset(name)
    cls = _FAMILIES[preset.family].config_cls
    fields = cls.field_names()
    for k in overrides:
        if k not in fields:
            raise ConfigError(f"unknown config key '{k}' for model '{name}'.{suggest(k, fields)}")
    return cls(**{**preset.values, **overrides})


def create_model(name: str, **overrides: Any):
    """Build preset ``name`` (see ``list_models()``) with config ``overrides``."""
    config = get_config(name, **overrides)
    return build_model(config)


def build_model(config):
    _ensure_loaded()
    return _FAMILIES[config.family].build(config)


def config_from_dict(family: str, config: dict):
    """The typed config of ``family`` from a plain dict (as stored in a checkpoint's config.json)."""
    _ensure_loaded()
    if family not in _FAMILIES:
        raise ConfigError(f"unknown model family '{family}'.{suggest(family, _FAMILIES)}")
    if not isinstance(config, dict):
        raise ConfigError(f"config for family '{family}' must be a JSON object")
    return _FAMILIES[family].config_cls.from_dict(config)


def model_from_config_dict(family: str, config: dict):
    return build_model(config_from_dict(family, config))
