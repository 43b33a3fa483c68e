"""Temporal-order probes on frozen features: within-pair accuracy and the arrow of time.

The paper's claim is that sorting transcripts teaches a video encoder *time*. Two probes ask
a frozen representation about time directly (docs/method.md, "Temporal-order probes"):

- **within-pair accuracy**: where a dataset's classes come in order-reversed pairs ("A, then B"
  / "B, then A"), the class probe's accuracy on the clips of a paired class, restricted to the
  two classes of its pair (the larger of the two logits wins; a tie is wrong). A representation
  blind to order scores 50 % however well it knows the events.
- **arrow of time**: a linear classifier (the linear probe's protocol, 2 classes) of a clip
  against the same clip reversed, trained on the train split's clips both ways and tested on
  the test split's. It needs no labels, so it applies to any classification set (SSV2, K400).
  Chance is 50 %; a world whose every event reversed is another event keeps it there.

Both run on the final-norm CLS (`pool: cls`, the paper's feature) and on the mean of the
final-norm patch tokens (`pool: mean`), from one encoder pass per view and direction. A
reversed clip is the same sampled frames in the opposite order.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from tvts.config import ConfigError
from tvts.eval.features import Features, iter_batches, load_features, save_features
from tvts.train.distributed import autocast

POOLS = ("cls", "mean", "attentive")
DIRECTIONS = ("forward", "reversed")


def pool_tokens(tokens: torch.Tensor, pool: str) -> torch.Tensor:
    """(B, 1 + N, C) final-norm tokens -> (B, C): the CLS, or the mean of the patch tokens; or, for
    the attentive probe, every token as float16 (B, 1 + N, C): its readout is learned later."""
    if pool == "cls":
        return tokens[:, 0]
    if pool == "mean":
        return tokens[:, 1:].mean(1)
    if pool == "attentive":
        return tokens.half()
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")


def encode_pooled(model_video: torch.nn.Module, frames: torch.Tensor, pools: Sequence[str],
                  amp: str = "off") -> dict[str, torch.Tensor]:
    """Every pool's features of a batch of view stacks, from one encoder pass.

    Args:
        model_video: a VideoViT (eval mode).
        frames: (B, V, 3, T, S, S).
        pools: names from POOLS.
        amp: autocast dtype on CUDA.
    Returns:
        pool -> (B, V, C) float32; "attentive" -> (B, V, 1 + N, C) float16.
    """
    b, v = frames.shape[:2]
    with torch.inference_mode(), autocast(frames.device, amp):
        tokens = model_video.forward_features(frames.flatten(0, 1))           # (B*V, 1+N, C)
        pooled = {p: pool_tokens(tokens, p) for p in pools}
        return {p: (x if p == "attentive" else x.float()).view(b, v, *x.shape[1:]).clone() for p, x in pooled.items()}


def reverse_clips(frames: torch.Tensor) -> torch.Tensor:
    """(B, V, 3, T, S, S) -> the same views with their frames in the opposite order."""
    return frames.flip(3)


def extract_directions(model_video: torch.nn.Module, dataset, pools: Sequence[str], batch_size: int,
                       workers: int, device: torch.device | str, amp: str = "off", reverse_first: int = 0
                       ) -> dict[tuple[str, str], Features]:
    """Features of every view of a ClipDataset, forward and reversed, for every pool.

    Args:
        reverse_first: reverse only the first this many clips (0 = every clip): the arrow probe's
            training set need not be as large as the class probe's, and each reversed clip costs
            a forward pass.
    Returns:
        (pool, direction) -> Features (N, V, C) in dataset order (reversed: the first
        `reverse_first` clips); unreadable videos have ok=False.
    """
    model_video.eval()
    n = len(dataset)
    sizes = {"forward": n, "reversed": min(n, reverse_first) if reverse_first else n}
    feats: dict[tuple[str, str], np.ndarray] = {}
    labels, ok, reasons = np.zeros(n, np.int64), np.zeros(n, bool), [""] * n
    for batch in iter_batches(dataset, batch_size, workers, device=device):
        idx, good = batch["index"].numpy(), batch["ok"].numpy().astype(bool)
        for direction in DIRECTIONS:
            rows = idx < sizes[direction]
            if not rows.any():
                continue
            frames = batch["frames"][torch.from_numpy(rows)]
            frames = frames if direction == "forward" else reverse_clips(frames)
            for pool, out in encode_pooled(model_video, frames, pools, amp).items():
                out = out.cpu().numpy()
                arr = feats.setdefault((pool, direction), np.zeros((sizes[direction], *out.shape[1:]), out.dtype))
                arr[idx[rows]] = np.where(good[rows].reshape(-1, *[1] * (out.ndim - 1)), out, 0)
        labels[idx], ok[idx] = batch["label"].numpy(), good
        for i, r in zip(idx, batch["reason"]):
            reasons[int(i)] = r
    return {(pool, d): Features(arr, labels[:sizes[d]], ok[:sizes[d]], reasons[:sizes[d]])
            for (pool, d), arr in feats.items()}


def cached_directions(paths: dict[tuple[str, str], Path], key: dict,
                      compute_fn: Callable[[], dict[tuple[str, str], Features]]
                      ) -> tuple[dict[tuple[str, str], Features], bool]:
    """`extract_directions` through the feature cache: one .npz per (pool, direction).

    Args:
        paths: (pool, direction) -> its cache file.
        key: what the features depend on (tvts.eval.features.feature_key); the pool and the
            direction are added per file.
        compute_fn: extracts every (pool, direction) at once, on a miss of any file.
    Returns:
        (features, hit): hit is True when every file was used.
    """
    def file_key(pool: str, direction: str) -> dict:
        return key | {"feature": f"final_norm_{pool}", "direction": direction}

    found = {k: load_features(path, file_key(*k)) for k, path in paths.items()}
    if all(f is not None for f in found.values()):
        return found, True
    feats = compute_fn()
    for k, path in paths.items():
        save_features(path, feats[k], file_key(*k))
    return feats, False


def arrow_split(forward: Features, reversed_: Features) -> Features:
    """The arrow-of-time examples of a split: every reversed clip (label 1) and the same clip
    forward (label 0); the reversed may be the first clips of the forward."""
    n = len(reversed_)
    return Features(np.concatenate([forward.feats[:n], reversed_.feats]),
                    np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)]),
                    np.concatenate([forward.ok[:n], reversed_.ok]), forward.reasons[:n] + reversed_.reasons)


def reversed_pairs(classes: Sequence[str], separator: str) -> list[tuple[int, int]]:
    """The order-reversed pairs among class names: "A<sep>B" with "B<sep>A" (case-insensitive).

    Args:
        classes: class names indexed by label.
        separator: what joins the two events' names, e.g. ", then ".
    Returns:
        (label, label) pairs, each once, in label order; a class without its reverse is in none.
    """
    index = {name.strip().lower(): k for k, name in enumerate(classes)}
    pairs = set()
    for k, name in enumerate(classes):
        parts = re.split(re.escape(separator.lower()), name.strip().lower())
        if len(parts) == 2 and parts[0] != parts[1]:
            other = index.get(separator.lower().join(parts[::-1]))
            if other is not None:
                pairs.add((min(k, other), max(k, other)))
    return sorted(pairs)


def resolve_pairs(classes: Sequence[str], rule: str, where: str) -> list[tuple[int, int]]:
    """The pairs a dataset's `reversed_pairs` setting declares ("" = none).

    The setting is either a separator (", then ") or a JSON list of [name, name] pairs.

    Raises:
        ConfigError: a listed name is not a class, or a separator finds no pair.
    """
    if not rule:
        return []
    if rule.lstrip().startswith("["):
        index = {name: k for k, name in enumerate(classes)}
        named = json.loads(rule)
        missing = [n for pair in named for n in pair if n not in index]
        if missing:
            raise ConfigError(f"{where}.reversed_pairs: not a class of the dataset: {missing[0]!r}")
        return sorted(tuple(sorted((index[a], index[b]))) for a, b in named)
    pairs = reversed_pairs(classes, rule)
    if not pairs:
        raise ConfigError(f"{where}.reversed_pairs: no two class names are {rule!r}-reverses of each other")
    return pairs


def within_pair_hits(logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                     pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """(N,) float: 1.0 where the true class beats its reverse, 0.0 where not (a tie is wrong), nan
    for a clip of an unpaired class."""
    x, y = torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(labels, dtype=torch.int64)
    partner = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    hits = np.full(len(y), np.nan)
    for i, label in enumerate(y.tolist()):
        if label in partner:
            hits[i] = float(x[i, label] > x[i, partner[label]])
    return hits


def within_pair_accuracy(logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                         pairs: Sequence[tuple[int, int]]) -> tuple[float, int]:
    """Accuracy (percent) of the class probe restricted to each paired clip's pair.

    Args:
        logits: (N, K) view-averaged class logits.
        labels: (N,) true labels.
        pairs: (label, label) order-reversed pairs.
    Returns:
        (accuracy, number of clips of a paired class); nan when there is none. A tie is wrong.
    """
    hits = within_pair_hits(logits, labels, pairs)
    paired = hits[~np.isnan(hits)]
    if len(paired) == 0:
        return float("nan"), 0
    return 100.0 * float(paired.mean()), len(paired)
