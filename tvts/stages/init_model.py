"""Stage `init_model`: the *untrained* model of a no-pretraining baseline experiment.

Builds the model exactly as pretraining would start it (same config, seed, `pretrain.init` and
tokenizer from the same shards), scores it on the pretraining val split like `select_ckpt` does,
and writes it in `best.pt` format, so every evaluation runs on it through the same code path.
The difference between an experiment and its baseline is then what pretraining bought.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tvts import tracking
from tvts.config import ConfigError, load_sections
from tvts.data.shardset import ShardSetError, open_shard_set
from tvts.models.text import SCRATCH
from tvts.select import score
from tvts.stages.common import add_common_args, command
from tvts.train import checkpoint
from tvts.train import distributed as dist
from tvts.train.config import PretrainConfig
from tvts.train.pretrain import initial_state

log = logging.getLogger("tvts.init_model")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts init-model", description=__doc__.splitlines()[0])
    p.add_argument("--shards", help="the pretraining shard set (tokenizer and val split): set.json, a shard folder "
                   "or a URL; without it (dag.pretrain: false), no score and a pretrained tokenizer")
    p.add_argument("--out", required=True, help="output checkpoint, e.g. results/random/init/model.pt")
    add_common_args(p)
    return p


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    cfg = load_sections({"pretrain": PretrainConfig}, args.config_path, args.config_json)["pretrain"]
    env = dist.init_distributed(use_cuda=None)
    out = Path(args.out)
    if args.shards is None and cfg.model.text.model == SCRATCH:
        raise ConfigError("pretrain.model.text.model: scratch trains its tokenizer on the shards' transcripts; "
                          "without --shards (dag.pretrain: false) name a pretrained tokenizer (a hub name or folder)")
    try:
        shards = open_shard_set(args.shards) if args.shards else None
    except ShardSetError as err:
        raise SystemExit(f"init_model: {err}") from None
    with tracking.stage_run("init_model", args.exp, {"pretrain": cfg}, rule=args.rule) as mlrun:
        checkpoint.save(out, initial_state(cfg, shards, env))
        scores = score(out, shards, env) if shards else {}
        mlrun.log_metrics({f"init/{k}": v for k, v in scores.items()})
        log.info("initial model (init %s): %s", cfg.init, " ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    return 0
