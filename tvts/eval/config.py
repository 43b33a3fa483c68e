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
    lists: for ssv2_list, the list file of a split when it is not one of the names the reader knows.
    """

    format: str
    root: str
    fold: int = 1
    max_videos: int = 0
    lists: dict[str, str] = field(default_factory=dict)  # ssv2_list: split -> its list file (relative to root)

    def check(self, where: str) -> None:
        require(bool(self.format), where, "format", "must be a reader name")
        require(not self.lists or self.format == "ssv2_list", where, "lists", "only the ssv2_list format reads lists")
        require(set(self.lists) <= {"train", "test"}, where, "lists", "maps train and/or test to a list file")
        require(self.fold >= 1, where, "fold", "must be >= 1")
        require(self.max_videos >= 0, where, "max_videos", "must be >= 0")


@dataclass(frozen=True)
class ViewsConfig:
    """Test-time views and feature extraction (`eval.views`); see tvts.eval.views."""

    short_side: int = 224    # resize before cropping the model's img_size
    temporal: int = 2        # temporal views (the paper: 2)
    spatial: int = 3         # spatial crops (the paper: 3)
    batch_size: int = 32     # videos per extraction batch
    workers: int = 4         # DataLoader workers (decoding)
    amp: str = "bf16"        # autocast on GPU while extracting features ("off" = float32); ignored on CPU

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
        require(0 <= self.warmup_epochs <= self.epochs, where, "warmup_epochs", "must be in 0..epochs")
        require(0 <= self.min_lr <= self.lr, where, "min_lr", "must be in [0, lr]")
        require(self.batch_size >= 1, where, "batch_size", "must be >= 1")
        require(0 <= self.label_smoothing < 1, where, "label_smoothing", "must be in [0, 1)")
        require(self.train_views in ("all", "center"), where, "train_views", "must be all or center")
        require(self.mode in ("cached", "uncached"), where, "mode", "must be cached or uncached")


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
    """Read one split with the dataset's reader and keep its first `max_videos` videos (if > 0).

    Args:
        spec: the dataset's config.
        split: "train" or "test".
    Returns:
        The VideoSet; videos beyond max_videos are dropped silently (a demo-size choice, not a reject).
    """
    from tvts.data.formats import read_split  # imported here: the readers pull in their own dependencies

    options = {"list_file": spec.lists[split]} if split in spec.lists else {}
    vset = read_split(spec.format, Path(spec.root), split, fold=spec.fold, **options)
    if spec.max_videos > 0:
        vset.items = vset.items[:spec.max_videos]
    return vset
