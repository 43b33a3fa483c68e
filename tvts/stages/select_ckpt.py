"""Stage `select_ckpt`: score every epoch-end checkpoint on the validation shards, keep the best.

Scores come from the trainer's own validation pass before each checkpoint when the run's
manifest holds one for these shards (`select.rescore: true` scores everything again).

Writes `<out>/best.pt` (weights only), `<out>/selection.json` (every candidate and its
scores, the winner, the metric, the unreadable checkpoints skipped), logs each score to MLflow
(step = epoch) and registers the winner as a model version with alias `best`.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from tvts import io, tracking
from tvts.config import load_sections
from tvts.data.shardset import ShardSetError, open_shard_set
from tvts.io import CheckpointError
from tvts.select import choose_best, recorded_scores, score_candidates
from tvts.select_config import SelectConfig
from tvts.stages.common import add_common_args, command
from tvts.train import distributed as dist

log = logging.getLogger("tvts.select")
SECTIONS = {"select": SelectConfig}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts select-ckpt", description=__doc__)
    p.add_argument("--pretrain", required=True, help="pretraining folder (holds manifest.json and ckpt/)")
    p.add_argument("--shards", required=True,
                   help="shard set (set.json, a shard folder or a URL): its val split scores the checkpoints")
    p.add_argument("--out", required=True, help="output folder (results/<exp>/select)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the run's config)")
    add_common_args(p)
    return p


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    cfg = load_sections(SECTIONS, args.config_path, args.config_json)["select"]
    pre = Path(args.pretrain)
    manifest = json.loads((pre / "manifest.json").read_text())
    candidates = [pre / c for c in manifest["outputs"]["epoch_checkpoints"]]
    if not candidates:
        raise SystemExit(f"select_ckpt: {pre}/manifest.json lists no epoch checkpoints")
    env = dist.init_distributed(use_cuda=None)
    out = Path(args.out)
    try:
        shards = open_shard_set(args.shards)
    except ShardSetError as err:
        raise SystemExit(f"select_ckpt: {err}") from None
    with tracking.stage_run("select_ckpt", args.exp, {"select": cfg}, rule=args.rule) as mlrun:
        recorded = {} if cfg.rescore else recorded_scores(manifest, shards)
        scores, source, unreadable = score_candidates(candidates, recorded, shards, env, args.workers)
        for epoch, path in enumerate(candidates):
            if path.name in scores:
                mlrun.log_metrics({f"candidate/{k}": v for k, v in scores[path.name].items()}, step=epoch)
                log.info("%s: %s=%.4f (%s)", path.name, cfg.metric, scores[path.name][cfg.metric], source[path.name])
        try:
            best, unreadable = choose_best(scores, unreadable, cfg, pre / "ckpt", out / "best.pt")
        except CheckpointError as err:
            raise SystemExit(f"select_ckpt: {err}: {unreadable}") from None
        scores = {n: v for n, v in scores.items() if n not in unreadable}
        selection = {"metric": cfg.metric, "higher_is_better": cfg.higher_is_better, "best": best,
                     "best_score": scores[best][cfg.metric], "best_metrics": scores[best],
                     "candidates": [{"checkpoint": n, **scores[n]} for n in sorted(scores)],
                     "scores_from": {n: source[n] for n in sorted(scores)},  # trainer's val pass or scored here
                     "unreadable": dict(sorted(unreadable.items())),  # skipped with a warning, never the winner
                     "counts": {"candidates": len(candidates), "scored": len(scores), "unreadable": len(unreadable)},
                     "split": "val of the pretraining shards", "shards": args.shards}
        io.atomic_write_json(out / "selection.json", selection)
        mlrun.log_metrics({f"best/{k}": v for k, v in scores[best].items()}
                          | {"unreadable_checkpoints": len(unreadable)})
        mlrun.log_artifact(out / "selection.json")
        if cfg.register:
            name = cfg.model_name or f"tvts-{args.exp}"
            version = tracking.register_model(mlrun.run_id, out / "best.pt", name, alias="best",
                                              tags={"tvts.exp": args.exp, "tvts.checkpoint": best,
                                                    f"tvts.{cfg.metric}": f"{scores[best][cfg.metric]:.4f}"})
            log.info("registered %s version %s (alias best)", name, version)
    log.info("best: %s (%s=%.4f)", best, cfg.metric, scores[best][cfg.metric])
    return 0
