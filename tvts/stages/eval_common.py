"""Command line and wiring shared by the evaluation stages (`eval_<task>`).

Every evaluation stage takes `--model`, `--dataset` and `--out`, reads the dataset spec, the
views and its own part (`eval.<task>`) of the `eval` section, and opens one MLflow run tagged
with its task and dataset. The two fine-tuning stages (eval_finetune, eval_t2v) also share how
they start (one process or torchrun), resume their MLflow run, and list their rejects: `TuningRun`.
"""
from __future__ import annotations

import argparse
import contextlib
from typing import Any, Callable, ClassVar

import torch

from tvts import io, tracking
from tvts.eval.config import DatasetSpec, ViewsConfig, dataset_spec, eval_part, load_dataset_split, load_eval_section
from tvts.eval.features import add_rejects
from tvts.stages.common import add_common_args, setup_logging
from tvts.train import distributed as D

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


def eval_stage_run(stage: str, task: str, args: argparse.Namespace, spec: DatasetSpec, views: ViewsConfig, cfg,
                   world_size: int | None = None,
                   resume_run_id: str | None = None) -> contextlib.AbstractContextManager[tracking.StageRun]:
    """The stage's MLflow run: the eval parts it read and the checkpoint as params, task and dataset as tags.

    Args:
        stage, task: e.g. "eval_linear", "linear". args: the parsed command line.
        spec, views, cfg: what `load_stage_config` returned.
        world_size: logged as a param when given (the distributed stages).
        resume_run_id: reopen this run (a resumed fine-tuning).
    """
    params: dict[str, Any] = {"eval": {"dataset": args.dataset, "spec": spec, "views": views, task: cfg},
                              "model": args.model}
    if world_size is not None:
        params["world_size"] = world_size
    return tracking.stage_run(stage, args.exp, params, rule=args.rule, resume_run_id=resume_run_id,
                              extra_tags={"tvts.task": task, "tvts.dataset": args.dataset})


class TuningRun:
    """What the two fine-tuning stages share; a subclass sets STAGE, TASK, CONFIG and defines `run`.

    Args:
        args: the parsed command line (see `add_eval_args`, `add_tuning_args`).
        spec, views, cfg: what `load_stage_config` returned. env: this process's rank and device.
    """

    STAGE: ClassVar[str]
    TASK: ClassVar[str]
    CONFIG: ClassVar[type]

    def __init__(self, args: argparse.Namespace, spec: DatasetSpec, views: ViewsConfig, cfg, env: D.DistEnv):
        self.args, self.spec, self.views, self.cfg, self.env = args, spec, views, cfg, env
        self.timings: dict[str, float] = {}
        self.mlrun: tracking.StageRun | None = None
        self.resume: tuple[Any, dict] | None = None   # (checkpoint path, its state) when resuming

    @classmethod
    def main(cls, args: argparse.Namespace) -> int:
        """The stage's `main` after parsing: one process, or this rank of a torchrun job."""
        setup_logging()
        spec, views, cfg = load_stage_config(args, cls.TASK, cls.CONFIG)
        env = D.init_distributed(use_cuda=False if args.cpu else None)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        try:
            cls(args, spec, views, cfg, env).run()
        finally:
            D.cleanup()
        return 0

    def run(self) -> dict | None:
        raise NotImplementedError

    def load_splits(self):
        """The train and test VideoSets; a test split without videos ends the stage."""
        train_set, test_set = load_dataset_split(self.spec, "train"), load_dataset_split(self.spec, "test")
        if not test_set.items:
            raise SystemExit(f"{self.STAGE}: the test split of {self.args.dataset} has no videos")
        return train_set, test_set

    def tracking(self) -> contextlib.AbstractContextManager:
        """The MLflow run on rank 0 (the interrupted run's, when resuming); nothing elsewhere."""
        if not self.env.is_main:
            return contextlib.nullcontext()
        run_id = (self.resume[1].get("mlflow_run_id") or None) if self.resume else None
        return eval_stage_run(self.STAGE, self.TASK, self.args, self.spec, self.views, self.cfg,
                              world_size=self.env.world, resume_run_id=run_id)

    def rejects(self, train_set, rejected: dict[int, str], test_set, scored: dict) -> io.Rejects:
        """Both splits' missing videos, the train videos rejected while training, the unreadable test videos.

        Args:
            train_set, test_set: the VideoSets. rejected: train index -> reason (TuneState.rejected).
            scored: the test pass's gathered rows ("ok", "reason" per test video, in order).
        """
        rejects = io.Rejects(self.STAGE)
        add_rejects(rejects, train_set)
        for index, reason in sorted(rejected.items()):
            item = train_set.items[index]
            rejects.add(f"train/{item.video_id}", reason, str(item.path))
        add_rejects(rejects, test_set)
        for item, ok, reason in zip(test_set.items, scored["ok"].tolist(), scored["reason"]):
            if not ok:
                rejects.add(f"test/{item.video_id}", reason or "video_unreadable", str(item.path))
        return rejects
