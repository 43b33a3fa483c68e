"""Frozen video features for evaluation: the final-norm CLS token of every view, cached on disk.

Extraction runs the encoder once per video view under `torch.inference_mode` and keeps
`forward_features(...)[:, 0]` (after the final LayerNorm, no projection): the feature the
paper's zero-shot retrieval and linear probe use. The cache is one `.npz` per
(dataset, split, views) written atomically, with a JSON key describing everything the
features depend on (checkpoint content hash, dataset split and its video list, views, frame
settings); a different key recomputes and replaces the file.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tvts.io import atomic_path, file_sha256
from tvts.train.distributed import autocast

log = logging.getLogger("tvts.eval.features")
FEATURE_VERSION = 1  # bump when extraction changes in a way the key does not capture


@dataclass
class Features:
    """Per-video features of one split.

    Args:
        feats: (N, V, C) float32, zeros for unreadable videos.
        labels: (N,) int64.
        ok: (N,) bool, False where the video could not be decoded.
        reasons: (N,) reject reason ("" when ok).
    """

    feats: np.ndarray
    labels: np.ndarray
    ok: np.ndarray
    reasons: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def valid(self) -> tuple[np.ndarray, np.ndarray]:
        """(feats (M, V, C), labels (M,)) of the readable videos only: what metrics see."""
        return self.feats[self.ok], self.labels[self.ok]


def encode_views(model_video: torch.nn.Module, frames: torch.Tensor, amp: str = "off") -> torch.Tensor:
    """CLS features of a batch of view stacks.

    Args:
        model_video: a VideoViT (eval mode).
        frames: (B, V, 3, T, S, S) on the model's device.
        amp: autocast dtype on CUDA ("bf16", "fp16", "off").
    Returns:
        (B, V, C) float32, an ordinary tensor (usable in autograd outside inference mode).
    """
    b, v = frames.shape[:2]
    with torch.inference_mode(), autocast(frames.device, amp):
        cls = model_video.forward_features(frames.flatten(0, 1))[:, 0]       # (B*V, C)
    return cls.float().view(b, v, -1).clone()


def iter_batches(dataset: Dataset, batch_size: int, workers: int, order: np.ndarray | None = None,
                 device: torch.device | str = "cpu") -> Iterator[dict]:
    """Batches of a ClipDataset in `order` (default: index order), frames moved to `device`."""
    sampler = None if order is None else [int(i) for i in order]
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                        pin_memory=torch.device(device).type == "cuda", persistent_workers=False)
    for batch in loader:
        batch["frames"] = batch["frames"].to(device, non_blocking=True)
        yield batch


def extract_features(model_video: torch.nn.Module, dataset: Dataset, batch_size: int, workers: int,
                     device: torch.device | str, amp: str = "off") -> Features:
    """Run the frozen encoder over every view of every video of a ClipDataset.

    Args:
        model_video: the VideoViT (`TVTS.video`), already on `device`.
        dataset: a tvts.eval.views.ClipDataset (test views).
        batch_size: videos per batch (each brings V views).
        workers: DataLoader workers decoding videos.
        device: where the encoder runs.
        amp: autocast dtype on CUDA.
    Returns:
        Features with feats (N, V, C) float32 in dataset order; unreadable videos have ok=False.
    """
    device = torch.device(device)
    model_video.eval()
    n = len(dataset)
    feats: np.ndarray | None = None
    labels = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    reasons = [""] * n
    for batch in iter_batches(dataset, batch_size, workers, device=device):
        out = encode_views(model_video, batch["frames"], amp).cpu().numpy()  # (B, V, C)
        if feats is None:
            feats = np.zeros((n, *out.shape[1:]), dtype=np.float32)
        idx = batch["index"].numpy()
        good = batch["ok"].numpy().astype(bool)
        feats[idx] = np.where(good[:, None, None], out, 0.0)  # unreadable rows saw zero frames: keep them zero
        labels[idx], ok[idx] = batch["label"].numpy(), good
        for i, r in zip(idx, batch["reason"]):
            reasons[int(i)] = r
    if feats is None:
        feats = np.zeros((0, 0, 0), dtype=np.float32)
    log.info("features: %d videos (%d unreadable), views %s", n, int((~ok).sum()), feats.shape[1:2])
    return Features(feats, labels, ok, reasons)


def file_digest(path: str | Path) -> str:
    """sha256 of a file's content (a checkpoint's identity: a re-saved equal file keeps its cache)."""
    return file_sha256(path)


def video_list_digest(ids: list[str]) -> str:
    """sha256 of the split's video ids in order: another max_videos or a changed list invalidates the cache."""
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def _key_json(key: dict) -> str:
    return json.dumps({"feature_version": FEATURE_VERSION, **key}, sort_keys=True, default=str)


def save_features(path: str | Path, feats: Features, key: dict) -> None:
    """Write features and their key as one .npz, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append ".npz"
        np.savez(f, feats=feats.feats, labels=feats.labels, ok=feats.ok,
                 reasons=np.array(feats.reasons, dtype=str), key=np.array(_key_json(key)))


def load_features(path: str | Path, key: dict) -> Features | None:
    """The cached features if the file exists, reads, and carries exactly `key`; else None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != _key_json(key):
                log.info("feature cache %s: key differs, recomputing", path)
                return None
            return Features(z["feats"], z["labels"], z["ok"], [str(r) for r in z["reasons"]])
    except (OSError, ValueError, KeyError) as err:  # a foreign or damaged file is recomputed, not trusted
        log.warning("feature cache %s unreadable (%s), recomputing", path, err)
        return None


def cached_features(cache_path: str | Path, key: dict, compute_fn: Callable[[], Features]) -> tuple[Features, bool]:
    """Load features from `cache_path` when its key matches, else compute and store them.

    Args:
        cache_path: the .npz file (e.g. results/<exp>/features/<dataset>/<split>-<views>.npz).
        key: JSON-serialisable description of everything the features depend on.
        compute_fn: returns the Features on a miss.
    Returns:
        (features, hit): hit is True when the cache was used.
    """
    found = load_features(cache_path, key)
    if found is not None:
        log.info("feature cache hit: %s", cache_path)
        return found, True
    feats = compute_fn()
    save_features(cache_path, feats, key)
    return feats, False


def feature_key(checkpoint_sha256: str, dataset: str, split: str, video_ids: list[str], num_frames: int,
                img_size: int, short_side: int, temporal: int, spatial: int, amp: str) -> dict:
    """The cache key: everything one split's features depend on."""
    return {"checkpoint_sha256": checkpoint_sha256, "dataset": dataset, "split": split,
            "n_videos": len(video_ids), "videos_sha256": video_list_digest(video_ids),
            "num_frames": num_frames, "img_size": img_size, "short_side": short_side,
            "temporal_views": temporal, "spatial_views": spatial, "amp": amp, "feature": "final_norm_cls"}


def split_features(model_video: torch.nn.Module, dataset, batch_size: int, workers: int, device: torch.device | str,
                   amp: str = "off", cache_path: str | Path | None = None, key: dict | None = None
                   ) -> tuple[Features, bool]:
    """`extract_features`, through the cache when `cache_path` is given (with its `key`).

    Returns:
        (features, hit).
    """
    def compute() -> Features:
        return extract_features(model_video, dataset, batch_size, workers, device, amp)

    if cache_path is None:
        return compute(), False
    return cached_features(cache_path, key or {}, compute)


def add_rejects(rejects, vset, feats: Features | None = None) -> None:
    """Record a split's listed-but-missing videos and the unreadable ones into a tvts.io.Rejects.

    Args:
        rejects: the stage's Rejects.
        vset: the VideoSet (its `missing` list).
        feats: features of `vset.items` in order (rows with ok=False), if extracted.
    """
    for m in vset.missing:
        rejects.add(f"{vset.split}/{m.video_id}", m.reason, str(m.path))
    if feats is None:
        return
    for item, ok, reason in zip(vset.items, feats.ok, feats.reasons):
        if not ok:
            rejects.add(f"{vset.split}/{item.video_id}", reason or "video_unreadable", str(item.path))
