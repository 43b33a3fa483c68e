"""Video ViT: Conv3d tubelets, shared 2D position + temporal embeddings, tube masking, timm blocks.

Tokens are laid out tube-major: (B, T', N, C) with T' = frames / tubelet temporal tubes and
N = (img / patch)^2 patches per tube. Tube masking keeps, per sample and per tube, its own
random subset of patches (`per_tube`, the TVTS paper), or one subset for every tube of a
sample (`shared`, VideoMAE's tube masking); the indices come from the data workers
(`tube_keep_indices`).
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn as nn
from timm.layers import trunc_normal_, trunc_normal_tf_
from timm.models.vision_transformer import Block
from torch.utils.checkpoint import checkpoint

from tvts.models.config import MASK_KINDS, VideoConfig

PIXEL_MEAN = (0.485, 0.456, 0.406)  # ImageNet: the normalisation of every frame the encoder sees
PIXEL_STD = (0.229, 0.224, 0.225)
MEAN = np.array(PIXEL_MEAN, dtype=np.float32)  # the same, for normalising decoded uint8 frames in numpy
STD = np.array(PIXEL_STD, dtype=np.float32)


def tube_keep_indices(rng: np.random.Generator, tubes: int, patches: int, mask_ratio: float,
                      kind: str = "per_tube") -> np.ndarray:
    """Tube masking: the random, sorted subset of patches each temporal tube keeps.

    Args:
        kind: `per_tube` draws a subset per tube (the TVTS paper); `shared` draws one subset and
            repeats it over every tube (VideoMAE), so a masked location stays hidden for the whole
            clip and cannot be copied from a neighbouring tube.
    Returns:
        (tubes, n_keep) int64 patch indices, n_keep = round(patches * (1 - mask_ratio)).
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"mask kind must be one of {', '.join(MASK_KINDS)}, got {kind!r}")
    n_keep = max(1, int(round(patches * (1.0 - mask_ratio))))
    rows = 1 if kind == "shared" else tubes
    keep = np.sort(np.argsort(rng.random((rows, patches)), axis=1)[:, :n_keep], axis=1).astype(np.int64)
    return np.repeat(keep, tubes, axis=0) if kind == "shared" else keep


def all_patches(tubes: int, patches: int) -> np.ndarray:
    """The 'keep everything' index (evaluation without masking)."""
    return np.tile(np.arange(patches, dtype=np.int64), (tubes, 1))


class TubeletEmbed(nn.Module):
    """(B, 3, T, H, W) -> (B, T', N, C) with a Conv3d of kernel = stride = (tubelet, P, P)."""

    def __init__(self, cfg: VideoConfig):
        super().__init__()
        k = (cfg.tubelet, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(3, cfg.dim, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)                        # (B, C, T', H', W')
        return x.flatten(3).permute(0, 2, 3, 1)  # (B, T', N, C)


class VideoViT(nn.Module):
    """The video encoder. `forward_features` returns every output token, CLS first, after the final norm."""

    def __init__(self, cfg: VideoConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = TubeletEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.patches, cfg.dim))  # 2D, shared by every tube
        self.temporal_embed = nn.Parameter(torch.zeros(1, cfg.tubes, cfg.dim))  # zero-init (docs/method.md)
        dpr = np.linspace(0, cfg.drop_path, cfg.depth)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(cfg.dim, cfg.heads, cfg.mlp_ratio, qkv_bias=True, drop_path=float(d), norm_layer=norm) for d in dpr)
        self.norm = norm(cfg.dim)
        self.grad_checkpointing = False
        if cfg.pos_init_std == 0.02:   # timm's draw, kept bit-exact for the paper's config
            trunc_normal_(self.pos_embed, std=0.02)
        else:
            # A small encoder whose temporal embedding starts at std >= 1 needs its spatial one on
            # the same scale: at 0.02 it is ~50x smaller than the temporal one, the first norm
            # leaves each token mostly "which tube", and the frozen features vary along about as
            # many directions as there are tubes (docs/results.md, "Can this encoder learn event order").
            trunc_normal_tf_(self.pos_embed, std=cfg.pos_init_std)
        trunc_normal_(self.cls_token, std=0.02)
        if cfg.temporal_init_std > 0:
            # At zero, tokens of different tubes differ only by content, so the encoder is blind to
            # their order until gradients grow this embedding: the sort loss sits on ln K for
            # hundreds of steps. Small CPU runs start it random instead (config/demo.yaml).
            # Cut at ±2 std (the _tf_ variant): trunc_normal_'s bounds are an absolute ±2, which
            # would clip any std above ~1 (std 1.0, the demo's, draws the same either way).
            trunc_normal_tf_(self.temporal_embed, std=cfg.temporal_init_std)
        self.apply(_init_weights)

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def embed(self, frames: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """Patch + position + temporal embeddings, then keep the unmasked patches of each tube.

        Args:
            frames: (B, 3, T, H, W) normalised frames.
            keep: (B, T', n_keep) patch indices per tube, or None for all patches.
        Returns:
            (B, 1 + T' * n_keep, C) tokens, CLS first.
        """
        x = self.patch_embed(frames)                                   # (B, T', N, C)
        # the first T' temporal embeddings: a shorter clip (post-pretraining's 2-4 frames) takes its leading ones
        x = x + self.pos_embed[:, None, 1:] + self.temporal_embed[:, :x.shape[1], None]
        if keep is not None:
            idx = keep[..., None].expand(-1, -1, -1, x.shape[-1])      # (B, T', n_keep, C)
            x = torch.gather(x, 2, idx)
        x = x.flatten(1, 2)                                            # (B, T' * n_keep, C)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)

    def forward_features(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """All output tokens after the final norm: (B, 1 + T' * n_keep, C), CLS at index 0."""
        x = self.embed(frames, keep)
        for blk in self.blocks:
            x = checkpoint(blk, x, use_reentrant=False) if self.grad_checkpointing and self.training else blk(x)
        return self.norm(x)

    def forward(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The final-norm CLS feature (B, C): what retrieval and the linear probe use."""
        return self.forward_features(frames, keep)[:, 0]


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
