"""The sort transformer: which temporal position does each transcript occupy?

Video tokens (+ type embedding 0) and the K transcript vectors (+ type embedding 1) go
through pre-norm blocks; a LayerNorm and Linear(C -> K) on the K text positions give
(B, K transcripts, K positions) logits. Transcripts carry no position embedding and
attention is permutation-equivariant, so their input order carries no information.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block

from tvts.models.config import SortConfig
from tvts.models.video_vit import _init_weights


class SortHead(nn.Module):
    def __init__(self, dim: int, text_dim: int, k: int, cfg: SortConfig):
        super().__init__()
        # The paper has text and video at 768; small configs may differ, hence the projection.
        self.text_in = nn.Identity() if text_dim == dim else nn.Linear(text_dim, dim)
        self.type_embed = nn.Parameter(torch.zeros(2, dim))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.Sequential(*[Block(dim, cfg.heads, cfg.mlp_ratio, qkv_bias=True, norm_layer=norm)
                                      for _ in range(cfg.depth)])
        self.norm = norm(dim)
        self.head = nn.Linear(dim, k)
        trunc_normal_(self.type_embed, std=0.02)
        self.apply(_init_weights)

    def forward(self, video_tokens: torch.Tensor | None, text: torch.Tensor) -> torch.Tensor:
        """Args:
            video_tokens: (B, L, C) video encoder outputs, or None (the text-only baseline).
            text: (B, K, Ct) transcript vectors, in any order.
        Returns:
            (B, K, K) logits: row i scores transcript i over the K temporal positions.
        """
        t = self.text_in(text) + self.type_embed[1]                   # (B, K, C)
        k = t.shape[1]
        x = t if video_tokens is None else torch.cat([video_tokens + self.type_embed[0], t], dim=1)
        x = self.blocks(x)
        return self.head(self.norm(x[:, -k:]))                       # (B, K, K)
