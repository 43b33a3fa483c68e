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

from tvts.stages.common import command, init_stage_parser, run_init_stage
from tvts.train.image_mae import train_image_mae
from tvts.train.init_config import ImageMAEConfig

log = logging.getLogger("tvts.init_image_mae")


def build_parser() -> argparse.ArgumentParser:
    return init_stage_parser("tvts init-image-mae", __doc__, "the pretraining shard set or folder (frames of the train split)",
                             "output checkpoint, e.g. results/<exp>/init_image_mae/model.pt")


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    cfg, body, timings = run_init_stage(args, "init_image_mae", ImageMAEConfig, "video", train_image_mae,
                                        Path(args.out).parent / "manifest.json", outputs={"model": Path(args.out).name})
    log.info("image MAE: loss %.4f -> %.4f in %d steps (%.0f s)", body["losses"]["first"],
             body["losses"]["final"], cfg.steps, timings["train_s"])
    return 0
