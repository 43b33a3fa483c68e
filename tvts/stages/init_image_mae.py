"""Stage `init_image_mae`: the ImageMAE stand-in, an image MAE on single frames of the train shards.

Writes `--out` (e.g. results/<exp>/init_image_mae/model.pt) in the ImageMAE checkpoint format
that `pretrain.init: mae:<path>` loads, and `manifest.json` beside it; step checkpoints go to
`ckpt/` beside it, so a killed job resumes. The encoder's sizes are `pretrain.model.video`'s,
the recipe is the `init_image_mae` section (tvts.train.image_mae).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from tvts import io, tracking
from tvts.config import load_sections
from tvts.stages.common import add_common_args, command
from tvts.train import distributed as dist
from tvts.train.config import PretrainConfig
from tvts.train.image_mae import train_image_mae
from tvts.train.init_config import ImageMAEConfig

log = logging.getLogger("tvts.init_image_mae")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts init-image-mae", description=__doc__.splitlines()[0])
    p.add_argument("--shards", required=True, help="the pretraining shard set or folder (frames of the train split)")
    p.add_argument("--out", required=True, help="output checkpoint, e.g. results/<exp>/init_image_mae/model.pt")
    p.add_argument("--cpu", action="store_true", help="ignore any GPU")
    add_common_args(p)
    return p


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    sections = load_sections({"init_image_mae": ImageMAEConfig, "pretrain": PretrainConfig},
                             args.config_path, args.config_json)
    cfg, video = sections["init_image_mae"], sections["pretrain"].model.video
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = dist.init_distributed(use_cuda=False if args.cpu else None)
    shards, out = args.shards, Path(args.out)
    params = {"init_image_mae": cfg, "video": video}
    with tracking.stage_run("init_image_mae", args.exp, params, rule=args.rule) as mlrun:
        timings: dict[str, float] = {}
        with io.timer(timings, "train_s"):
            body = train_image_mae(shards, video, cfg, out, env)
        mlrun.log_metrics({"init/loss_first": body["losses"]["first"], "init/loss_final": body["losses"]["final"]})
        io.write_manifest(out.parent / "manifest.json", stage="init_image_mae", inputs={"shards": str(shards)},
                          config=params, counts=body["counts"], rejects=body["rejects"], timings=timings,
                          outputs={"model": out.name, "losses": body["losses"], "history": body["history"]})
        log.info("image MAE: loss %.4f -> %.4f in %d steps (%.0f s)", body["losses"]["first"],
                 body["losses"]["final"], cfg.steps, timings["train_s"])
    return 0
