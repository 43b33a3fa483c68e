"""Stage `eval_zeroshot_v2v`: zero-shot video-to-video retrieval with the frozen final-norm CLS.

Every video of the split (SSV2 validation in the paper) is one query against all the others:
cosine similarity, the query itself excluded, R@K = % of queries with a same-class video in
their top K (ties pessimistic, tvts.eval.metrics). One centre view per video: the model's
num_frames TSN segment centres, short side `eval.zeroshot_v2v.short_side`, centre crop img_size.
Unreadable videos are rejected (counted, listed) and take no part, neither as query nor as target.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tvts import io
from tvts.eval.config import ViewsConfig, ZeroShotV2VConfig, load_dataset_split
from tvts.eval.features import add_rejects, feature_key, file_digest, split_features
from tvts.eval.linear import resolve_device
from tvts.eval.metrics import v2v_recall
from tvts.eval.views import ClipDataset, view_name
from tvts.models.load import load_model
from tvts.stages.common import command, setup_logging, timer
from tvts.eval.job import eval_stage_run
from tvts.stages.eval_common import add_feature_args, eval_parser, load_stage_config

log = logging.getLogger("tvts.eval_zeroshot_v2v")
STAGE = "eval_zeroshot_v2v"
PROTOCOL = ("zero-shot video-to-video retrieval: final-norm CLS (no projection), cosine similarity, query "
            "excluded, R@K = % of queries with a same-class video in the top K, ties counted against the query; "
            "1 view: num_frames TSN segment centres, short-side resize, centre crop")


def build_parser() -> argparse.ArgumentParser:
    return eval_parser("tvts eval-zeroshot-v2v", __doc__, "zeroshot_v2v", add_feature_args)


@command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    spec, views, zs = load_stage_config(args, "zeroshot_v2v", ZeroShotV2VConfig)
    device = resolve_device(args.device)
    with eval_stage_run(STAGE, "zeroshot_v2v", args, spec, views, zs) as mlrun:
        result = evaluate(args, spec, views, zs, device)
        out = Path(args.out)
        io.atomic_write_json(out, result)
        mlrun.log_metrics(result["metrics"] | result["counts"] | result["timings"])
        mlrun.log_artifact(out)
    recalls = " ".join(f"R@{k} {result['metrics'][f'r{k}']:.2f}" for k in zs.ks)
    log.info("%s %s: %s (%d queries)", args.dataset, zs.split, recalls, result["counts"]["n_test"])
    return 0


def evaluate(args: argparse.Namespace, spec, views: ViewsConfig, zs: ZeroShotV2VConfig, device) -> dict:
    """Read the split, extract (or load) the features, compute R@K; returns the output JSON as a dict."""
    timings: dict[str, float] = {}
    vset = load_dataset_split(spec, zs.split)
    model, pcfg = load_model(args.model, device)
    v = pcfg.model.video
    sha = file_digest(args.model)
    ds = ClipDataset(vset.items, v.num_frames, v.img_size, zs.short_side)
    cache = (Path(args.features) / args.dataset / f"{zs.split}-{view_name(1, 1, zs.short_side)}.npz"
             if args.features else None)
    key = feature_key(sha, args.dataset, zs.split, [i.video_id for i in vset.items], v.num_frames, v.img_size,
                      zs.short_side, 1, 1, views.amp)
    with timer(timings, "time/extract_s"):
        feats, hit = split_features(model.video, ds, views.batch_size, views.workers, device, views.amp, cache, key)
    rejects = io.Rejects(STAGE)
    add_rejects(rejects, vset, feats)
    f, y = feats.valid()
    metrics = v2v_recall(f[:, 0], y, zs.ks) if len(y) else {f"r{k}": float("nan") for k in zs.ks}
    counts = {"n_test": int(len(y)), "n_unreadable": int((~feats.ok).sum()), "n_missing": len(vset.missing),
              "n_classes": len(vset.classes)}
    return {"task": "zeroshot_v2v", "dataset": args.dataset, "split": zs.split, "metrics": metrics, "counts": counts,
            "rejects": rejects.rows, "reject_counts": rejects.counts(), "protocol": PROTOCOL,
            "config": {"dataset": spec, "views": views, "zeroshot_v2v": zs},
            "model": {"checkpoint": args.model, "sha256": sha, "num_frames": v.num_frames, "img_size": v.img_size},
            "features": {"cache": str(cache) if cache else None, "hit": hit}, "timings": timings,
            "versions": io.library_versions()}
