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

import torch

from tvts import io, tracking
from tvts.config import load_sections
from tvts.stages.common import add_common_args, command
from tvts.train import distributed as dist
from tvts.train.config import PretrainConfig
from tvts.train.init_config import TextMLMConfig
from tvts.train.text_mlm import train_text_mlm

log = logging.getLogger("tvts.init_text_mlm")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts init-text-mlm", description=__doc__.splitlines()[0])
    p.add_argument("--shards", required=True, help="the pretraining shard set or folder (transcripts of the train split)")
    p.add_argument("--out", required=True, help="output model folder, e.g. results/<exp>/init_text_mlm")
    p.add_argument("--cpu", action="store_true", help="ignore any GPU")
    add_common_args(p)
    return p


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    sections = load_sections({"init_text_mlm": TextMLMConfig, "pretrain": PretrainConfig},
                             args.config_path, args.config_json)
    cfg, text = sections["init_text_mlm"], sections["pretrain"].model.text
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = dist.init_distributed(use_cuda=False if args.cpu else None)
    shards, out = args.shards, Path(args.out)
    params = {"init_text_mlm": cfg, "text": text}
    with tracking.stage_run("init_text_mlm", args.exp, params, rule=args.rule) as mlrun:
        timings: dict[str, float] = {}
        with io.timer(timings, "train_s"):
            body = train_text_mlm(shards, text, cfg, out, env)
        mlrun.log_metrics({"init/loss_first": body["losses"]["first"], "init/loss_final": body["losses"]["final"]})
        io.write_manifest(out / "manifest.json", stage="init_text_mlm", inputs={"shards": str(shards)},
                          config=params, counts=body["counts"], rejects=io.Rejects("init_text_mlm"),
                          timings=timings, outputs={"losses": body["losses"], "history": body["history"]})
        log.info("text MLM: loss %.4f -> %.4f in %d steps (%.0f s)", body["losses"]["first"],
                 body["losses"]["final"], cfg.steps, timings["train_s"])
    return 0
