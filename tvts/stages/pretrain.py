"""Stage `pretrain`: TVTS pretraining on the window shards (torchrun launches one process per GPU).

Writes `<out>/ckpt/` (step and epoch-end checkpoints), `<out>/log.jsonl` (every logged
metric) and, when training completes, `<out>/manifest.json` (the rule's declared output).
Rerunning an interrupted job resumes from the newest valid checkpoint of the same config
and data; one that died after its final checkpoint only writes its manifest. A finalised run
(manifest written, then deleted: `snakemake -R pretrain`), or one with another config, starts
afresh (tvts.train.pretrain).
Exit code 75 means "preempted, checkpoint written: run me again".
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch

from tvts import tracking
from tvts.config import load_sections
from tvts.data.shardset import ShardSetError
from tvts.io import InputUnavailable
from tvts.stages.common import add_common_args, command
from tvts.train import distributed as dist
from tvts.train.config import PretrainConfig
from tvts.train.pretrain import PretrainJob, text_only_variant


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts pretrain", description=__doc__)
    p.add_argument("--shards", required=True,
                   help="shard set: set.json (or its folder), one shard folder, or a URL (http(s)://, s3://, file://)")
    p.add_argument("--out", required=True, help="output folder (results/<exp>/pretrain)")
    p.add_argument("--text-only", action="store_true",
                   help="train the text-only sort baseline (the sort head sees transcripts, no video)")
    p.add_argument("--cpu", action="store_true", help="ignore any GPU")
    add_common_args(p)
    return p


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    cfg = load_sections({"pretrain": PretrainConfig}, args.config_path, args.config_json)["pretrain"]
    if args.text_only:
        cfg = text_only_variant(cfg)
    env = dist.init_distributed(use_cuda=False if args.cpu else None)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        try:
            job = PretrainJob(cfg, args.shards, Path(args.out), env, args.text_only)
        except ShardSetError as err:
            if isinstance(err, InputUnavailable):  # an outage: exit 75, retried later (tvts.stages.common)
                raise
            raise SystemExit(f"pretrain: {err}") from None
        params = {"pretrain": cfg, "text_only": args.text_only}
        with (tracking.stage_run(job.stage, args.exp, params, rule=args.rule, resume_run_id=job.resume_run_id)
              if env.is_main else contextlib.nullcontext()) as mlrun:
            job.run(mlrun)
    finally:
        dist.cleanup()
    return 0
