"""Command line shared by the evaluation stages (`eval_<task>`).

Every evaluation stage takes `--model`, `--dataset` and `--out` and reads the dataset spec, the
views and its own part (`eval.<task>`) of the `eval` section. The two fine-tuning stages
(eval_finetune, eval_t2v) start the same way, as one process or one rank of torchrun: `run_tuning`.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable

import torch

from tvts.eval.config import DatasetSpec, ViewsConfig, dataset_spec, eval_part, load_eval_section
from tvts.stages.common import add_common_args
from tvts.train import distributed as dist

DATASET_HELP = "a name under eval.datasets (e.g. ssv2)"


def eval_parser(prog: str, description: str, task: str, add_stage_args: Callable[..., None],
                dataset_help: str = DATASET_HELP, raw_description: bool = False) -> argparse.ArgumentParser:
    """An evaluation stage's parser: `add_eval_args`, then the stage's own arguments, then the common ones.

    Args:
        prog, description: the command's name and help text (the stage module's docstring).
        task: the evaluation's name. add_stage_args: `add_feature_args` or `add_tuning_args`.
        dataset_help: see `add_eval_args`. raw_description: keep the description's line breaks (examples).
    """
    fmt = argparse.RawDescriptionHelpFormatter if raw_description else argparse.HelpFormatter
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=fmt)
    add_eval_args(p, task, dataset_help)
    add_stage_args(p, task)
    add_common_args(p)
    return p


def add_eval_args(p: argparse.ArgumentParser, task: str, dataset_help: str = DATASET_HELP) -> None:
    """--model, --dataset and --out: what every evaluation stage takes first.

    Args:
        p: the stage's parser.
        task: the evaluation's name, as in results/<exp>/eval/<task>/<dataset>.json.
        dataset_help: which datasets the stage accepts (help text).
    """
    p.add_argument("--model", required=True, help="checkpoint (results/<exp>/select/best.pt)")
    p.add_argument("--dataset", required=True, help=dataset_help)
    p.add_argument("--out", required=True, help=f"output JSON (results/<exp>/eval/{task}/<dataset>.json)")


def add_feature_args(p: argparse.ArgumentParser, task: str = "") -> None:
    """--features and --device: the stages on frozen features (eval_linear, eval_zeroshot_v2v); `task` unused."""
    p.add_argument("--features", default=None, help="feature cache folder (results/<exp>/features); none = no cache")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")


def add_tuning_args(p: argparse.ArgumentParser, task: str) -> None:
    """--work and --cpu: the fine-tuning stages (eval_finetune, eval_t2v)."""
    p.add_argument("--work", required=True,
                   help=f"checkpoint folder of the fine-tuning (results/<exp>/{task}/<dataset>)")
    p.add_argument("--cpu", action="store_true", help="ignore any GPU")


def load_stage_config(args: argparse.Namespace, task: str, cls: type) -> tuple[DatasetSpec, ViewsConfig, Any]:
    """The dataset spec, the views and `eval.<task>` (as `cls`) from the stage's --config/--config-json.

    Returns:
        (spec of args.dataset, ViewsConfig, cls instance); a ConfigError names any bad key.
    """
    section = load_eval_section(args.config_path, args.config_json)
    return dataset_spec(section, args.dataset), eval_part(section, "views", ViewsConfig), eval_part(section, task, cls)


def run_tuning(job_cls: type, args: argparse.Namespace) -> int:
    """A fine-tuning stage after parsing (`job_cls`: a tvts.eval.job.TuningJob): one process, or
    this rank of a torchrun job."""
    spec, views, cfg = load_stage_config(args, job_cls.TASK, job_cls.CONFIG)
    env = dist.init_distributed(use_cuda=False if args.cpu else None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        job_cls(args, spec, views, cfg, env).run()
    finally:
        dist.cleanup()
    return 0
