"""Linear probe: train only Linear(C -> classes) on the frozen final-norm CLS features.

Protocol (fixed; docs/method.md, 'Downstream protocols'). The official script asks for SGD but,
with DeepSpeed enabled, actually ran AdamW in fp16 with mixup/cutmix and label smoothing.
We implement the protocol the script *states*, in float32, without mixup/cutmix (they mix
pixels, which frozen cached features cannot do) and without label smoothing by default:
- SGD, momentum 0.9, lr 0.1 (not scaled by batch size), weight decay 1e-9 on every parameter;
- 100 epochs, linear warm-up over the first 10, then a per-step cosine to `min_lr`;
- no BatchNorm: instead each feature dimension is standardised with the mean and std of the
  readable training views, computed once (`standardize: true`). This is a fixed affine map, so
  the trained probe is folded back into one Linear on the raw CLS (what `ProbeResult` holds),
  and it does not depend on batch composition. Why: final-norm features share a large common
  component and a few high-gain dimensions; on raw features SGD at lr 0.1 gave a loss spike in
  the first epochs of our small synthetic checks (and diverged at lr 0.5 on a tiny model),
  while on standardised ones the stated lr trains smoothly;
- the head starts at zero (the problem is convex, and zero init takes one source of
  randomness out), so a run depends only on the seed through the sample order;
- training examples: with `train_views: all` every test-style view (2 temporal x 3 spatial)
  of a train video is an example, a fixed augmentation that can be cached; with `center`,
  the single centre view. A step takes `batch_size` videos in a seeded per-epoch order and
  averages the loss over all their views;
- test: the logits of the 2 x 3 test views are averaged, then top-1/top-5 (ties pessimistic).

Unreadable videos keep their slot in the order (batches have the same composition in the
cached and uncached runs) but contribute no loss; a batch without any readable video skips
its optimiser step while the schedule still advances.

`train_probe_cached` trains on precomputed features; `train_probe_uncached` runs the frozen
encoder on every batch of every epoch. With the same seed they visit the same examples in
the same order, so they give the same head up to float rounding of the features (the uncached
run spends one extra encoder pass on the standardisation statistics).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tvts.eval.config import LinearConfig
from tvts.eval.features import Features, encode_views, iter_batches
from tvts.eval.metrics import average_views, topk_hits
from tvts.eval.temporal import within_pair_hits


@dataclass
class ProbeResult:
    """A trained probe and how long it took.

    Args:
        weight: (K, C) float32 head weight (CPU).
        bias: (K,) float32.
        losses: mean training loss of each epoch.
        train_s: wall time of the whole training loop.
        extract_s: part of train_s spent decoding and running the encoder (uncached only; 0 when cached).
        steps: optimiser steps scheduled (epochs x steps per epoch).
        rejected: uncached only: dataset index -> reject reason of the videos that could not be decoded.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    losses: list[float] = field(default_factory=list)
    train_s: float = 0.0
    extract_s: float = 0.0
    steps: int = 0
    rejected: dict[int, str] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def probe_lr(step: int, total_steps: int, warmup_steps: int, cfg: LinearConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.min_lr at `total_steps`."""
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * t))


def probe_epochs(cfg: LinearConfig, n_videos: int) -> int:
    """Epochs the probe trains: `epochs`, or more when that is under `min_steps` optimiser steps.

    Why a floor: the official 100 epochs are ~66 k steps on SSV2's 169 k videos but 200 steps
    on a few hundred clips, where SGD leaves the loss near ln K (a probe that has not converged
    measures its optimiser, not the features). `min_steps: 0` is the official schedule.
    """
    steps_per_epoch = -(-n_videos // cfg.batch_size)
    return max(cfg.epochs, -(-cfg.min_steps // steps_per_epoch))


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The video order of one epoch: a permutation that depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class _Probe:
    """The head, its optimiser and schedule: shared by the cached and uncached loops."""

    def __init__(self, dim: int, n_classes: int, n_videos: int, cfg: LinearConfig, device: torch.device,
                 stats: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.cfg, self.device = cfg, device
        self.mean, self.std = stats if stats is not None else (torch.zeros(dim), torch.ones(dim))
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        self.head = nn.Linear(dim, n_classes).to(device)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.opt = torch.optim.SGD(self.head.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.steps_per_epoch = -(-n_videos // cfg.batch_size)
        self.epochs = probe_epochs(cfg, n_videos)
        self.total = self.epochs * self.steps_per_epoch
        self.warmup = cfg.warmup_epochs * self.steps_per_epoch
        self.step_no = 0

    def step(self, feats: torch.Tensor, labels: torch.Tensor, ok: torch.Tensor) -> float | None:
        """One step on a batch: feats (B, V, C), labels (B,), ok (B,) bool. Returns the loss (None if skipped)."""
        lr = probe_lr(self.step_no, self.total, self.warmup, self.cfg)
        self.step_no += 1
        feats, labels = feats[ok], labels[ok]
        if len(labels) == 0:
            return None
        for group in self.opt.param_groups:
            group["lr"] = lr
        v = feats.shape[1]
        logits = self.head(((feats - self.mean) / self.std).flatten(0, 1))         # (B*V, K)
        loss = F.cross_entropy(logits, labels.repeat_interleave(v), label_smoothing=self.cfg.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()

    def result(self, losses: list[float], train_s: float, extract_s: float = 0.0) -> ProbeResult:
        """The head folded onto raw features: W (x - m) / s + b = (W / s) x + (b - (W / s) m)."""
        w = (self.head.weight.detach() / self.std).double()
        b = self.head.bias.detach().double() - w @ self.mean.double()
        return ProbeResult(w.float().cpu(), b.float().cpu(), losses, train_s, extract_s, self.total)


class FeatureStats:
    """Running per-dimension sums (float64) of feature rows: the standardisation statistics."""

    def __init__(self):
        self.n, self.sum, self.sumsq = 0, 0.0, 0.0

    def add(self, feats: torch.Tensor, ok: torch.Tensor) -> None:
        """Add the views of readable videos: feats (B, V, C), ok (B,) bool."""
        x = feats[ok].flatten(0, 1).double()
        self.n += len(x)
        self.sum = self.sum + x.sum(0)
        self.sumsq = self.sumsq + (x * x).sum(0)

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) float32; std is floored at 1e-4 so a constant dimension is not blown up."""
        if self.n == 0:
            raise ValueError("no readable training video: cannot standardise the features")
        mean = self.sum / self.n
        var = (self.sumsq / self.n - mean * mean).clamp_min(0.0)
        return mean.float(), var.sqrt().clamp_min(1e-4).float()


def _mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")


def train_probe_cached(train: Features, n_classes: int, cfg: LinearConfig,
                       device: torch.device | str = "cpu") -> ProbeResult:
    """Train the probe on precomputed features.

    Args:
        train: the train split's Features (N, V, C); rows with ok=False add no loss.
        n_classes: classes of the dataset.
        cfg: the probe's hyper-parameters.
        device: where the head trains.
    Returns:
        The ProbeResult (extract_s = 0).
    """
    device = torch.device(device)
    t0 = time.perf_counter()
    feats = torch.from_numpy(np.ascontiguousarray(train.feats)).to(device)
    labels = torch.from_numpy(train.labels).to(device)
    ok = torch.from_numpy(train.ok).to(device)
    stats = None
    if cfg.standardize:
        acc = FeatureStats()
        for idx in torch.arange(len(train), device=device).split(cfg.batch_size):  # batches as the uncached pass
            acc.add(feats[idx], ok[idx])
        stats = acc.mean_std()
    probe = _Probe(feats.shape[-1], n_classes, len(train), cfg, device, stats)
    losses = []
    for epoch in range(probe.epochs):
        order = torch.from_numpy(epoch_order(cfg.seed, epoch, len(train))).to(device)
        batch_losses = [probe.step(feats[idx], labels[idx], ok[idx]) for idx in order.split(cfg.batch_size)]
        losses.append(_mean(batch_losses))
    return probe.result(losses, time.perf_counter() - t0)


def train_probe_uncached(model_video: nn.Module, train_dataset, n_classes: int, cfg: LinearConfig,
                         device: torch.device | str = "cpu", workers: int = 0, extract_batch_size: int = 32,
                         amp: str = "off") -> ProbeResult:
    """Train the probe while running the frozen encoder on every batch of every epoch.

    Args:
        model_video: the frozen VideoViT, on `device`.
        train_dataset: a ClipDataset with the same (deterministic) views the cached features use.
        n_classes: classes of the dataset.
        cfg: the probe's hyper-parameters (same order and batches as `train_probe_cached`).
        device: where the encoder and the head run.
        workers: DataLoader workers.
        extract_batch_size: videos per encoder forward (a probe batch is split into these).
        amp: autocast dtype for the encoder on CUDA.
    Returns:
        The ProbeResult; extract_s is the time spent decoding and encoding.
    """
    device = torch.device(device)
    model_video.eval()
    t0 = time.perf_counter()
    n = len(train_dataset)
    stats = _uncached_stats(model_video, train_dataset, cfg, device, workers, extract_batch_size, amp)
    probe, losses, extract_s, rejected = None, [], time.perf_counter() - t0, {}
    for epoch in range(probe_epochs(cfg, n)):
        batch_losses = []
        t_wait = time.perf_counter()
        for batch in iter_batches(train_dataset, cfg.batch_size, workers, epoch_order(cfg.seed, epoch, n), device):
            feats = _encode(model_video, batch, extract_batch_size, amp)                    # (B, V, C)
            extract_s += time.perf_counter() - t_wait
            probe = probe or _Probe(feats.shape[-1], n_classes, n, cfg, device, stats)
            batch_losses.append(probe.step(feats, batch["label"].to(device), batch["ok"].to(device)))
            rejected |= {int(i): r for i, ok, r in zip(batch["index"], batch["ok"], batch["reason"]) if not ok}
            t_wait = time.perf_counter()
        losses.append(_mean(batch_losses))
    if probe is None:
        raise ValueError("train_probe_uncached: the training set is empty")
    result = probe.result(losses, time.perf_counter() - t0, extract_s)
    result.rejected = rejected
    return result


def _encode(model_video: nn.Module, batch: dict, extract_batch_size: int, amp: str) -> torch.Tensor:
    """(B, V, C) features of a loader batch, `extract_batch_size` videos per encoder forward."""
    return torch.cat([encode_views(model_video, chunk, amp) for chunk in batch["frames"].split(extract_batch_size)])


def _uncached_stats(model_video: nn.Module, dataset, cfg: LinearConfig, device: torch.device, workers: int,
                    extract_batch_size: int, amp: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The standardisation statistics from one extra encoder pass in index order (None if not standardising)."""
    if not cfg.standardize:
        return None
    acc = FeatureStats()
    for batch in iter_batches(dataset, cfg.batch_size, workers, None, device):
        acc.add(_encode(model_video, batch, extract_batch_size, amp), batch["ok"].to(device))
    return acc.mean_std()


def probe_logits(result: ProbeResult, feats: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Logits of every view: (N, V, C) features -> (N, V, K)."""
    x = torch.as_tensor(feats, dtype=torch.float32)
    return x @ result.weight.t() + result.bias


def evaluate_probe(result: ProbeResult, test: Features, ks: Sequence[int] = (1, 5),
                   pairs: Sequence[tuple[int, int]] = ()) -> dict[str, float]:
    """Top-K accuracy (percent) of the view-averaged logits over the readable test videos.

    Args:
        result: the trained probe. test: the test split's features. ks: the K of top-K.
        pairs: order-reversed class pairs: adds `within_pair_top1` (tvts.eval.temporal) when given.
    """
    return score_probe(result, test, ks, pairs)[0]


def score_probe(result: ProbeResult, test: Features, ks: Sequence[int] = (1, 5),
                pairs: Sequence[tuple[int, int]] = ()) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """`evaluate_probe`'s metrics and, per test video, each metric's hit (1.0 / 0.0; nan where the
    video is unreadable or, for within-pair, of an unpaired class): what a paired bootstrap resamples."""
    feats, _ = test.valid()
    logits = average_views(probe_logits(result, feats)) if len(feats) else torch.zeros(0, 1)
    return score_logits(logits, test, ks, pairs)


def score_logits(logits: torch.Tensor, test: Features, ks: Sequence[int] = (1, 5),
                 pairs: Sequence[tuple[int, int]] = ()) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics and per-video hits of view-averaged logits (M, K) of the readable test videos (`score_probe`)."""
    hits = {f"top{k}": np.full(len(test), np.nan) for k in ks}
    hits |= {"within_pair_top1": np.full(len(test), np.nan)} if pairs else {}
    labels = test.labels[test.ok]
    if len(labels) == 0:
        return {name: float("nan") for name in hits}, hits
    for k in ks:
        hits[f"top{k}"][test.ok] = topk_hits(logits, labels, k).double().numpy()
    if pairs:
        hits["within_pair_top1"][test.ok] = within_pair_hits(logits, labels, pairs)
    return {name: _hit_rate(h) for name, h in hits.items()}, hits


def hits_json(hits: np.ndarray) -> list:
    """Per-clip hits as JSON: floats, None where nan (unreadable or not scored)."""
    return [None if np.isnan(h) else float(h) for h in hits]


def _hit_rate(hits: np.ndarray) -> float:
    """Percent of the non-nan hits; nan when there is none."""
    kept = hits[~np.isnan(hits)]
    return 100.0 * float(kept.mean()) if len(kept) else float("nan")
