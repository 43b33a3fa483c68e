"""One temporal-order probe job: forward and reversed features of both splits, then per pool the
class probe (top-1, within-pair) and the arrow-of-time probe; the result JSON.
Probes: tvts.eval.temporal. The stage is tvts.stages.eval_temporal.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from tvts import io
from tvts.config import ConfigError
from tvts.eval.attentive import attentive_logits, train_attentive
from tvts.eval.config import AttentiveConfig, LinearConfig, TemporalConfig, ViewsConfig, load_dataset_split
from tvts.eval.features import Features, add_rejects, feature_key, file_digest
from tvts.eval.health import feature_health
from tvts.eval.linear import hits_json, probe_logits, resolve_device, score_logits, train_probe_cached
from tvts.eval.metrics import average_views
from tvts.eval.temporal import DIRECTIONS, arrow_split, cached_directions, extract_directions, resolve_pairs
from tvts.eval.views import ClipDataset, view_name
from tvts.models.load import load_model

STAGE = "eval_temporal"
CHANCE = 50.0   # the arrow of time and within-pair accuracy, for a representation blind to order


@dataclass(frozen=True)
class Readout:
    """A trained classifier: Features -> view-averaged logits of its readable rows; its training losses."""

    logits: Callable[[Features], torch.Tensor]
    losses: list[float]

    def __call__(self, feats: Features) -> torch.Tensor:
        return self.logits(feats)


class TemporalEval:
    """One run of the temporal-order probes: what the stage's `main` wires together.

    Args:
        args: the parsed command line. spec, views: the dataset and `eval.views`.
        cfg: `eval.temporal`. lin: `eval.linear`, the linear classifiers' protocol. att: `eval.attentive`.
    """

    def __init__(self, args: argparse.Namespace, spec, views: ViewsConfig, cfg: TemporalConfig, lin: LinearConfig,
                 att: AttentiveConfig = AttentiveConfig()):
        self.args, self.spec, self.views, self.cfg, self.lin, self.att = args, spec, views, cfg, lin, att
        self.device = resolve_device(args.device)
        self.timings: dict[str, float] = {}
        self.cache_hits: dict[str, bool] = {}
        self.rejects = io.Rejects(STAGE)
        self.health: dict[str, dict] = {}
        self.hits: dict = {}

    def view_grid(self) -> tuple[int, int]:
        return (self.views.temporal, self.views.spatial) if self.cfg.views == "all" else (1, 1)

    def features(self, vset, split: str) -> dict[tuple[str, str], Features]:
        """(pool, direction) -> Features of one split, through the cache when --features is given;
        its missing and unreadable videos go to the rejects."""
        v, (t, s), a = self.pcfg.model.video, self.view_grid(), self.args
        dataset = ClipDataset(vset.items, v.num_frames, v.img_size, self.views.short_side, t, s)

        def compute() -> dict[tuple[str, str], Features]:
            return extract_directions(self.model.video, dataset, self.cfg.pools, self.views.batch_size,
                                      self.views.workers, self.device, self.views.amp, self.reverse_first(split))

        with io.timer(self.timings, f"time/extract_{split}_s"):
            if a.features:
                feats, self.cache_hits[split] = cached_directions(*self.cache(vset, split), compute)
            else:
                feats, self.cache_hits[split] = compute(), False
        add_rejects(self.rejects, vset, next(iter(feats.values())) if feats else None)
        return feats

    def reverse_first(self, split: str) -> int:
        """How many of the split's first clips are also reversed (0 = all)."""
        return self.cfg.arrow_train_clips if split == "train" else 0

    def cache(self, vset, split: str) -> tuple[dict[tuple[str, str], Path], dict]:
        """The cache files of one split, (pool, direction) -> path, and the key they must carry."""
        v, (t, s), a = self.pcfg.model.video, self.view_grid(), self.args
        name = view_name(t, s, self.views.short_side)
        paths = {(p, d): Path(a.features) / a.dataset / f"{split}-{name}-{p}-{d}.npz"
                 for p in self.cfg.pools for d in DIRECTIONS}
        key = feature_key(self.sha, a.dataset, split, [i.video_id for i in vset.items], v.num_frames, v.img_size,
                          self.views.short_side, t, s, self.views.amp)
        return paths, key | {"reverse_first": self.reverse_first(split)}

    def probes(self, train: dict, test: dict, n_classes: int, pairs: list) -> dict[str, float]:
        """Per pool: the class probe's top-1 and within-pair accuracy, and the arrow-of-time accuracy.
        Fills self.health (feature spread, train accuracies) and self.hits (per test clip)."""
        metrics: dict[str, float] = {}
        for pool in self.cfg.pools:
            fwd_train, fwd_test = train[(pool, "forward")], test[(pool, "forward")]
            arrow_train = arrow_split(fwd_train, train[(pool, "reversed")])
            arrow_test = arrow_split(fwd_test, test[(pool, "reversed")])
            with io.timer(self.timings, "time/train_s"):
                classes, arrow = self.classifier(fwd_train, n_classes), self.classifier(arrow_train, 2)
            scored, hits = score_logits(classes(fwd_test), fwd_test, ks=(1,), pairs=pairs)
            arrow_scored, arrow_hits = score_logits(arrow(arrow_test), arrow_test, ks=(1,))
            metrics[f"{pool}/top1"], self.hits[f"{pool}/top1"] = scored["top1"], hits["top1"]
            if pairs:
                metrics[f"{pool}/within_pair_top1"] = scored["within_pair_top1"]
                self.hits[f"{pool}/within_pair_top1"] = hits["within_pair_top1"]
            metrics[f"{pool}/arrow_top1"] = arrow_scored["top1"]
            # an arrow example is a clip with its reverse: one resampling unit, scored 0, 0.5 or 1
            self.hits[f"{pool}/arrow_top1"] = arrow_hits["top1"].reshape(2, -1).mean(0)
            self.health[pool] = self.feature_health(fwd_train) | {
                "train_top1": score_logits(classes(fwd_train), fwd_train, ks=(1,))[0]["top1"],
                "arrow_train_top1": score_logits(arrow(arrow_train), arrow_train, ks=(1,))[0]["top1"],
                "final_loss": classes.losses[-1]}
        return metrics

    def classifier(self, train: Features, n_classes: int) -> "Readout":
        """A trained classifier: the linear probe's protocol for a pooled vector; the attentive probe
        for the token grid."""
        if train.feats.ndim == 4:
            probe, losses = train_attentive(train, n_classes, self.att)
            return Readout(lambda f: attentive_logits(probe, f.valid()[0]), losses)
        result = train_probe_cached(train, n_classes, self.lin, self.device)
        return Readout(lambda f: average_views(probe_logits(result, f.valid()[0])), result.losses)

    @staticmethod
    def feature_health(train: Features, max_clips: int = 256) -> dict[str, float]:
        """Health of a split's pooled vectors; for a token grid, of the tokens of its first readable clips."""
        if train.feats.ndim == 4:
            return feature_health(train.feats[train.ok][:max_clips])
        return feature_health(train.feats, train.ok)

    def run(self) -> dict:
        """Read both splits, extract, train and test every probe; returns the output JSON as a dict."""
        train_set, test_set = load_dataset_split(self.spec, "train"), load_dataset_split(self.spec, "test")
        if not train_set.items or not test_set.items:
            raise ConfigError(f"eval.datasets.{self.args.dataset}: the temporal probes need train and test videos")
        pairs = resolve_pairs(train_set.classes, self.spec.reversed_pairs, f"eval.datasets.{self.args.dataset}")
        self.model, self.pcfg = load_model(self.args.model, self.device)
        self.sha = file_digest(self.args.model)
        labels = [i.label for i in train_set.items + test_set.items]
        n_classes = len(train_set.classes) or 1 + max(labels, default=0)
        train, test = self.features(train_set, "train"), self.features(test_set, "test")
        metrics = self.probes(train, test, n_classes, pairs)
        ok_test = next(iter(test.values())).ok
        n_missing = len(train_set.missing) + len(test_set.missing)
        paired = {c for p in pairs for c in p}
        counts = {"n_train": int(next(iter(train.values())).ok.sum()), "n_test": int(ok_test.sum()),
                  "n_arrow_train": int(train[(self.cfg.pools[0], "reversed")].ok.sum()),
                  "n_classes": n_classes, "n_reversed_pairs": len(pairs),
                  "n_test_paired": sum(int(ok) for item, ok in zip(test_set.items, ok_test) if item.label in paired),
                  "n_unreadable": len(self.rejects) - n_missing, "n_missing": n_missing}
        self.test_ids = [item.video_id for item in test_set.items]
        return self.output(metrics, counts)

    def output(self, metrics: dict, counts: dict) -> dict:
        """The stage's JSON: metrics, counts, rejects, protocol, config, checkpoint, timings."""
        v, (t, s) = self.pcfg.model.video, self.view_grid()
        return {"task": "temporal", "dataset": self.args.dataset, "metrics": metrics, "counts": counts,
                "chance": {"arrow_top1": CHANCE, "within_pair_top1": CHANCE, "top1": 100.0 / counts["n_classes"]},
                "health": self.health, "per_clip": {"ids": self.test_ids} | {k: hits_json(h) for k, h in self.hits.items()},
                "rejects": self.rejects.rows, "reject_counts": self.rejects.counts(),
                "protocol": {"classifier": "the linear probe's (eval.linear), on cached features",
                             "arrow_of_time": "each clip forward (0) and its frames reversed (1); train on train, "
                                              "test on test clips",
                             "within_pair": "class probe restricted to the clip's order-reversed pair; ties wrong",
                             "views": f"{t}x{s} train and test, logits averaged", "device": str(self.device)},
                "config": {"dataset": self.spec, "views": self.views, "temporal": self.cfg, "linear": self.lin},
                "model": {"checkpoint": self.args.model, "sha256": self.sha, "num_frames": v.num_frames,
                          "img_size": v.img_size},
                "features": {"cache": self.args.features, "hit": self.cache_hits},
                "timings": self.timings, "versions": io.library_versions()}
