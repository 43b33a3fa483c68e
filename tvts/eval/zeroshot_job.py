"""One zero-shot video-to-video retrieval job: frozen CLS features of one split (through the cache),
R@K by class, the result JSON. The stage is tvts.stages.eval_zeroshot_v2v.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tvts import io
from tvts.eval.config import ViewsConfig, ZeroShotV2VConfig, load_dataset_split
from tvts.eval.features import add_rejects, feature_key, file_digest, split_features
from tvts.eval.metrics import v2v_recall
from tvts.eval.views import ClipDataset, view_name
from tvts.models.load import load_model

STAGE = "eval_zeroshot_v2v"
PROTOCOL = ("zero-shot video-to-video retrieval: final-norm CLS (no projection), cosine similarity, query "
            "excluded, R@K = % of queries with a same-class video in the top K, ties counted against the query; "
            "1 view: num_frames TSN segment centres, short-side resize, centre crop")


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
    with io.timer(timings, "time/extract_s"):
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
