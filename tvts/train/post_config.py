"""The `post_pretrain` config section: the contrastive second stage's optimiser, data, runtime and
selection, as frozen dataclasses.

Apart from `tvts.train.post_pretrain` (which trains with torch) so that the workflow's config
check needs no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tvts.config import require
from tvts.models.config import LossConfig
from tvts.train.config import RuntimeConfig

SELECT_METRICS = ("loss_align", "t2v_r1", "v2t_r1", "step")


@dataclass(frozen=True)
class PostOptimConfig:
    """AdamW at a constant lr (the official post-pretraining config has no schedule)."""

    lr: float = 1e-4
    betas: tuple[float, ...] = (0.9, 0.999)
    weight_decay: float = 0.0
    epochs: int = 12
    warmup_steps: int = 0
    grad_accum: int = 1
    clip_grad: float = 0.0       # 0 = no clipping
    # The divergence guard (tvts.train.trainer): a step with a non-finite loss or gradient norm is
    # skipped; this many in a row, or a larger share of all steps (from that many skips on), stop the run.
    max_skipped_in_row: int = 10
    max_skipped_share: float = 0.05
    max_loss_growth: float = 1e4  # a step whose loss exceeds this times the first step's is skipped too; 0 = off

    def check(self, where: str) -> None:
        require(self.lr > 0, where, "lr", "must be > 0")
        require(len(self.betas) == 2, where, "betas", "must be two numbers")
        require(self.epochs >= 1, where, "epochs", "must be >= 1")
        require(self.warmup_steps >= 0, where, "warmup_steps", "must be >= 0")
        require(self.grad_accum >= 1, where, "grad_accum", "must be >= 1")
        require(self.max_skipped_in_row >= 1, where, "max_skipped_in_row", "must be >= 1")
        require(0 <= self.max_skipped_share <= 1, where, "max_skipped_share", "must lie in [0, 1]")
        require(self.max_loss_growth == 0 or self.max_loss_growth > 1, where, "max_loss_growth", "must be 0 (off) or > 1")


@dataclass(frozen=True)
class PostDataConfig:
    batch_size: int = 48           # per GPU and per source (the official 48 images, 48 clips)
    eval_batch_size: int = 64
    workers: int = 4
    prefetch: int = 2
    epoch_limit: int = 1_000_000   # samples per epoch, both sources together (the official max_samples_per_epoch)
    val_limit: int = 1000          # val pairs per source (the official WebVid val samples 1000)
    clip_frames: int = 4           # WebVid frames per clip; an image is its frame repeated to one tubelet
    crop_scale: tuple[float, ...] = (0.5, 1.0)  # RandomResizedCrop area range in training
    flip: bool = True              # random horizontal flip in training (the official image transform)
    max_bad_samples: int = 1000    # unreadable train samples (each replaced by the next) a rank may meet before stopping

    def check(self, where: str) -> None:
        require(self.batch_size >= 1, where, "batch_size", "must be >= 1")
        require(self.max_bad_samples >= 0, where, "max_bad_samples", "must be >= 0")
        require(self.eval_batch_size >= 1, where, "eval_batch_size", "must be >= 1")
        require(self.workers >= 0, where, "workers", "must be >= 0")
        require(self.epoch_limit >= 0, where, "epoch_limit", "must be >= 0 (0 = no limit)")
        require(self.val_limit >= 0, where, "val_limit", "must be >= 0 (0 = no limit)")
        require(self.clip_frames >= 1, where, "clip_frames", "must be >= 1")
        require(len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1, where,
                "crop_scale", "must be two numbers 0 < lo <= hi <= 1")


@dataclass(frozen=True)
class PostPretrainConfig:
    """`post_pretrain:`: the contrastive second stage, and how its checkpoint is selected."""

    seed: int = 0
    temperature: float = 0.05
    align_reduction: str = "sum"   # v->t + t->v (the official NormSoftmaxLoss), or their mean
    gather_grad: str = "local"     # the official all-gather (tvts.train.pretext.align_loss)
    optim: PostOptimConfig = field(default_factory=PostOptimConfig)
    data: PostDataConfig = field(default_factory=PostDataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    metric: str = "loss_align"     # selection on the held-out pairs; the official monitors min val loss
    register: bool = True          # register the winner as tvts-<exp> (alias best)

    def check(self, where: str) -> None:
        require(self.metric in SELECT_METRICS, where, "metric", f"must be one of {', '.join(SELECT_METRICS)}")
        self.loss.check(where)

    @property
    def loss(self) -> LossConfig:
        return LossConfig(temperature=self.temperature, sort_weight=0.0, align_reduction=self.align_reduction,
                          gather_grad=self.gather_grad)
