"""One linear-probe job: features of both splits (through the cache), the probe trained and tested,
the result JSON. Protocol: tvts.eval.linear. The stage is tvts.stages.eval_linear.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tvts import io
from tvts.eval.config import LinearConfig, ViewsConfig, load_dataset_split
from tvts.eval.features import Features, add_rejects, feature_key, file_digest, split_features
from tvts.eval.health import feature_health
from tvts.eval.linear import (ProbeResult, evaluate_probe, hits_json, resolve_device, score_probe, train_probe_cached,
                              train_probe_uncached)
from tvts.eval.temporal import resolve_pairs
from tvts.eval.views import ClipDataset, view_name
from tvts.models.load import load_model

STAGE = "eval_linear"


class LinearEval:
    """One probe run: what the stage's `main` wires together."""

    def __init__(self, args: argparse.Namespace, spec, views: ViewsConfig, lin: LinearConfig):
        self.args, self.spec, self.views, self.lin = args, spec, views, lin
        self.device = resolve_device(args.device)
        self.timings: dict[str, float] = {}
        self.cache_hits: dict[str, bool] = {}
        self.rejects = io.Rejects(STAGE)
        self.n_train = 0
        self.health: dict = {}

    def train_views(self) -> tuple[int, int]:
        return (self.views.temporal, self.views.spatial) if self.lin.train_views == "all" else (1, 1)

    def dataset(self, items, temporal: int, spatial: int) -> ClipDataset:
        v = self.pcfg.model.video
        return ClipDataset(items, v.num_frames, v.img_size, self.views.short_side, temporal, spatial)

    def features(self, vset, split: str, temporal: int, spatial: int) -> Features:
        """Features of one split's deterministic views, through the cache when --features is given."""
        v, a = self.pcfg.model.video, self.args
        name = view_name(temporal, spatial, self.views.short_side)
        cache = Path(a.features) / a.dataset / f"{split}-{name}.npz" if a.features else None
        key = feature_key(self.sha, a.dataset, split, [i.video_id for i in vset.items], v.num_frames, v.img_size,
                          self.views.short_side, temporal, spatial, self.views.amp)
        with io.timer(self.timings, f"time/extract_{split}_s"):
            feats, self.cache_hits[split] = split_features(
                self.model.video, self.dataset(vset.items, temporal, spatial), self.views.batch_size,
                self.views.workers, self.device, self.views.amp, cache, key)
        add_rejects(self.rejects, vset, feats)
        return feats

    def train(self, train_set, n_classes: int) -> ProbeResult:
        """The probe, cached (on the train features) or uncached (the encoder in the loop)."""
        t, s = self.train_views()
        if self.lin.mode == "cached":
            feats = self.features(train_set, "train", t, s)
            self.n_train = int(feats.ok.sum())
            with io.timer(self.timings, "time/train_s"):
                result = train_probe_cached(feats, n_classes, self.lin, self.device)
            self.health = feature_health(feats.feats, feats.ok) | {
                "train_top1": evaluate_probe(result, feats, ks=(1,))["top1"], "final_loss": result.losses[-1],
                "steps": result.steps}
            return result
        with io.timer(self.timings, "time/train_s"):  # includes the encoder: that is what uncached costs
            result = train_probe_uncached(self.model.video, self.dataset(train_set.items, t, s), n_classes,
                                          self.lin, self.device, self.views.workers, self.views.batch_size,
                                          self.views.amp)
        add_rejects(self.rejects, train_set, None)
        for index, reason in sorted(result.rejected.items()):
            item = train_set.items[index]
            self.rejects.add(f"train/{item.video_id}", reason, str(item.path))
        self.n_train = len(train_set.items) - len(result.rejected)
        self.timings["time/extract_train_s"] = result.extract_s
        return result

    def run(self) -> dict:
        """Read both splits, train and test the probe; returns the output JSON as a dict."""
        train_set, test_set = load_dataset_split(self.spec, "train"), load_dataset_split(self.spec, "test")
        self.model, self.pcfg = load_model(self.args.model, self.device)
        self.sha = file_digest(self.args.model)
        labels = [i.label for i in train_set.items + test_set.items]
        n_classes = len(train_set.classes) or 1 + max(labels, default=0)
        pairs = resolve_pairs(train_set.classes, self.spec.reversed_pairs, f"eval.datasets.{self.args.dataset}")
        result = self.train(train_set, n_classes)
        test = self.features(test_set, "test", self.views.temporal, self.views.spatial)
        metrics, hits = score_probe(result, test, pairs=pairs)
        self.per_clip = {"ids": [i.video_id for i in test_set.items]} | {k: hits_json(h) for k, h in hits.items()}
        t = self.timings
        t["time/extract_s"] = t.get("time/extract_train_s", 0.0) + t["time/extract_test_s"]
        n_missing = len(train_set.missing) + len(test_set.missing)
        counts = {"n_train": self.n_train, "n_test": int(test.ok.sum()), "n_classes": n_classes,
                  "n_unreadable": len(self.rejects) - n_missing, "n_missing": n_missing}
        if pairs:
            counts["n_reversed_pairs"] = len(pairs)
        return self.output(metrics, counts, result)

    def output(self, metrics: dict, counts: dict, result: ProbeResult) -> dict:
        """The stage's JSON: metrics, counts, rejects, protocol, config, checkpoint, timings."""
        v = self.pcfg.model.video
        return {"task": "linear", "dataset": self.args.dataset, "metrics": metrics, "counts": counts,
                "health": self.health, "per_clip": self.per_clip, "rejects": self.rejects.rows, "reject_counts": self.rejects.counts(), "protocol": self.protocol(),
                "config": {"dataset": self.spec, "views": self.views, "linear": self.lin},
                "model": {"checkpoint": self.args.model, "sha256": self.sha, "num_frames": v.num_frames,
                          "img_size": v.img_size},
                "features": {"cache": self.args.features, "hit": self.cache_hits}, "losses": result.losses,
                "timings": self.timings, "versions": io.library_versions()}

    def protocol(self) -> dict:
        t, s = self.train_views()
        head = "Linear on the final-norm CLS, zero init, no BatchNorm"
        if self.lin.standardize:
            head += ", features standardised with train-set mean/std (folded into the head)"
        return {"optimizer": "SGD with momentum, float32, no mixup/cutmix",
                "schedule": "linear warm-up, then per-step cosine", "head": head,
                "train_views": f"{t}x{s}", "test_views": f"{self.views.temporal}x{self.views.spatial}, logits averaged",
                "ties": "pessimistic", "device": str(self.device), "mode": self.lin.mode}
