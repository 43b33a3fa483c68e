"""The whole-workflow config check: what the Snakefile runs before any job.

A workflow config is one YAML file with a section per stage. It is valid when it passes the
JSON schema (workflow/schemas/config.schema.yaml: keys and types), every stage section builds
its dataclass (ranges and cross-field checks), every grid method's merged sections build
theirs, and every evaluation task names a configured dataset of the right kind. The first
problem found is raised as one `ConfigError` line naming the key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema

from tvts.config import ConfigError, from_dict, load_yaml, require
from tvts.data.config import AlignConfig, ShardConfig, WindowConfig
from tvts.data.demo import DemoConfig
from tvts.data.fetch.config import FetchConfig, TranscribeConfig
from tvts.data.formats import CLASSIFICATION, RETRIEVAL
from tvts.eval.config import (AttentiveConfig, FinetuneConfig, LinearConfig, T2VConfig, TemporalConfig, ViewsConfig, ZeroShotV2VConfig,
                              dataset_spec, eval_part)
from tvts.grid import OVERRIDABLE, grid_of, method_config
from tvts.data.pairs import PairShardConfig
from tvts.select_config import SelectConfig
from tvts.train.config import PretrainConfig
from tvts.train.init_config import ImageMAEConfig, TextMLMConfig
from tvts.train.post_config import PostPretrainConfig

# Top-level sections that map onto a stage dataclass.
STAGE_SECTIONS: dict[str, type] = {"demo": DemoConfig, "align_asr": AlignConfig, "windows": WindowConfig,
                                   "shard_clips": ShardConfig, "pretrain": PretrainConfig, "select": SelectConfig,
                                   "init_image_mae": ImageMAEConfig, "init_text_mlm": TextMLMConfig,
                                   "shard_pairs": PairShardConfig, "post_pretrain": PostPretrainConfig,
                                   "fetch": FetchConfig, "transcribe": TranscribeConfig}
# Every `eval.<part>` and the dataclass that checks it.
EVAL_PARTS: dict[str, type] = {"views": ViewsConfig, "zeroshot_v2v": ZeroShotV2VConfig, "linear": LinearConfig,
                               "temporal": TemporalConfig, "attentive": AttentiveConfig, "finetune": FinetuneConfig,
                               "t2v": T2VConfig}
# What kind of dataset each evaluation task needs.
TASK_KINDS = {"zeroshot_v2v": "classification", "linear": "classification", "temporal": "classification",
              "finetune": "classification", "t2v": "retrieval"}


def validate_workflow_config(config: dict, schema_path: str | Path) -> None:
    """Validate a whole workflow config: the schema, then every section's own checks.

    Raises:
        ConfigError: with one line naming the first offending key.
    """
    check_schema(config, load_yaml(schema_path))
    for name, cls in STAGE_SECTIONS.items():
        if name in config:
            from_dict(cls, config[name], name)
    check_shard_parts(config.get("dag") or {})
    if config.get("grid"):
        check_grid_section(config)
    check_inits(config)
    if "eval" in config:
        check_eval_section(config["eval"])
    check_inputs(config)


def check_shard_parts(dag: dict) -> None:
    """Each shard_clips part reads whole align_asr parts, so there are at most as many."""
    parts, align = dag.get("shard_parts"), dag.get("align_parts", 1)
    require(parts is None or parts <= align, "dag", "shard_parts",
            f"must be <= dag.align_parts ({align}): each shard part reads whole alignment parts")


def check_schema(config: dict, schema: dict) -> None:
    """Keys and types against the JSON schema; raises the error of the shallowest offending key."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError(schema_error_message(errors[0]))


def schema_error_message(err: jsonschema.ValidationError) -> str:
    """One line naming the key: `align_asr.band_mim: unknown key` or `a.b: 'x' is not of type 'integer'`."""
    where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        prefix = f"{where}." if err.absolute_path else ""
        return f"{prefix}{extra[0]}: unknown key (known: {', '.join(sorted(err.schema.get('properties', {})))})"
    return f"{where}: {err.message}"


def check_grid_section(config: dict) -> None:
    """Every method's merged `pretrain`/`select` sections go through their dataclasses, so a bad
    override is reported under its own key (e.g. `grid.methods.videomae.pretrain.model: ...`)."""
    grid = grid_of(config)
    for method in grid.methods:
        merged = method_config(config, method, grid.seeds[0])
        for name in OVERRIDABLE:
            try:
                from_dict(STAGE_SECTIONS[name], merged[name], name)
            except ConfigError as err:
                raise ConfigError(f"grid.methods.{method}: {err}") from None


def check_inits(config: dict) -> None:
    """With `dag.inits` the workflow sets `pretrain.init` and `pretrain.model.text.model` itself
    (tvts.grid.with_inits), so the config leaves them at random and scratch: init_text_mlm trains
    the encoder that the scratch keys describe."""
    if not (config.get("dag") or {}).get("inits", False):
        return
    pretrain = from_dict(PretrainConfig, config.get("pretrain"), "pretrain")
    require(pretrain.init == "random", "pretrain", "init", "must be random with dag.inits (the image MAE replaces it)")
    require(pretrain.model.text.model == "scratch", "pretrain.model.text", "model",
            "must be scratch with dag.inits (init_text_mlm trains the encoder of its scratch keys)")


def check_eval_section(section: dict[str, Any]) -> None:
    """Every part, every dataset, and that each task lists configured datasets of the right kind.

    Raises:
        ConfigError: naming the first offending key.
    """
    for name, cls in EVAL_PARTS.items():
        eval_part(section, name, cls)
    for name in section.get("datasets") or {}:
        dataset_spec(section, name)
    for task, names in (section.get("tasks") or {}).items():
        allowed = CLASSIFICATION if TASK_KINDS[task] == "classification" else RETRIEVAL
        for name in names:
            fmt = dataset_spec(section, name).format
            require(fmt in allowed, f"eval.tasks.{task}", name,
                    f"is a {fmt} dataset; {task} needs a {TASK_KINDS[task]} format ({', '.join(allowed)})")


# A list larger than this is not read when the DAG is built (the paper's has millions of rows):
# its split check would cost every `snakemake` call seconds.
_SPLIT_CHECK_MAX_BYTES = 10 * 2**20


def check_inputs(config: dict) -> None:
    """The raw inputs exist, and the list gives both splits videos, wherever the data is here.

    A path whose folder exists but which itself does not (a typo, a file not unpacked yet) is
    an error now, not when its job fails minutes in. A path whose folder is absent is data that
    lives on another machine (config/paper.yaml on a laptop): the DAG still builds, so
    `snakemake -n` works anywhere, and a job that reads it fails with 'not found'.

    Raises:
        ConfigError: naming the key of the first missing input or empty split.
    """
    video_list = (config.get("data") or {}).get("yttemporal_list")
    fetching = (config.get("dag") or {}).get("fetch", False)
    if fetching:
        check_fetch(config)
    if video_list and not fetching:  # with dag.fetch the join writes the list
        check_present(video_list, "data.yttemporal_list")
    for name, spec in ((config.get("eval") or {}).get("datasets") or {}).items():
        if isinstance(spec, dict) and spec.get("root"):
            check_present(spec["root"], f"eval.datasets.{name}.root")
    if video_list and Path(video_list).is_file() and Path(video_list).stat().st_size <= _SPLIT_CHECK_MAX_BYTES:
        check_splits(video_list, from_dict(ShardConfig, config.get("shard_clips"), "shard_clips").val_fraction)


def check_fetch(config: dict) -> None:
    """With dag.fetch: ids to fetch, and a Whisper model where transcribe is on (both may live on
    another machine: only a missing file in an existing folder is an error, as in check_inputs)."""
    fetch = config.get("fetch") or {}
    require(bool(fetch.get("ids")), "fetch", "ids", "must name the release's jsonl files or an id list with dag.fetch")
    check_present(fetch["ids"], "fetch.ids")
    if (config.get("dag") or {}).get("transcribe", False):
        model = (config.get("transcribe") or {}).get("model")
        require(bool(model), "transcribe", "model", "must name a local Whisper model folder with dag.transcribe")
        check_present(model, "transcribe.model")


def check_present(path: str, key: str) -> None:
    """Raises ConfigError when `path` is missing but its folder exists (see `check_inputs`)."""
    if Path(path).parent.is_dir() and not Path(path).exists():
        raise ConfigError(f"{key}: {path} not found (its folder {Path(path).parent} exists)")


def check_splits(video_list: str, val_fraction: float) -> None:
    """At least one listed video falls in each split (by the hash shard_clips splits with).

    Raises:
        ConfigError: `data.yttemporal_list` when the list does not parse, or
            `shard_clips.val_fraction` when a split would be empty.
    """
    from tvts.data.formats.yttemporal import read_video_list  # deferred: parse time stays short
    from tvts.data.shards import split_of

    try:
        ids = {entry.video_id for entry in read_video_list(video_list) if not entry.invalid}
    except ValueError as err:
        raise ConfigError(f"data.yttemporal_list: {err}") from None
    splits = {split_of(video_id, val_fraction) for video_id in ids}
    for split in ("train", "val"):
        if ids and split not in splits:
            raise ConfigError(f"shard_clips.val_fraction: none of the {len(ids)} listed videos falls in the "
                              f"{split} split with val_fraction {val_fraction:g} ({video_list})")
