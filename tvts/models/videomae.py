"""VideoMAE baseline (Tong et al. 2022): reconstruct the pixels of masked tubelets from the visible ones.

The encoder is TVTS's own `VideoViT`, run on the visible tokens only, so both methods pretrain
the very same network and every downstream evaluation treats them alike. That encoder has a
CLS token (VideoMAE's has none); it is kept in the encoder, where it takes part in attention
and so gets gradients, and its output is dropped before the decoder, which sees patch tokens
only. The decoder follows the paper: a bias-free linear map to a narrow width, a learned mask
token for every hidden position, fixed sinusoidal position embeddings over all T' * N
positions, a few transformer blocks, and a linear head predicting the tubelet's pixels.
The loss is the MSE on the masked tubelets only, against per-patch normalised pixels.

Positions are tube-major everywhere, as in `VideoViT`: position t * N + n is patch n of
tube t, and patch n = row * (img / patch) + column, the order of the encoder's Conv3d.
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block

from tvts.models.config import VideoConfig, VideoMAEConfig
from tvts.models.video_vit import PIXEL_MEAN, PIXEL_STD, _init_weights


# ---- positions and masks ------------------------------------------------------------------------

def sincos_1d(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """(P,) positions -> (P, dim) [sin | cos] at dim / 2 geometric frequencies (dim even)."""
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / max(1, half))
    angle = pos.double()[:, None] * omega[None]
    return torch.cat([angle.sin(), angle.cos()], dim=1)


def sincos_3d(tubes: int, grid: int, dim: int) -> torch.Tensor:
    """Fixed (tubes * grid^2, dim) position embedding, tube-major then row then column.

    Each axis gets its own even share of the channels: rows and columns 2 * (dim // 6) each,
    time the rest, so a position is told apart by when as well as where it is.
    """
    d_hw = 2 * (dim // 6)
    t, h, w = torch.meshgrid(torch.arange(tubes), torch.arange(grid), torch.arange(grid), indexing="ij")
    parts = [sincos_1d(t.flatten(), dim - 2 * d_hw), sincos_1d(h.flatten(), d_hw), sincos_1d(w.flatten(), d_hw)]
    return torch.cat(parts, dim=1).float()


def masked_indices(keep: torch.Tensor, patches: int) -> torch.Tensor:
    """The complement of `keep`: (B, T', n_keep) kept patch indices -> (B, T', N - n_keep) hidden ones, sorted."""
    visible = torch.zeros(*keep.shape[:2], patches, dtype=torch.int8, device=keep.device)
    visible.scatter_(2, keep, 1)
    order = torch.argsort(visible, dim=2, stable=True)   # hidden patches first, each group in index order
    return order[..., :patches - keep.shape[2]]


def flat_positions(idx: torch.Tensor, patches: int) -> torch.Tensor:
    """(B, T', n) per-tube patch indices -> (B, T' * n) positions t * N + n in the tube-major sequence."""
    tube = torch.arange(idx.shape[1], device=idx.device)[None, :, None]
    return (idx + tube * patches).flatten(1)


# ---- the reconstruction target ------------------------------------------------------------------

def unnormalise(frames: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation of (B, 3, T, H, W) frames: pixels in [0, 1] again."""
    mean = torch.tensor(PIXEL_MEAN, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(PIXEL_STD, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1, 1)
    return frames * std + mean


def patchify(frames: torch.Tensor, video: VideoConfig) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, T' * N, tubelet * P * P, 3): the tubelets the encoder's Conv3d embeds, in token order."""
    b, c, t, h, w = frames.shape
    tb, p = video.tubelet, video.patch_size
    x = frames.reshape(b, c, t // tb, tb, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)                 # (B, T', H', W', tb, P, P, 3)
    return x.reshape(b, (t // tb) * (h // p) * (w // p), tb * p * p, c)


def recon_targets(frames: torch.Tensor, video: VideoConfig, norm_pix: bool) -> torch.Tensor:
    """What the decoder predicts for every position: (B, T' * N, tubelet * P * P * 3).

    With `norm_pix`, each tubelet's pixels are normalised per channel by their own mean and
    (unbiased) std + 1e-6, as VideoMAE does: the target is local structure, not brightness.
    """
    x = patchify(unnormalise(frames), video)
    if norm_pix:
        x = (x - x.mean(dim=2, keepdim=True)) / (x.var(dim=2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return x.flatten(2)


# ---- the decoder --------------------------------------------------------------------------------

class VideoMAEDecoder(nn.Module):
    """Visible encoder tokens + mask tokens -> the pixels of the masked tubelets."""

    def __init__(self, video: VideoConfig, cfg: VideoMAEConfig):
        super().__init__()
        self.video_cfg, self.cfg = video, cfg
        self.embed = nn.Linear(video.dim, cfg.decoder_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_dim))
        grid = int(math.isqrt(video.patches))
        self.register_buffer("pos_embed", sincos_3d(video.tubes, grid, cfg.decoder_dim), persistent=False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(cfg.decoder_dim, cfg.decoder_heads, cfg.mlp_ratio, qkv_bias=True,
                                          norm_layer=norm) for _ in range(cfg.decoder_depth))
        self.norm = norm(cfg.decoder_dim)
        self.head = nn.Linear(cfg.decoder_dim, video.tubelet * video.patch_size ** 2 * 3)
        self.apply(_init_weights)
        trunc_normal_(self.mask_token, std=0.02)

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict the hidden tubelets.

        Args:
            tokens: (B, T' * n_keep, C) encoder outputs of the visible patches (no CLS), tube-major.
            keep: (B, T', n_keep) the visible patch indices of each tube.
        Returns:
            (B, M, tubelet * P * P * 3) predictions and (B, M) their positions, M = T' * (N - n_keep).
        """
        n = self.video_cfg.patches
        vis_pos = flat_positions(keep, n)
        hid_pos = flat_positions(masked_indices(keep, n), n)
        x_vis = self.embed(tokens) + self.pos_embed[vis_pos]
        x_hid = self.mask_token + self.pos_embed[hid_pos]
        x = torch.cat([x_vis, x_hid], dim=1)                  # attention does not care about the order
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x[:, x_vis.shape[1]:])), hid_pos

    def loss(self, frames: torch.Tensor, tokens: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """Per-sample MSE over the masked tubelets' pixel values: (B,).

        Every sample hides the same number of tubelets, so the batch mean of this equals the
        mean over all masked tubelets of the batch (and of the gathered validation set).
        """
        if keep is None or keep.shape[2] >= self.video_cfg.patches:
            raise ValueError("VideoMAE needs masked input: set pretrain.model.mask_ratio > 0")
        pred, hid_pos = self(tokens, keep)
        with torch.no_grad():
            target = recon_targets(frames, self.video_cfg, self.cfg.norm_pix_loss)
            target = torch.gather(target, 1, hid_pos[..., None].expand(-1, -1, target.shape[-1]))
        return (pred.to(target.dtype) - target).pow(2).mean(dim=(1, 2))
