"""What the two fine-tuning evaluations share (classification and text-to-video): how a job
holds its config and data splits, opens (or reopens) its MLflow run, and lists its rejects.

`eval_stage_run` is every evaluation stage's MLflow run.
"""
from __future__ import annotations

import argparse
import contextlib
from typing import Any, ClassVar

from tvts import io, tracking
from tvts.config import ConfigError
from tvts.eval.config import DatasetSpec, ViewsConfig, load_dataset_split
from tvts.eval.features import add_rejects
from tvts.train import distributed as dist


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


class TuningJob:
    """What the two fine-tuning stages share; a subclass sets STAGE, TASK, CONFIG and defines `run`.

    Args:
        args: the parsed command line (see `add_eval_args`, `add_tuning_args`).
        spec, views, cfg: what `load_stage_config` returned. env: this process's rank and device.
    """

    STAGE: ClassVar[str]
    TASK: ClassVar[str]
    CONFIG: ClassVar[type]

    def __init__(self, args: argparse.Namespace, spec: DatasetSpec, views: ViewsConfig, cfg, env: dist.DistEnv):
        self.args, self.spec, self.views, self.cfg, self.env = args, spec, views, cfg, env
        self.timings: dict[str, float] = {}
        self.mlrun: tracking.StageRun | None = None
        self.resume: tuple[Any, dict] | None = None   # (checkpoint path, its state) when resuming

    def run(self) -> dict | None:
        raise NotImplementedError

    def load_splits(self):
        """The train and test VideoSets; a test split without videos ends the stage."""
        train_set, test_set = load_dataset_split(self.spec, "train"), load_dataset_split(self.spec, "test")
        if not test_set.items:
            raise ConfigError(f"eval.datasets.{self.args.dataset}: its test split has no videos")
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
