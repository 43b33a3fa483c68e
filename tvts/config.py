"""Typed stage configs: one frozen dataclass per stage, built from a YAML/JSON section.

The Snakefile validates the whole YAML against workflow/schemas/config.schema.yaml
before any job runs; each stage then loads its own section here, so a stage run by
hand gets the same one-line error naming the offending key.
"""
from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
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


def load_yaml(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def require(cond: bool, where: str, key: str, msg: str) -> None:
    """Raise ConfigError naming `where.key` unless `cond` (used by the dataclasses' check())."""
    if not cond:
        raise ConfigError(f"{where}.{key}: {msg}")


@dataclass(frozen=True)
class AlignConfig:
    """ASR cleaning and DTW alignment (PAPER.md, 'ASR alignment')."""

    band_min: int = 32            # R = max(band_frac * len(asr), band_min)
    band_frac: float = 0.1
    outside_cost: float = 1000.0  # DTW cost outside the ±R band
    max_length_ratio: float = 3.0  # denoised/asr word-count ratio beyond which a video is rejected
    max_garbled_fraction: float = 0.3  # share of non-Latin / mis-encoded words beyond which ASR is garbled
    min_asr_words: int = 8

    def check(self, where: str) -> None:
        require(self.band_min >= 1, where, "band_min", "must be >= 1")
        require(0 <= self.band_frac <= 1, where, "band_frac", "must be in [0, 1]")
        require(self.max_length_ratio >= 1, where, "max_length_ratio", "must be >= 1")
        require(0 <= self.max_garbled_fraction <= 1, where, "max_garbled_fraction", "must be in [0, 1]")


@dataclass(frozen=True)
class WindowConfig:
    """Windows of K consecutive clips (PAPER.md, 'Pretext task')."""

    k: int = 4
    clip_lengths: tuple[float, ...] = (3.0, 4.0, 5.0)  # one length per window, drawn at random
    gap_s: float = 1.0
    stride_s: float = 1.0           # spacing of candidate window starts
    allow_overlap: bool = False     # False: greedily keep non-overlapping valid windows
    min_words_per_clip: int = 2
    max_windows_per_video: int = 0  # 0 = no limit
    seed: int = 0

    def check(self, where: str) -> None:
        require(self.k >= 2, where, "k", "must be >= 2")
        require(len(self.clip_lengths) > 0 and min(self.clip_lengths) > 0, where, "clip_lengths", "must be positive")
        require(self.gap_s >= 0, where, "gap_s", "must be >= 0")
        require(self.stride_s > 0, where, "stride_s", "must be > 0")


@dataclass(frozen=True)
class ShardConfig:
    """Frame decoding and WebDataset sharding."""

    frames_per_window: int = 48   # stored frames; the trainer samples 16 TSN-style among them
    short_side: int = 128
    jpeg_quality: int = 90
    val_fraction: float = 0.1
    samples_per_shard: int = 256
    workers: int = 2

    def check(self, where: str) -> None:
        require(self.frames_per_window >= 1, where, "frames_per_window", "must be >= 1")
        require(self.short_side >= 8, where, "short_side", "must be >= 8")
        require(1 <= self.jpeg_quality <= 100, where, "jpeg_quality", "must be in [1, 100]")
        require(0 <= self.val_fraction < 1, where, "val_fraction", "must be in [0, 1)")
        require(self.samples_per_shard >= 1, where, "samples_per_shard", "must be >= 1")
        require(self.workers >= 1, where, "workers", "must be >= 1")


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


def _schema_error_message(err) -> str:
    """One line naming the key: `align_asr.band_mim: unknown key` or `a.b: 'x' is not of type 'integer'`."""
    where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        prefix = f"{where}." if err.absolute_path else ""
        return f"{prefix}{extra[0]}: unknown key (known: {', '.join(sorted(err.schema.get('properties', {})))})"
    if err.validator == "required":
        return f"{where}: {err.message}"
    return f"{where}: {err.message}"


def validate_workflow_config(config: dict, schema_path: str | Path) -> None:
    """Validate the whole workflow config against the JSON schema (YAML file).

    Raises:
        ConfigError: with one line naming the first offending key.
    """
    import jsonschema

    schema = load_yaml(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError(_schema_error_message(errors[0]))
    for name, cls in stage_sections().items():  # ranges and cross-field checks live in the dataclasses
        if name in config:
            from_dict(cls, config[name], name)
    if config.get("grid"):
        from tvts.grid import check_grid_section  # imported here: it imports this module

        check_grid_section(config)
    if "eval" in config:
        from tvts.eval.config import check_eval_section  # imported here: it imports this module

        check_eval_section(config["eval"])


def stage_sections() -> dict[str, type]:
    """Config sections that map onto a stage dataclass."""
    from tvts.data.demo import DemoConfig  # imported here: these modules import this one
    from tvts.select import SelectConfig
    from tvts.train.config import PretrainConfig

    return {"demo": DemoConfig, "align_asr": AlignConfig, "windows": WindowConfig, "shard_clips": ShardConfig,
            "pretrain": PretrainConfig, "select": SelectConfig}
