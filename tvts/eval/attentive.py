"""Attentive probe: learned queries attend over the frozen token grid, a linear head reads them.

The paper's linear probe reads one vector, the final-norm CLS. When that vector varies along
only a few directions (docs/results.md, feature health), a probe on it cannot see *where* and
*when* things happen even if the tokens carry it. The modern frozen-video protocol (V-JEPA,
Bardes et al. 2024) instead trains a small cross-attention readout over every token. This one is
that readout cut to what a CPU can train for many encoders:

- the frozen tokens (CLS + every tube, final-norm, with the encoder's space-time position
  information in them) are standardised per channel with the training tokens' mean and std (a
  fixed map, as the linear probe's: a learned LayerNorm over every token made a step ~3x dearer);
- Q learned queries score every token by a dot product (no key/value projections: those cost
  C x C per token, ~30x the rest on the demo's 513 tokens) and each pools the normalised
  tokens with its softmax weights;
- one Linear reads the Q pooled vectors.

Training: AdamW, linear warm-up then cosine over `steps` steps of `batch_size` clips, in a
seeded order from a seeded init, so a run is a pure function of its features and the config.
Test logits are averaged over views like the linear probe's.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tvts.eval.config import AttentiveConfig
from tvts.eval.features import Features


class AttentiveProbe(nn.Module):
    """(B, T, C) frozen tokens -> (B, K) logits.

    Args:
        dim: token width C. n_classes: K. queries: Q.
    """

    def __init__(self, dim: int, n_classes: int, queries: int,
                 stats: tuple[torch.Tensor, torch.Tensor] | None = None):
        super().__init__()
        mean, std = stats if stats is not None else (torch.zeros(dim), torch.ones(dim))
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.queries = nn.Parameter(torch.randn(queries, dim) / math.sqrt(dim))
        self.head = nn.Linear(queries * dim, n_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = (tokens.float() - self.mean) / self.std                               # (B, T, C)
        weights = torch.softmax(x @ self.queries.t() / math.sqrt(x.shape[-1]), 1)  # (B, T, Q)
        pooled = weights.transpose(1, 2) @ x                                       # (B, Q, C)
        return self.head(pooled.flatten(1))                                        # (B, K)


def _lr(step: int, cfg: AttentiveConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * t))


def train_attentive(train: Features, n_classes: int, cfg: AttentiveConfig) -> tuple[AttentiveProbe, list[float]]:
    """Train the probe on every view of the readable train clips.

    Args:
        train: Features whose feats are tokens (N, V, T, C).
        n_classes: K.
        cfg: `eval.attentive`.
    Returns:
        (probe in eval mode, the mean loss of every 50 steps).
    """
    tokens = torch.from_numpy(np.ascontiguousarray(train.feats[train.ok])).flatten(0, 1)   # (M*V, T, C)
    labels = torch.from_numpy(train.labels[train.ok]).repeat_interleave(train.feats.shape[1])
    if len(labels) == 0:
        raise ValueError("attentive probe: no readable training clip")
    torch.manual_seed(cfg.seed)
    probe = AttentiveProbe(tokens.shape[-1], n_classes, cfg.queries, token_stats(tokens))
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    order, pos, losses, window = torch.randperm(len(labels), generator=gen), 0, [], []
    for step in range(cfg.steps):
        if pos > 0 and pos + cfg.batch_size > len(labels):   # a new epoch: a new seeded order
            order, pos = torch.randperm(len(labels), generator=gen), 0
        idx, pos = order[pos:pos + cfg.batch_size], pos + cfg.batch_size
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg)
        loss = F.cross_entropy(probe(tokens[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append(loss.item())
        if len(window) == 50 or step == cfg.steps - 1:
            losses.append(float(np.mean(window)))
            window = []
    return probe.eval(), losses


def token_stats(tokens: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (floored at 1e-4) of (M, T, C) tokens, accumulated in float64 by chunks."""
    n, total, sq = 0, 0.0, 0.0
    for part in tokens.split(chunk):
        x = part.double().flatten(0, 1)
        n, total, sq = n + len(x), total + x.sum(0), sq + (x * x).sum(0)
    mean = total / n
    return mean.float(), (sq / n - mean * mean).clamp_min(0).sqrt().clamp_min(1e-4).float()


@torch.no_grad()
def attentive_logits(probe: AttentiveProbe, feats: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """(N, V, T, C) tokens -> (N, K) view-averaged logits."""
    x = torch.from_numpy(np.ascontiguousarray(feats))
    n, v = x.shape[:2]
    flat = x.flatten(0, 1)
    logits = torch.cat([probe(chunk) for chunk in flat.split(batch_size)]) if len(flat) else torch.zeros(0, 1)
    return logits.view(n, v, -1).mean(1)
