"""A fixed pixel "encoder": the grid's pixel-probe control, behind the video encoder's interface.

It has no weights. Whatever a frozen probe reads from it was in the clip's pixels, so its row in
the science grid shows what the probes can read when the signal is there (docs/results.md).

Features, per clip of (3, T, H, W) normalised frames, with T' = T / tubelet tubes:
  CLS: for each tube and each cell of a `grid` x `grid` layout, how far the cell's mean colour is
       from the clip's still background (the cell's median over tubes), summed over colour: the
       feature of docs/demo-corpus.md's pixel probe, T' * grid^2 values.
  tokens: for every tubelet patch, m = |pixel - background| summed over colour (the background is
       the pixel's median over frames), then the same m times the tube's time tau in [-1, 1]: 
       2 * tubelet * patch^2 values, kept as the VideoViT keeps them under tube masking. The tau
       copy is the pixels' temporal embedding: without it every pool over tokens (the mean pool
       first) would be blind to order by construction, as a set of position-free patches is.
Both are zero-padded to one width, `dim`, so they travel as one (B, 1 + L, dim) tensor.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tvts.models.config import VideoConfig

GRID = 8


class PixelVideo(nn.Module):
    def __init__(self, cfg: VideoConfig, grid: int = GRID):
        super().__init__()
        self.cfg, self.grid = cfg, grid
        self.token_dim = 2 * cfg.tubelet * cfg.patch_size ** 2
        self.dim = max(cfg.tubes * grid * grid, self.token_dim)
        self.grad_checkpointing = False  # the VideoViT's switch; nothing here to checkpoint

    def forward_features(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, 1 + T' * n_keep, dim), CLS first, like VideoViT.forward_features."""
        x = frames.float()
        tokens = self.patch_tokens((x - median(x, 2)).abs().sum(1, keepdim=True), keep)
        cls = self.cell_motion(x)[:, None]
        out = torch.cat([F.pad(cls, (0, self.dim - cls.shape[-1])), F.pad(tokens, (0, self.dim - tokens.shape[-1]))], 1)
        return out.to(frames.dtype)

    def forward(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features(frames, keep)[:, 0]

    def cell_motion(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, T' * grid^2): |cell colour - its median over tubes|, summed over colour."""
        b, c, t, h, w = x.shape
        g, cfg = self.grid, self.cfg
        cells = x.reshape(b, c, t // cfg.tubelet, cfg.tubelet, g, h // g, g, w // g).mean((3, 5, 7))
        return (cells - median(cells, 2)).abs().sum(1).flatten(1)

    def patch_tokens(self, m: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """(B, 1, T, H, W) motion -> (B, T' * n_keep, 2 * tubelet * P^2): [m, tau * m] per tubelet
        patch, tube-major as the VideoViT's."""
        b, c, t, h, w = m.shape
        p, tl = self.cfg.patch_size, self.cfg.tubelet
        x = m.reshape(b, c, t // tl, tl, h // p, p, w // p, p).permute(0, 2, 4, 6, 1, 3, 5, 7)
        x = x.reshape(b, t // tl, (h // p) * (w // p), -1)                       # (B, T', N, D)
        tau = torch.linspace(-1, 1, t // tl, device=m.device).view(1, -1, 1, 1)
        x = torch.cat([x, x * tau], -1)
        if keep is not None:
            x = torch.gather(x, 2, keep[..., None].expand(-1, -1, -1, x.shape[-1]))
        return x.flatten(1, 2)


def median(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The median along `dim`, kept as a size-1 dim; with an even count the mean of the two middle
    values (numpy's, which the pixel probe of docs/demo-corpus.md used; torch's is the lower one)."""
    s = x.sort(dim=dim).values
    n = x.shape[dim]
    upper = s.narrow(dim, n // 2, 1)
    return upper if n % 2 else (upper + s.narrow(dim, n // 2 - 1, 1)) / 2
