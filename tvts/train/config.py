"""The `pretrain` config section: model, loss, optimiser, data and runtime, as frozen dataclasses."""
from __future__ import annotations

from dataclasses import dataclass, field

from tvts.config import require
from tvts.models.config import LossConfig, ModelConfig, VideoMAEConfig


METHODS = ("tvts", "videomae")
EPOCHS = ("video", "window")
JPEG_DECODERS = ("simplejpeg", "pil", "simplejpeg-fast")
NORMALISE_ON = ("device", "worker")
DECODE_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with step decay at given epochs (the paper: lr 1e-4, x0.1 after epochs 12 and 16 of 20)."""

    lr: float = 1e-4
    betas: tuple[float, ...] = (0.9, 0.999)
    weight_decay: float = 0.0
    epochs: int = 20
    decay_epochs: tuple[int, ...] = (12, 16)
    decay_factor: float = 0.1
    warmup_steps: int = 0        # linear warm-up (the paper has none)
    grad_accum: int = 1          # micro-batches per optimiser step
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
        require(all(0 < e <= self.epochs for e in self.decay_epochs), where, "decay_epochs", "must lie in 1..epochs")
        require(self.grad_accum >= 1, where, "grad_accum", "must be >= 1")
        require(self.max_skipped_in_row >= 1, where, "max_skipped_in_row", "must be >= 1")
        require(0 <= self.max_skipped_share <= 1, where, "max_skipped_share", "must lie in [0, 1]")
        require(self.max_loss_growth == 0 or self.max_loss_growth > 1, where, "max_loss_growth", "must be 0 (off) or > 1")
        require(self.warmup_steps >= 0, where, "warmup_steps", "must be >= 0")


@dataclass(frozen=True)
class DataConfig:
    batch_size: int = 24         # per GPU (per process)
    workers: int = 4             # DataLoader workers per process
    short_side: int = 0          # resize stored frames first; 0 = as stored by shard_clips
    eval_batch_size: int = 32
    eval_mask: bool = True       # validation sees the tube-masked input it was trained on (fixed seeds)
    prefetch: int = 2
    # "video": an epoch is one window per training video, drawn afresh each epoch among that
    # video's stored windows (the official sampler). "window": every stored window once.
    epoch: str = "video"
    epoch_limit: int = 0         # at most this many samples per epoch, a fresh subset each epoch; 0 = all
    # simplejpeg (libjpeg-turbo, ~1.5x faster) or pil: the same pixels; simplejpeg-fast: faster,
    # other chroma upsampling, other pixels (docs/configuration.md)
    jpeg_decoder: str = "simplejpeg"
    # device: workers ship uint8 crops, normalised on the training device (the same floats, a quarter
    # of the bytes, no float work in the workers); worker: workers ship normalised float32 frames
    normalise_on: str = "device"
    # cpu: workers decode and normalise; cuda: workers ship the drawn JPEG bytes and the main
    # process decodes each batch on the GPU (nvJPEG), the same samples (tvts.train.data.decode_batch)
    decode_device: str = "cpu"
    # a train sample that cannot be read (a corrupt JPEG, bad JSON) is replaced by the next one and
    # counted by reason; more than this many on a rank stop the run
    max_bad_samples: int = 1000

    def check(self, where: str) -> None:
        require(self.max_bad_samples >= 0, where, "max_bad_samples", "must be >= 0")
        require(self.jpeg_decoder in JPEG_DECODERS, where, "jpeg_decoder", f"must be one of {', '.join(JPEG_DECODERS)}")
        require(self.normalise_on in NORMALISE_ON, where, "normalise_on", f"must be one of {', '.join(NORMALISE_ON)}")
        require(self.decode_device in DECODE_DEVICES, where, "decode_device",
                f"must be one of {', '.join(DECODE_DEVICES)}")
        require(self.decode_device == "cpu" or self.short_side == 0, where, "decode_device",
                "cuda decodes frames as stored: set short_side 0 (store them at the size wanted, shard_clips.short_side)")
        require(self.batch_size >= 1, where, "batch_size", "must be >= 1")
        require(self.workers >= 0, where, "workers", "must be >= 0")
        require(self.epoch in EPOCHS, where, "epoch", f"must be one of {', '.join(EPOCHS)}")
        require(self.epoch_limit >= 0, where, "epoch_limit", "must be >= 0 (0 = no limit)")


@dataclass(frozen=True)
class RuntimeConfig:
    amp: str = "bf16"            # autocast (GPU and CPU); "off" = float32 (tvts.train.precision)
    compile: bool = False        # torch.compile the training engine (inductor, GPU and CPU)
    grad_checkpointing: bool = False
    log_every: int = 10          # optimiser steps between MLflow metric logs
    ckpt_every: int = 500        # optimiser steps between step checkpoints
    keep_last: int = 2           # step checkpoints kept (epoch-end ones are all kept)
    threads: int = 0             # torch CPU threads; 0 = torch's default

    def check(self, where: str) -> None:
        require(self.amp in ("bf16", "fp16", "off"), where, "amp", "must be bf16, fp16 or off")
        require(self.log_every >= 1, where, "log_every", "must be >= 1")
        require(self.ckpt_every >= 1, where, "ckpt_every", "must be >= 1")
        require(self.keep_last >= 1, where, "keep_last", "must be >= 1")


@dataclass(frozen=True)
class PretrainConfig:
    """`method` picks the pretext task: tvts (sort + contrastive, the paper) or videomae (the
    masked-reconstruction baseline, which uses `videomae`, `model.mask_ratio` and `model.mask_kind`)."""

    seed: int = 0
    init: str = "random"         # random | mae:<path> | tvts:<path>
    method: str = "tvts"         # tvts | videomae
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    videomae: VideoMAEConfig = field(default_factory=VideoMAEConfig)  # decoder and target (method videomae)

    def check(self, where: str) -> None:
        kind = self.init.split(":", 1)[0]
        require(kind in ("random", "mae", "tvts") and (kind == "random") == (":" not in self.init),
                where, "init", f"must be random, mae:<path> or tvts:<path>, got {self.init!r}")
        require(self.method in METHODS, where, "method", f"must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.method == "videomae":
            self._check_videomae(where, kind)
        v, k = self.model.video, self.model.k
        require(self.loss.sort_by != "video" or v.num_frames % (k * v.tubelet) == 0, where, "loss.sort_by",
                f"video needs model.video.num_frames ({v.num_frames}) to split into model.k ({k}) segments "
                f"of whole tubelets ({v.tubelet} frames)")

    def _check_videomae(self, where: str, init_kind: str) -> None:
        """VideoMAE learns from hidden tubelets only, in training and in validation alike."""
        require(self.model.mask_ratio > 0, where, "model.mask_ratio", "must be > 0 for method videomae")
        require(self.data.eval_mask, where, "data.eval_mask",
                "must be true for method videomae (validation scores the masked tubelets)")
        require(init_kind != "tvts", where, "init", "method videomae starts from random or mae:<path> "
                "(a TVTS release has no decoder)")
