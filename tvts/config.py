"""Config loading: a YAML/JSON section becomes a frozen, typed dataclass, or one error naming the key.

This module is a leaf: it imports nothing from `tvts`. The dataclasses live next to the code
they configure and call `require` in their `check`; `tvts.workflow_config` checks a whole
workflow config (the schema, every stage section, the grid and the eval section) before any
job runs, so a stage run by hand and the Snakefile report the same one-line error.
"""
from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config: the message names the key."""


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_type_ok(v, args[0]) for v in value) if args else isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def from_dict(cls: type[T], data: dict | None, where: str) -> T:
    """Build the frozen dataclass `cls` from a mapping, rejecting unknown keys and wrong types.

    Args:
        cls: a dataclass type.
        data: the config section (None means all defaults).
        where: the section's dotted name, used in error messages.
    Returns:
        An instance of `cls`.
    Raises:
        ConfigError: naming the first unknown, missing or mistyped key.
    """
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(sorted(known))})")
    kwargs = {}
    for name, f in known.items():
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"{where}.{name}: missing required key")
            continue
        value = data[name]
        if is_dataclass(hints[name]) and isinstance(value, dict):  # a nested section
            kwargs[name] = from_dict(hints[name], value, f"{where}.{name}")
            continue
        if not _type_ok(value, hints[name]):
            raise ConfigError(f"{where}.{name}: expected {_hint_name(hints[name])}, got {value!r}")
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(where)
    return obj


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases: a few lines of `*name` nest into billions of nodes
    (an "alias bomb") that hang whatever walks the config. No config needs them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            mark = event.start_mark
            raise ConfigError(f"{mark.name}:{mark.line + 1}: YAML alias *{event.anchor} refused: "
                              "configs may not use anchors and aliases; write the value out")
        return super().compose_node(parent, index)


def load_yaml(path: str | Path) -> dict:
    """A YAML config file as a mapping (safe loading, no aliases).

    Raises:
        ConfigError: naming the file (and line) for an alias or a top level that is no mapping.
    """
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=_NoAliasLoader) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def require(cond: bool, where: str, key: str, msg: str) -> None:
    """Raise ConfigError naming `where.key` unless `cond` (used by the dataclasses' check())."""
    if not cond:
        raise ConfigError(f"{where}.{key}: {msg}")


def load_raw_config(config_path: str | None = None, config_json: str | None = None) -> dict[str, Any]:
    """The raw mapping of section name to section, as a stage's `--config-json` / `--config` give it.

    Args:
        config_path: the full YAML config file.
        config_json: a JSON mapping of section name to section (what the rules pass); wins over the file.

    Returns:
        The parsed mapping; {} when neither is given.
    """
    if config_json is not None:
        return json.loads(config_json)
    if config_path is not None:
        return load_yaml(config_path)
    return {}


def load_sections(spec: dict[str, type], config_path: str | None = None,
                  config_json: str | None = None) -> dict[str, Any]:
    """Load several sections at once: `{"align_asr": AlignConfig, ...}` -> instances.

    `config_json` holds a mapping of section name to section (what the rules pass);
    `config_path` is the full YAML config file.
    """
    raw = load_raw_config(config_path, config_json)
    return {name: from_dict(cls, raw.get(name), name) for name, cls in spec.items()}
