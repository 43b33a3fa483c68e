"""The model's config dataclasses (`pretrain.model`, `pretrain.loss`, `pretrain.videomae`).

They import no torch, so the workflow checks a config (at every `snakemake` parse) without
loading the model code; the modules that build each part import them from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tvts.config import require


MASK_KINDS = ("per_tube", "shared")


VIDEO_ENCODERS = ("vit", "pixels")
INFLATIONS = ("repeat", "mean")


@dataclass(frozen=True)
class VideoConfig:
    """Video encoder size. Paper: ViT-B/16 at 16x224^2 with 2x16x16 tubelets."""

    img_size: int = 224
    patch_size: int = 16
    tubelet: int = 2
    num_frames: int = 16
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    temporal_init_std: float = 0.0  # the paper zero-inits the temporal embedding (see VideoViT)
    pos_init_std: float = 0.02      # the spatial position embedding's init std (timm's and the paper's)
    # "vit": the ViT. "pixels": a fixed, weightless pixel feature (tvts/models/pixels.py), the
    # science grid's pixel-probe control; the sizes above then only shape its input.
    encoder: str = "vit"
    # How `pretrain.init: mae:` turns the image kernel (C, 3, P, P) into the tubelet kernel:
    # "repeat" (the paper's code) copies it to every frame, so a static clip's tokens are `tubelet`
    # times the image's; "mean" (I3D's inflation) divides the copies by `tubelet`, so a static clip
    # gives exactly the tokens the image MAE was trained on.
    inflate: str = "repeat"

    @property
    def tubes(self) -> int:
        return self.num_frames // self.tubelet

    @property
    def patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    def check(self, where: str) -> None:
        require(self.img_size % self.patch_size == 0, where, "img_size", "must be a multiple of patch_size")
        require(self.num_frames % self.tubelet == 0, where, "num_frames", "must be a multiple of tubelet")
        require(self.dim % self.heads == 0, where, "dim", "must be a multiple of heads")
        require(self.depth >= 1, where, "depth", "must be >= 1")
        require(self.pos_init_std > 0, where, "pos_init_std", "must be > 0")
        require(self.encoder in VIDEO_ENCODERS, where, "encoder", f"must be one of {', '.join(VIDEO_ENCODERS)}")
        require(self.inflate in INFLATIONS, where, "inflate", f"must be one of {', '.join(INFLATIONS)}")


@dataclass(frozen=True)
class TextConfig:
    model: str = "distilbert-base-uncased"  # or "scratch"
    max_length: int = 50
    pool: str = "cls"    # the paper: CLS of last_hidden_state; "mean" = masked mean of the tokens
    # Used by "scratch" only:
    vocab_size: int = 2000
    dim: int = 768
    depth: int = 6
    heads: int = 12
    hidden_dim: int = 3072
    dropout: float = 0.1

    def check(self, where: str) -> None:
        require(self.max_length >= 4, where, "max_length", "must be >= 4")
        require(self.pool in ("cls", "mean"), where, "pool", "must be cls or mean")
        require(self.dim % self.heads == 0, where, "dim", "must be a multiple of heads")
        require(self.vocab_size >= 100, where, "vocab_size", "must be >= 100")


@dataclass(frozen=True)
class SortConfig:
    depth: int = 2
    heads: int = 12
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class VideoMAEConfig:
    """The decoder (VideoMAE ViT-B: 384 wide, 4 blocks, 6 heads) and the reconstruction target."""

    decoder_dim: int = 384
    decoder_depth: int = 4
    decoder_heads: int = 6
    mlp_ratio: float = 4.0
    norm_pix_loss: bool = True   # target: each tubelet's pixels normalised per channel (the paper's best)

    def check(self, where: str) -> None:
        require(self.decoder_heads >= 1, where, "decoder_heads", "must be >= 1")
        require(self.decoder_dim % self.decoder_heads == 0, where, "decoder_dim", "must be a multiple of decoder_heads")
        require(self.decoder_dim >= 6 and self.decoder_dim % 2 == 0, where, "decoder_dim",
                "must be even and >= 6 (3D sin-cos position embedding)")
        require(self.decoder_depth >= 1, where, "decoder_depth", "must be >= 1")
        require(self.mlp_ratio > 0, where, "mlp_ratio", "must be > 0")


@dataclass(frozen=True)
class ModelConfig:
    video: VideoConfig = field(default_factory=VideoConfig)
    text: TextConfig = field(default_factory=TextConfig)
    sort: SortConfig = field(default_factory=SortConfig)
    k: int = 4                 # transcripts per sample
    embed_dim: int = 256       # contrastive projection size
    mask_ratio: float = 0.75   # tube masking while pretraining
    mask_kind: str = "per_tube"  # per_tube: each tube its own patches (TVTS); shared: one mask for all tubes (VideoMAE)

    def check(self, where: str) -> None:
        require(self.k >= 2, where, "k", "must be >= 2")
        require(0.0 <= self.mask_ratio < 1.0, where, "mask_ratio", "must be in [0, 1)")
        require(self.mask_kind in MASK_KINDS, where, "mask_kind", f"must be one of {', '.join(MASK_KINDS)}, "
                f"got {self.mask_kind!r}")


REDUCTIONS = ("sum", "mean")


GATHER_GRADS = ("local", "exact")
SORT_TARGETS = ("transcripts", "video", "arrow")
ORDER_READOUTS = ("cls", "segments")


@dataclass(frozen=True)
class LossConfig:
    temperature: float = 0.05
    align_weight: float = 1.0   # contrastive term; 0 = sort-only variant
    sort_weight: float = 2.0    # sort cross-entropy; 0 = contrastive-only variant
    sort_video: bool = True     # False: the text-only sort baseline (the head sees no video)
    detach_text: bool = True    # the paper: the sort loss trains only the video side
    # "sum": v->t + t->v cross-entropy, as the official code; "mean": their mean (half the weight)
    align_reduction: str = "sum"
    # "local": the official all-gather: every rank computes the full-batch loss and keeps only its
    # own slice of the gradient, so on W ranks the contrastive gradient is 1/W of the full-batch
    # one. "exact": the full-batch gradient. One process: both are the same.
    gather_grad: str = "local"
    # What the sort loss orders. "transcripts": the paper's pretext (the K shuffled ASR sentences,
    # ordered by attention over the video). "video": a positive control, not the paper: the clip's
    # own K time segments are shuffled and a linear head on the video CLS predicts each one's
    # position (a clean, direct order signal aimed at the feature the frozen probes read). "arrow":
    # another control: the whole clip plays backwards for half the samples (those whose transcript
    # permutation puts its first two slots out of order, so the draw is the data's own) and a linear
    # head on the CLS tells which (a 2-way "sort": the sort metrics read as arrow accuracies).
    sort_by: str = "transcripts"
    # sort_by video only: what the order head reads. "cls": the final-norm CLS (one vector must bind
    # each segment's content to its slot, which a small ViT is slow to learn); "segments": each
    # slot's tokens, averaged, scored by one shared linear layer.
    order_readout: str = "cls"

    def check(self, where: str) -> None:
        require(self.temperature > 0, where, "temperature", "must be > 0")
        require(self.align_reduction in REDUCTIONS, where, "align_reduction", f"must be one of {', '.join(REDUCTIONS)}")
        require(self.gather_grad in GATHER_GRADS, where, "gather_grad", f"must be one of {', '.join(GATHER_GRADS)}")
        require(self.align_weight > 0 or self.sort_weight > 0, where, "sort_weight", "one loss weight must be > 0")
        require(self.sort_by in SORT_TARGETS, where, "sort_by", f"must be one of {', '.join(SORT_TARGETS)}")
        require(self.order_readout in ORDER_READOUTS, where, "order_readout",
                f"must be one of {', '.join(ORDER_READOUTS)}")
        require(self.sort_by == "transcripts" or self.sort_video, where, "sort_by",
                f"{self.sort_by} needs sort_video: true (the text-only baseline has no video to order)")
