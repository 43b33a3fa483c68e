"""Stage `post_pretrain`: contrastive post-pretraining on the pair shards, then checkpoint selection.

Starts from `--init` (results/<exp>/select/best.pt), trains images and clips alternately
(tvts.train.post_pretrain) into `--out` (ckpt/, log.jsonl, manifest.json), and then scores
its epoch checkpoints by the trainer's own validation pass on the held-out pairs
(`post_pretrain.metric`): the winner's weights become `<select>/best.pt` with
`selection.json` beside it, logged as experiment `--exp`'s `select_ckpt` run and registered
as `tvts-<exp>` with alias `best`. A rerun resumes like pretraining; exit code 75 means
"preempted, checkpoint written: run me again".
"""
from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

import torch

from tvts import io, tracking
from tvts.config import load_sections
from tvts.io import CheckpointError
from tvts.select import check_readable, choose_best
from tvts.select_config import SelectConfig
from tvts.stages.common import add_common_args, command
from tvts.train import checkpoint
from tvts.train import distributed as dist
from tvts.train.post_config import PostPretrainConfig
from tvts.train.post_pretrain import PostPretrainJob

log = logging.getLogger("tvts.post_pretrain")
SECTIONS = {"post_pretrain": PostPretrainConfig}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts post-pretrain", description=__doc__)
    p.add_argument("--init", required=True, help="the starting checkpoint (results/<exp>/select/best.pt)")
    p.add_argument("--pairs", nargs="+", required=True, help="shard_pairs part folders")
    p.add_argument("--out", required=True, help="training folder (results/<exp>-post/post_pretrain)")
    p.add_argument("--select", required=True, help="selection folder (results/<exp>-post/select)")
    p.add_argument("--cpu", action="store_true", help="ignore any GPU")
    add_common_args(p)
    return p


def recorded(manifest: dict) -> dict[str, dict[str, float]]:
    """The trainer's validation metrics of each epoch checkpoint, by file name."""
    return {checkpoint.epoch_name(h["epoch"], h["step"]): {k: float(v) for k, v in h.items() if k != "epoch"}
            for h in manifest["history"]}


def select_best(manifest: dict, cfg: PostPretrainConfig, out: Path, sel: Path) -> dict:
    """Pick the best epoch checkpoint on the held-out pairs; write best.pt and selection.json.

    Raises:
        SystemExit: when no epoch checkpoint is readable.
    """
    scores, unreadable = {}, {}
    for name, values in recorded(manifest).items():
        try:
            check_readable(out / "ckpt" / name)
            scores[name] = values
        except CheckpointError as err:
            log.warning("skipping unreadable checkpoint %s: %s", name, err)
            unreadable[name] = str(err)
    scfg = SelectConfig(metric=cfg.metric)
    try:
        best, unreadable = choose_best(scores, unreadable, scfg, out / "ckpt", sel / "best.pt")
    except CheckpointError as err:
        raise SystemExit(f"post_pretrain: {err}") from None
    scores = {n: v for n, v in scores.items() if n not in unreadable}
    selection = {"metric": cfg.metric, "higher_is_better": scfg.higher_is_better, "best": best,
                 "best_score": scores[best][cfg.metric], "best_metrics": scores[best],
                 "candidates": [{"checkpoint": n, **scores[n]} for n in sorted(scores)],
                 "unreadable": dict(sorted(unreadable.items())),
                 "counts": {"candidates": len(scores) + len(unreadable), "scored": len(scores),
                            "unreadable": len(unreadable)},
                 "split": "val of the pair shards", "pairs": manifest["inputs"]["pairs"]}
    io.atomic_write_json(sel / "selection.json", selection)
    return selection


def register(selection: dict, sel: Path, exp: str, cfg: PostPretrainConfig, rule: str | None) -> None:
    """The selection as experiment `exp`'s select_ckpt run, and the winner in the model registry."""
    with tracking.stage_run("select_ckpt", exp, {"select": {"metric": cfg.metric, "register": cfg.register}},
                            rule=rule) as mlrun:
        for epoch, c in enumerate(selection["candidates"]):
            mlrun.log_metrics({f"candidate/{k}": v for k, v in c.items() if k != "checkpoint"}, step=epoch)
        mlrun.log_metrics({f"best/{k}": v for k, v in selection["best_metrics"].items()}
                          | {"unreadable_checkpoints": selection["counts"]["unreadable"]})
        mlrun.log_artifact(sel / "selection.json")
        if cfg.register:
            version = tracking.register_model(mlrun.run_id, sel / "best.pt", f"tvts-{exp}", alias="best",
                                              tags={"tvts.exp": exp, "tvts.checkpoint": selection["best"],
                                                    f"tvts.{cfg.metric}": f"{selection['best_score']:.4f}"})
            log.info("registered tvts-%s version %s (alias best)", exp, version)


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    cfg: PostPretrainConfig = load_sections(SECTIONS, args.config_path, args.config_json)["post_pretrain"]
    env = dist.init_distributed(use_cuda=False if args.cpu else None)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    out, sel = Path(args.out), Path(args.select)
    out.mkdir(parents=True, exist_ok=True)
    try:
        job = PostPretrainJob(cfg, Path(args.init), [Path(p) for p in args.pairs], out, env)
        selected = {}
        with (tracking.stage_run("post_pretrain", args.exp, {"post_pretrain": cfg}, rule=args.rule,
                                 resume_run_id=job.resume_run_id)
              if env.is_main else contextlib.nullcontext()) as mlrun:
            # selection before the run is finalised: a job killed in between only selects again
            job.run(mlrun, on_trained=lambda manifest: selected.update(select_best(manifest, cfg, out, sel)))
    finally:
        dist.cleanup()
    if env.is_main:
        selection = selected
        register(selection, sel, args.exp, cfg, args.rule)
        log.info("best: %s (%s=%.4f)", selection["best"], cfg.metric, selection["best_score"])
    return 0
