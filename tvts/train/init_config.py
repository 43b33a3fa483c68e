"""The `init_image_mae` and `init_text_mlm` config sections, as frozen dataclasses.

They import no torch (the workflow checks every section at each `snakemake` parse); the
training code is tvts.train.image_mae and tvts.train.text_mlm.
"""
from __future__ import annotations

from dataclasses import dataclass

from tvts.config import require
from tvts.models.config import VideoMAEConfig


@dataclass(frozen=True)
class StepsConfig:
    """AdamW with linear warm-up then cosine to `lr * lr_floor`, for `steps` steps of `batch_size`."""

    seed: int = 0
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    lr_floor: float = 0.1
    betas: tuple[float, ...] = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_steps: int = 20
    clip_grad: float = 1.0       # 0 = no clipping
    threads: int = 0             # torch CPU threads; 0 = torch's default
    log_every: int = 10
    ckpt_every: int = 100        # step checkpoints (resume); the final one is kept too

    def check(self, where: str) -> None:
        require(self.steps >= 1, where, "steps", "must be >= 1")
        require(self.batch_size >= 1, where, "batch_size", "must be >= 1")
        require(self.lr > 0, where, "lr", "must be > 0")
        require(0 <= self.lr_floor <= 1, where, "lr_floor", "must be in [0, 1]")
        require(len(self.betas) == 2, where, "betas", "must be two numbers")
        require(0 <= self.warmup_steps < self.steps, where, "warmup_steps", "must be in [0, steps)")
        require(self.log_every >= 1, where, "log_every", "must be >= 1")
        require(self.ckpt_every >= 1, where, "ckpt_every", "must be >= 1")


@dataclass(frozen=True)
class ImageMAEConfig(StepsConfig):
    """The `init_image_mae` section. The encoder's sizes are `pretrain.model.video`'s; MAE's own
    recipe (He et al. 2022): mask ratio 0.75, a narrow decoder, normalised-pixel targets, AdamW
    betas (0.9, 0.95) and weight decay 0.05."""

    mask_ratio: float = 0.75
    frames: int = 4096           # frames decoded from the train split (one per window, round-robin)
    short_side: int = 0          # resize stored frames first; 0 = as stored (as pretrain.data.short_side)
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 4
    norm_pix_loss: bool = True   # target: each patch's pixels normalised (MAE's best)
    norm_pix_eps: float = 1e-6   # added to each patch's variance (MAE's); flat frames want more

    def check(self, where: str) -> None:
        super().check(where)
        require(0 < self.mask_ratio < 1, where, "mask_ratio", "must be in (0, 1)")
        require(self.norm_pix_eps > 0, where, "norm_pix_eps", "must be > 0")
        require(self.frames >= 1, where, "frames", "must be >= 1")
        self.decoder().check(where)

    def decoder(self) -> VideoMAEConfig:
        return VideoMAEConfig(decoder_dim=self.decoder_dim, decoder_depth=self.decoder_depth,
                              decoder_heads=self.decoder_heads, norm_pix_loss=self.norm_pix_loss)


@dataclass(frozen=True)
class TextMLMConfig(StepsConfig):
    """The `init_text_mlm` section. The encoder's sizes and the tokenizer's vocabulary size are
    `pretrain.model.text`'s (its scratch keys); BERT's recipe: 15 % of tokens, 80/10/10."""

    mask_prob: float = 0.15
    betas: tuple[float, ...] = (0.9, 0.999)
    weight_decay: float = 0.01
    # Keep the word embeddings (and the tied output projection) at their random draw; only the
    # layers learn. On a templated narration the masked LM cannot tell interchangeable words apart
    # ("the red / blue square": same contexts) and pulls their embeddings together (cosine 0.72
    # between colour words after 300 steps), which a real DistilBERT, trained on open text, does not.
    freeze_word_embeddings: bool = False

    def check(self, where: str) -> None:
        super().check(where)
        require(0 < self.mask_prob < 1, where, "mask_prob", "must be in (0, 1)")
