"""The parts of the `eval:` config section used by the zero-shot and linear-probe stages.

The section is shared by every evaluation stage (fine-tuning and text-to-video add their own
keys), so each stage loads only the parts it needs with `eval_part`, never the whole section
as one dataclass. Frame count and crop size are not here: they come from the model's
pretraining config (`model.video.num_frames` / `img_size`).

    eval:
      datasets: {ssv2: {format: ssv2, root: data/demo/ssv2, fold: 1, max_videos: 0}}
      views: {short_side: 224, temporal: 2, spatial: 3, batch_size: 32, workers: 4}
      zeroshot_v2v: {short_side: 224}
      linear: {lr: 0.1, epochs: 100, ...}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tvts.config import ConfigError, from_dict, load_raw_config, require
from tvts.data.formats.common import VideoSet

T = TypeVar("T")


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one downstream dataset (`eval.datasets.<name>`).

    format: reader name (tvts.data.formats), e.g. ssv2, k400, ucf101, hmdb51, msrvtt.
    root: the dataset folder. fold: split number where a dataset has several (UCF/HMDB).
    max_videos: keep the first N videos of each split in annotation order (0 = all): demos only.
    max_test_videos: the same for the test split alone (0 = as max_videos).
    lists: for ssv2_list, the list file of a split when it is not one of the names the reader knows.
    reversed_pairs: which classes are order-reversed pairs, for the within-pair probe
        (tvts.eval.temporal): a separator (", then ": "A, then B" pairs with "B, then A"), or a
        JSON list of [name, name] pairs; "" = none.
    """

    format: str
    root: str
    fold: int = 1
    max_videos: int = 0
    max_test_videos: int = 0
    lists: dict[str, str] = field(default_factory=dict)  # ssv2_list: split -> its list file (relative to root)
    reversed_pairs: str = ""

    def check(self, where: str) -> None:
        require(bool(self.format), where, "format", "must be a reader name")
        require(not self.lists or self.format == "ssv2_list", where, "lists", "only the ssv2_list format reads lists")
        require(set(self.lists) <= {"train", "test"}, where, "lists", "maps train and/or test to a list file")
        require(self.fold >= 1, where, "fold", "must be >= 1")
        require(self.max_videos >= 0, where, "max_videos", "must be >= 0")
        require(self.max_test_videos >= 0, where, "max_test_videos", "must be >= 0")


@dataclass(frozen=True)
class ViewsConfig:
    """Test-time views and feature extraction (`eval.views`); see tvts.eval.views."""

    short_side: int = 224    # resize before cropping the model's img_size
    temporal: int = 2        # temporal views (the paper: 2)
    spatial: int = 3         # spatial crops (the paper: 3)
    batch_size: int = 32     # videos per extraction batch
    workers: int = 4         # DataLoader workers (decoding)
    amp: str = "bf16"        # autocast while extracting features, GPU or CPU ("off" = float32)

    def check(self, where: str) -> None:
        require(self.short_side >= 8, where, "short_side", "must be >= 8")
        require(self.temporal >= 1, where, "temporal", "must be >= 1")
        require(self.spatial >= 1, where, "spatial", "must be >= 1")
        require(self.batch_size >= 1, where, "batch_size", "must be >= 1")
        require(self.workers >= 0, where, "workers", "must be >= 0")
        require(self.amp in ("bf16", "fp16", "off"), where, "amp", "must be bf16, fp16 or off")


@dataclass(frozen=True)
class ZeroShotV2VConfig:
    """Zero-shot video-to-video retrieval (`eval.zeroshot_v2v`): one centre view per video."""

    short_side: int = 224    # the paper: short side 224, centre crop 224
    split: str = "test"      # SSV2: the validation list
    ks: tuple[int, ...] = (1, 5, 10)

    def check(self, where: str) -> None:
        require(self.short_side >= 8, where, "short_side", "must be >= 8")
        require(self.split in ("train", "test"), where, "split", "must be train or test")
        require(len(self.ks) > 0 and min(self.ks) >= 1, where, "ks", "must be positive")


@dataclass(frozen=True)
class LinearConfig:
    """Linear probe on frozen final-norm CLS features (`eval.linear`); protocol in tvts.eval.linear.

    Defaults are the official script's stated SGD protocol (lr 0.1, momentum 0.9, weight
    decay 1e-9, 10 warm-up + cosine over 100 epochs). The device is the stage's --device.
    """

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-9
    epochs: int = 100
    warmup_epochs: int = 10
    min_lr: float = 0.0
    batch_size: int = 256         # videos per step (each brings all its training views)
    min_steps: int = 0            # at least this many steps (more epochs on a small set); 0 = the official 100 epochs
    label_smoothing: float = 0.0
    standardize: bool = True      # standardise features with train-set mean/std (folded into the head)
    train_views: str = "all"      # all: each test-style view of a train video is an example; center: 1 view
    mode: str = "cached"          # "cached": features once; "uncached": the frozen backbone runs every epoch
    seed: int = 0

    def check(self, where: str) -> None:
        require(self.lr > 0, where, "lr", "must be > 0")
        require(0 <= self.momentum < 1, where, "momentum", "must be in [0, 1)")
        require(self.weight_decay >= 0, where, "weight_decay", "must be >= 0")
        require(self.epochs >= 1, where, "epochs", "must be >= 1")
        require(self.min_steps >= 0, where, "min_steps", "must be >= 0")
        require(0 <= self.warmup_epochs <= self.epochs, where, "warmup_epochs", "must be in 0..epochs")
        require(0 <= self.min_lr <= self.lr, where, "min_lr", "must be in [0, lr]")
        require(self.batch_size >= 1, where, "batch_size", "must be >= 1")
        require(0 <= self.label_smoothing < 1, where, "label_smoothing", "must be in [0, 1)")
        require(self.train_views in ("all", "center"), where, "train_views", "must be all or center")
        require(self.mode in ("cached", "uncached"), where, "mode", "must be cached or uncached")


@dataclass(frozen=True)
class TemporalConfig:
    """`eval.temporal`: the temporal-order probes (tvts.eval.temporal) on frozen features.

    The classifiers follow the linear probe's protocol (`eval.linear`: optimiser, schedule,
    standardisation, seed); train and test clips both take the views named here.
    """

    # cls: final-norm CLS (the paper's); mean: mean of the patch tokens; attentive: the attentive
    # probe (eval.attentive) over every final-norm token
    pools: tuple[str, ...] = ("cls", "mean")
    views: str = "center"                      # center: one view per clip; all: eval.views temporal x spatial
    # the arrow probe trains on the first N train clips, both ways (0 = every train clip): each
    # reversed clip is one more forward pass of the encoder; the test clips are always all reversed
    arrow_train_clips: int = 0

    def check(self, where: str) -> None:
        require(self.arrow_train_clips >= 0, where, "arrow_train_clips", "must be >= 0 (0 = every train clip)")
        require(len(self.pools) > 0 and set(self.pools) <= {"cls", "mean", "attentive"}
                and len(set(self.pools)) == len(self.pools), where, "pools", "must be distinct names from cls, mean, attentive")
        require(self.views in ("center", "all"), where, "views", "must be center or all")


@dataclass(frozen=True)
class AttentiveConfig:
    """`eval.attentive`: the attentive probe over the frozen token grid (tvts.eval.attentive).

    Not in the paper (its readout is the CLS linear probe): the frozen-video protocol of V-JEPA,
    cut to learned queries without key/value projections so that it trains on a CPU.
    """

    queries: int = 4
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-2     # at 1e-3 it did not fit its training clips in 1500 steps (docs/results.md)
    weight_decay: float = 0.05
    warmup_steps: int = 100
    seed: int = 0

    def check(self, where: str) -> None:
        require(self.queries >= 1, where, "queries", "must be >= 1")
        require(self.steps >= 1, where, "steps", "must be >= 1")
        require(self.batch_size >= 1, where, "batch_size", "must be >= 1")
        require(self.lr > 0, where, "lr", "must be > 0")
        require(self.weight_decay >= 0, where, "weight_decay", "must be >= 0")
        require(0 <= self.warmup_steps <= self.steps, where, "warmup_steps", "must be in 0..steps")


def load_eval_section(config_path: str | None = None, config_json: str | None = None) -> dict[str, Any]:
    """The raw `eval` mapping from `--config-json '{"eval": {...}}'` or a full YAML file ({} if absent)."""
    section = load_raw_config(config_path, config_json).get("eval") or {}
    if not isinstance(section, dict):
        raise ConfigError("eval: expected a mapping")
    return section


def eval_part(section: dict[str, Any], name: str, cls: type[T]) -> T:
    """Load `eval.<name>` into the dataclass `cls` (defaults when absent; unknown keys are errors)."""
    return from_dict(cls, section.get(name), f"eval.{name}")


def dataset_spec(section: dict[str, Any], name: str) -> DatasetSpec:
    """`eval.datasets.<name>` as a DatasetSpec.

    Raises:
        ConfigError: when the dataset is not configured.
    """
    datasets = section.get("datasets") or {}
    if name not in datasets:
        raise ConfigError(f"eval.datasets.{name}: not configured (known: {', '.join(sorted(datasets)) or 'none'})")
    return from_dict(DatasetSpec, datasets[name], f"eval.datasets.{name}")


def load_dataset_split(spec: DatasetSpec, split: str) -> VideoSet:
    """Read one split with the dataset's reader and keep its first `max_videos` videos (if > 0;
    `max_test_videos` for the test split when set).

    Args:
        spec: the dataset's config.
        split: "train" or "test".
    Returns:
        The VideoSet; videos beyond max_videos are dropped silently (a demo-size choice, not a reject).
    """
    from tvts.data.formats import read_split  # imported here: the readers pull in their own dependencies

    options = {"list_file": spec.lists[split]} if split in spec.lists else {}
    vset = read_split(spec.format, Path(spec.root), split, fold=spec.fold, **options)
    limit = spec.max_test_videos if split == "test" and spec.max_test_videos > 0 else spec.max_videos
    if limit > 0:
        vset.items = vset.items[:limit]
    return vset


NO_FLIP_FORMATS = ("ssv2", "ssv2_list")  # their classes name left/right: a flip would change the label


@dataclass(frozen=True)
class FinetuneConfig:
    """`eval.finetune`: the fine-tuning recipe. Defaults are the paper's (see the module docstring)."""

    # optimiser and schedule
    lr: float = 1e-3                 # base lr per `lr_batch` clips of the global batch
    lr_batch: int = 256              # peak lr = lr * global_batch / lr_batch; 0 = use lr as given
    min_lr: float = 1e-6             # the cosine's end (scaled by layer decay like the peak)
    betas: tuple[float, ...] = (0.9, 0.999)
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    epochs: int = 50
    warmup_epochs: int = 5
    batch_size: int = 8              # clips per process and micro-batch; global = x ranks x grad_accum
    grad_accum: int = 1
    clip_grad: float = 0.0           # 0 = no clipping
    label_smoothing: float = 0.1
    # model
    drop_path: float = 0.1
    pool: str = "cls"                # cls: final-norm CLS; mean: mean of the final-norm patch tokens
    head_dropout: float = 0.0
    head_init_scale: float = 0.001
    grad_checkpointing: bool = False
    # augmentation
    rand_augment: str = "rand-m7-n4-mstd0.5-inc1"   # "" = none
    reprob: float = 0.25             # random erasing probability
    crop_scale: tuple[float, ...] = (0.08, 1.0)
    crop_ratio: tuple[float, ...] = (0.75, 1.3333)
    flip: str = "auto"               # auto: flip except on SSV2; on; off
    train_mask_ratio: float = 0.0    # tube masking while training (demo speed-up; the paper: 0)
    # augmented: random TSN frames + the augmentation above (the paper's); test: every train clip is
    # the test's single centre view, no augmentation (a plain supervised control's input)
    train_view: str = "augmented"
    # runtime
    amp: str = "bf16"                # autocast, GPU or CPU ("off" = float32)
    compile: bool = False            # torch.compile the training forward (tvts.train.precision)
    seed: int = 0
    workers: int = 4                 # DataLoader workers for training clips
    ckpt_every: int = 500            # optimiser steps between step checkpoints
    keep_last: int = 2               # step (and epoch-end) checkpoints kept
    log_every: int = 10
    val_every: int = 0               # evaluate the test split every N epochs (val/top1); 0 = at the end only
    threads: int = 0                 # torch CPU threads; 0 = torch's default

    def check(self, where: str) -> None:
        require(self.lr > 0, where, "lr", "must be > 0")
        require(self.lr_batch >= 0, where, "lr_batch", "must be >= 0")
        require(self.min_lr >= 0, where, "min_lr", "must be >= 0")
        require(self.train_view in ("augmented", "test"), where, "train_view", "must be augmented or test")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), where, "betas",
                "must be two numbers in [0, 1)")
        require(self.weight_decay >= 0, where, "weight_decay", "must be >= 0")
        require(0 < self.layer_decay <= 1, where, "layer_decay", "must be in (0, 1]")
        require(self.epochs >= 1, where, "epochs", "must be >= 1")
        require(0 <= self.warmup_epochs <= self.epochs, where, "warmup_epochs", "must be in 0..epochs")
        require(self.batch_size >= 1, where, "batch_size", "must be >= 1")
        require(self.grad_accum >= 1, where, "grad_accum", "must be >= 1")
        require(self.clip_grad >= 0, where, "clip_grad", "must be >= 0")
        require(0 <= self.label_smoothing < 1, where, "label_smoothing", "must be in [0, 1)")
        require(0 <= self.drop_path < 1, where, "drop_path", "must be in [0, 1)")
        require(self.pool in ("cls", "mean"), where, "pool", "must be cls or mean")
        require(0 <= self.head_dropout < 1, where, "head_dropout", "must be in [0, 1)")
        require(self.head_init_scale > 0, where, "head_init_scale", "must be > 0")
        require(self.rand_augment == "" or self.rand_augment.startswith("rand-"), where, "rand_augment",
                "must be a timm RandAugment string like rand-m7-n4-mstd0.5-inc1, or empty")
        require(0 <= self.reprob <= 1, where, "reprob", "must be in [0, 1]")
        require(len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1, where,
                "crop_scale", "must be (min, max) with 0 < min <= max <= 1")
        require(len(self.crop_ratio) == 2 and 0 < self.crop_ratio[0] <= self.crop_ratio[1], where,
                "crop_ratio", "must be (min, max) with 0 < min <= max")
        require(self.flip in ("auto", "on", "off"), where, "flip", "must be auto, on or off")
        require(0 <= self.train_mask_ratio < 1, where, "train_mask_ratio", "must be in [0, 1)")
        require(self.amp in ("bf16", "fp16", "off"), where, "amp", "must be bf16, fp16 or off")
        for key in ("workers", "val_every", "threads"):
            require(getattr(self, key) >= 0, where, key, "must be >= 0")
        for key in ("ckpt_every", "keep_last", "log_every"):
            require(getattr(self, key) >= 1, where, key, "must be >= 1")

    def uses_flip(self, fmt: str) -> bool:
        """Whether training flips clips of a dataset in reader format `fmt`."""
        return self.flip == "on" or (self.flip == "auto" and fmt not in NO_FLIP_FORMATS)

    def peak_lr(self, global_batch: int) -> float:
        return self.lr * global_batch / self.lr_batch if self.lr_batch else self.lr


@dataclass(frozen=True)
class T2VConfig:
    """`eval.t2v`: zero-shot evaluation, then `epochs` of contrastive fine-tuning (0 = zero-shot only)."""

    epochs: int = 5
    warmup_epochs: int = 1
    lr: float = 3e-5                  # peak lr (not scaled by batch), per-step warm-up then cosine
    min_lr: float = 0.0
    betas: tuple[float, ...] = (0.9, 0.999)
    weight_decay: float = 0.01        # AdamW, not on biases and norms
    batch_size: int = 16              # pairs per process; the loss's negatives are the global batch
    grad_accum: int = 1
    clip_grad: float = 0.0
    temperature: float = 0.0          # 0 = the checkpoint's pretraining temperature (0.05)
    max_length: int = 0               # caption tokens; 0 = the checkpoint's text max_length
    test_captions: str = "auto"       # first | all | auto (all for msvd, first otherwise)
    test_views: str = "center"        # center | views (eval.views temporal x spatial, embeddings averaged)
    train_captions: str = "random"    # random: one caption per (epoch, video), seeded; first: always the first
    train_mask_ratio: float = 0.0     # tube masking of training clips (demo speed-up; 0 = full input)
    text_batch_size: int = 256        # captions per text-encoder forward at test time
    amp: str = "bf16"
    compile: bool = False             # torch.compile the training forward (tvts.train.precision)
    seed: int = 0
    workers: int = 4
    ckpt_every: int = 500
    keep_last: int = 2
    log_every: int = 10
    threads: int = 0

    def check(self, where: str) -> None:
        require(self.epochs >= 0, where, "epochs", "must be >= 0")
        require(self.warmup_epochs >= 0 and (self.epochs == 0 or self.warmup_epochs <= self.epochs), where,
                "warmup_epochs", "must be in 0..epochs")
        require(self.lr > 0, where, "lr", "must be > 0")
        require(self.min_lr >= 0, where, "min_lr", "must be >= 0")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), where, "betas",
                "must be two numbers in [0, 1)")
        require(self.weight_decay >= 0, where, "weight_decay", "must be >= 0")
        require(self.batch_size >= 2, where, "batch_size", "must be >= 2 (in-batch negatives)")
        require(self.grad_accum >= 1, where, "grad_accum", "must be >= 1")
        require(self.clip_grad >= 0, where, "clip_grad", "must be >= 0")
        require(self.temperature >= 0, where, "temperature", "must be >= 0 (0 = the checkpoint's)")
        require(self.max_length == 0 or self.max_length >= 4, where, "max_length", "must be 0 or >= 4")
        require(self.test_captions in ("first", "all", "auto"), where, "test_captions", "must be first, all or auto")
        require(self.test_views in ("center", "views"), where, "test_views", "must be center or views")
        require(self.train_captions in ("random", "first"), where, "train_captions", "must be random or first")
        require(0 <= self.train_mask_ratio < 1, where, "train_mask_ratio", "must be in [0, 1)")
        require(self.text_batch_size >= 1, where, "text_batch_size", "must be >= 1")
        require(self.amp in ("bf16", "fp16", "off"), where, "amp", "must be bf16, fp16 or off")
        for key in ("workers", "threads"):
            require(getattr(self, key) >= 0, where, key, "must be >= 0")
        for key in ("ckpt_every", "keep_last", "log_every"):
            require(getattr(self, key) >= 1, where, key, "must be >= 1")

    def query_mode(self, fmt: str) -> str:
        """"first" or "all" for a dataset in reader format `fmt`."""
        if self.test_captions != "auto":
            return self.test_captions
        return "all" if fmt == "msvd" else "first"
