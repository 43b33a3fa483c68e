"""Stage `init_text_mlm`: the DistilBERT stand-in, a masked-LM text encoder on the train narration.

Writes the Hugging Face model folder `--out` (e.g. results/<exp>/init_text_mlm: config,
weights, tokenizer, and `manifest.json`), which `pretrain.model.text.model: <folder>` loads;
step checkpoints go to `<out>-ckpt/`, so a killed job resumes. The encoder's sizes are
`pretrain.model.text`'s, the recipe is the `init_text_mlm` section (tvts.train.text_mlm).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tvts.stages.common import command, init_stage_parser, run_init_stage
from tvts.train.init_config import TextMLMConfig
from tvts.train.text_mlm import train_text_mlm

log = logging.getLogger("tvts.init_text_mlm")


def build_parser() -> argparse.ArgumentParser:
    return init_stage_parser("tvts init-text-mlm", __doc__, "the pretraining shard set or folder (transcripts of the train split)",
                             "output model folder, e.g. results/<exp>/init_text_mlm")


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    cfg, body, timings = run_init_stage(args, "init_text_mlm", TextMLMConfig, "text", train_text_mlm,
                                        Path(args.out) / "manifest.json")
    log.info("text MLM: loss %.4f -> %.4f in %d steps (%.0f s)", body["losses"]["first"],
             body["losses"]["final"], cfg.steps, timings["train_s"])
    return 0
