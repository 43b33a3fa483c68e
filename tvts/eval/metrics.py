"""Retrieval and classification metrics, in percent.

Ties are broken *against* the right answer everywhere (pessimistic ranks): a correct item
that scores exactly as high as a wrong one is ranked after it. The ranks then do not depend
on the order of the items, and a collapsed model (every score equal) gets the worst rank
instead of a perfect one.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

ArrayLike = np.ndarray | torch.Tensor


def _tensor(x: ArrayLike, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(dtype)


def v2v_ranks(features: ArrayLike, labels: ArrayLike, chunk: int = 1024) -> torch.Tensor:
    """Rank (1-based) of each query's best same-class video among all the others, by cosine similarity.

    The query itself is left out. rank = 1 + the number of different-class videos whose
    similarity is >= that of the best same-class one (pessimistic ties). A query with no
    other video of its class gets rank inf (a miss at every K).

    Args:
        features: (N, C) video features (normalised here).
        labels: (N,) class indices.
        chunk: queries per similarity block ((chunk, N) floats in memory).
    Returns:
        (N,) float64 ranks.
    """
    f = F.normalize(_tensor(features, torch.float32), dim=-1)
    y = _tensor(labels, torch.int64)
    ranks = []
    for start in range(0, len(f), chunk):
        rows = torch.arange(start, min(start + chunk, len(f)))
        sim = f[rows] @ f.t()                                        # (b, N)
        same = y[rows, None] == y[None, :]
        same[torch.arange(len(rows)), rows] = False                  # the query is not its own match
        best = torch.where(same, sim, torch.full_like(sim, -torch.inf)).amax(1)   # (b,)
        other = y[rows, None] != y[None, :]
        rank = ((sim >= best[:, None]) & other).sum(1).double() + 1
        ranks.append(torch.where(same.any(1), rank, torch.full_like(rank, torch.inf)))
    return torch.cat(ranks)


def recall_at(ranks: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """{"r1": %, ...}: the share of queries whose rank is <= K."""
    return {f"r{k}": 100.0 * (ranks <= k).double().mean().item() for k in ks}


def v2v_recall(features: ArrayLike, labels: ArrayLike, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Zero-shot video-to-video retrieval: R@K = % of queries with a same-class video in their top K.

    Args:
        features: (N, C) features (cosine similarity; the query itself excluded).
        labels: (N,) class indices.
        ks: the K values.
    Returns:
        {"r1": ..., "r5": ..., "r10": ...} in percent (ties pessimistic, see `v2v_ranks`).
    """
    return recall_at(v2v_ranks(features, labels), ks)


def t2v_ranks(sim: ArrayLike, gt_video: ArrayLike) -> torch.Tensor:
    """Rank (1-based) of each text's ground-truth video: 1 + #other videos scoring >= it (pessimistic).

    Args:
        sim: (N_text, N_video) similarities.
        gt_video: (N_text,) index of each text's video.
    Returns:
        (N_text,) float64 ranks.
    """
    s = _tensor(sim, torch.float64)
    gt = _tensor(gt_video, torch.int64)
    target = s.gather(1, gt[:, None])                                # (Nt, 1)
    not_gt = torch.ones_like(s, dtype=torch.bool)
    not_gt[torch.arange(len(s)), gt] = False
    return ((s >= target) & not_gt).sum(1).double() + 1


def t2v_metrics(sim: ArrayLike, gt_video: ArrayLike, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Text-to-video retrieval metrics.

    Args:
        sim: (N_text, N_video) similarities.
        gt_video: (N_text,) ground-truth video index of each text.
        ks: the K values of R@K.
    Returns:
        {"r1", "r5", "r10"} in percent, "medr" and "meanr" (1-based ranks, ties pessimistic).
    """
    ranks = t2v_ranks(sim, gt_video)
    # np.median: the mean of the two middle ranks for an even count (torch.median takes the lower one)
    return recall_at(ranks, ks) | {"medr": float(np.median(ranks.numpy())), "meanr": ranks.mean().item()}


def average_views(logits: ArrayLike) -> torch.Tensor:
    """Average the logits of every test view: (N, V, K) -> (N, K)."""
    return _tensor(logits, torch.float32).mean(1)


def topk_hits(logits: ArrayLike, labels: ArrayLike, k: int) -> torch.Tensor:
    """(N,) bool: the label is within the top K, i.e. fewer than K other classes score >= it (ties pessimistic)."""
    s = _tensor(logits, torch.float64)
    y = _tensor(labels, torch.int64)
    target = s.gather(1, y[:, None])
    others = torch.ones_like(s, dtype=torch.bool)
    others[torch.arange(len(s)), y] = False
    return ((s >= target) & others).sum(1) < k


def topk_accuracy(logits: ArrayLike, labels: ArrayLike, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-K accuracy in percent; a label is within the top K when fewer than K other classes score >= it.

    Args:
        logits: (N, K_classes) scores.
        labels: (N,) class indices.
        ks: the K values.
    Returns:
        {"top1": ..., "top5": ...}.
    """
    return {f"top{k}": 100.0 * topk_hits(logits, labels, k).double().mean().item() for k in ks}
