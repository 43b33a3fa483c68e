"""End-to-end fine-tuning for action classification: the pretrained video encoder + a linear head.

Recipe (docs/method.md, 'Downstream protocols'; the defaults of `FinetuneConfig`):
- backbone: the checkpoint's `model.video` (pretrained, or random init if the checkpoint is),
  rebuilt with the fine-tuning drop-path rate; head: Linear on the final-norm CLS token (the
  feature the paper's retrieval and linear probe use), or on the mean of the final-norm patch
  tokens with `pool: mean`; weights trunc-normal(0.02) times `head_init_scale`;
- AdamW, betas (0.9, 0.999), peak lr = `lr` x global batch / `lr_batch` (1e-3 per 256 clips),
  weight decay 0.05 on weight matrices only (no decay on norms, biases, cls token, position
  and temporal embeddings), layer-wise lr decay 0.75: the head and final norm get the full lr,
  block i (1-based, of `depth`) gets 0.75^(depth + 1 - i), the embeddings 0.75^(depth + 1);
- per-step schedule: linear warm-up over 5 epochs, then cosine to `min_lr`; 50 epochs;
- training clips (`train_view: augmented`): TSN frames (one random frame per segment), short side
  `eval.views.short_side`, RandAugment rand-m7-n4-mstd0.5-inc1 with the same ops on every frame, random resized crop,
  horizontal flip except on SSV2 (`flip: auto`), random erasing 0.25 (tvts.eval.augment);
  cross-entropy with `label_smoothing`; no mixup/cutmix (not in the paper's stated recipe);
- `train_view: test` (not the paper's): every training clip is the test's single centre view,
  unaugmented - the input of a plain supervised control;
- test: `eval.views` temporal x spatial views (2 x 3), logits averaged over views, top-1/top-5.

`train_mask_ratio` > 0 trains on tube-masked input (the pretraining masking) to make small CPU
demos cheaper; it is not part of the paper's recipe (0 there). Test views are never masked.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from tvts.data.formats.common import VideoItem
from tvts.data.video import decode_frames, open_video, resize_short_side
from tvts.eval.augment import ClipAugment
from tvts.eval.config import FinetuneConfig
from tvts.eval.metrics import average_views, topk_accuracy
from tvts.eval.tuning import masked_share, view_outputs
from tvts.eval.views import ClipDataset, clip_indices
from tvts.io import RejectError
from tvts.models.video_vit import VideoViT, tube_keep_indices
from tvts.train import distributed as dist

NO_DECAY = ("cls_token", "pos_embed", "temporal_embed")


# ---- model -----------------------------------------------------------------------------------------


class VideoClassifier(nn.Module):
    """A VideoViT and a linear head on its final-norm CLS (or mean patch token)."""

    def __init__(self, video: VideoViT, n_classes: int, pool: str = "cls", head_dropout: float = 0.0,
                 head_init_scale: float = 1.0):
        super().__init__()
        self.video, self.pool = video, pool
        self.head_drop = nn.Dropout(head_dropout)
        self.head = nn.Linear(video.dim, n_classes)
        trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():  # a near-zero head: the first steps do not wreck the pretrained features
            self.head.weight.mul_(head_init_scale)

    def forward(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, T, S, S) frames (+ optional (B, T', n_keep) kept patches) -> (B, classes) logits."""
        tokens = self.video.forward_features(frames, keep)                   # (B, 1 + L, C)
        feat = tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(1)
        return self.head(self.head_drop(feat))


def build_classifier(video: VideoViT, n_classes: int, cfg: FinetuneConfig) -> VideoClassifier:
    """A fresh VideoViT with the fine-tuning drop-path rate, holding `video`'s weights, plus the head.

    The head is drawn from torch's RNG seeded with `cfg.seed`, so every rank builds the same one.
    """
    if video.cfg.encoder != "vit":
        raise ValueError(f"eval.finetune: the {video.cfg.encoder} encoder has no weights to fine-tune; "
                         "leave the finetune task out for it (the frozen probes read it)")
    backbone = VideoViT(replace(video.cfg, drop_path=cfg.drop_path))
    backbone.load_state_dict(video.state_dict())  # drop path has no weights: the same state dict
    backbone.grad_checkpointing = cfg.grad_checkpointing
    torch.manual_seed(cfg.seed)
    return VideoClassifier(backbone, n_classes, cfg.pool, cfg.head_dropout, cfg.head_init_scale)


def layer_id(name: str, depth: int) -> int:
    """Layer of a VideoViT parameter for lr decay: embeddings 0, blocks.j -> j + 1, final norm depth + 1."""
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    if name.startswith(NO_DECAY + ("patch_embed",)):
        return 0
    return depth + 1


def param_groups(model: VideoClassifier, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups with lr scale layer_decay^(depth + 1 - layer) and no decay on 1-d params and embeddings.

    Returns:
        Groups with "params", "weight_decay", "lr_scale" and "name" ("layer<i>_decay|no_decay").
    """
    depth = len(model.video.blocks)
    groups: dict[str, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("video."):
            short = name.removeprefix("video.")
            layer, plain = layer_id(short, depth), p.ndim <= 1 or short in NO_DECAY
        else:                                   # the head: full lr, no decay on its bias
            layer, plain = depth + 1, p.ndim <= 1
        key = f"layer{layer}_{'no_decay' if plain else 'decay'}"
        g = groups.setdefault(key, {"params": [], "weight_decay": 0.0 if plain else weight_decay,
                                    "lr_scale": layer_decay ** (depth + 1 - layer), "name": key})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: VideoClassifier, cfg: FinetuneConfig, peak_lr: float) -> torch.optim.AdamW:
    """AdamW over `param_groups`; each group's lr is peak_lr x its scale (the scheduler multiplies it)."""
    groups = param_groups(model, cfg.weight_decay, cfg.layer_decay)
    for g in groups:
        g["lr"] = peak_lr * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=peak_lr, betas=tuple(cfg.betas))


# ---- data --------------------------------------------------------------------------------------------


class AugmentedClips(ClipDataset):
    """Training clips: random TSN frames, then `ClipAugment`; items are keyed by (epoch, index).

    Args:
        items: the train videos.
        num_frames, img_size, short_side: as ClipDataset.
        augment: the clip augmentation.
        seed: with (epoch, index), seeds everything random about a clip.
        mask_ratio: > 0 adds "keep" (T', n_keep) tube-masking indices (0 = full input).
        test_view: every clip is the test's centre view instead (`train_view: test`), unaugmented.
    """

    def __init__(self, items: list[VideoItem], num_frames: int, img_size: int, short_side: int,
                 augment: ClipAugment, seed: int = 0, mask_ratio: float = 0.0, tubelet: int = 2, patch_size: int = 16,
                 test_view: bool = False):
        super().__init__(items, num_frames, img_size, short_side, train=True, seed=seed)
        self.augment, self.mask_ratio = augment, mask_ratio
        self.tubes, self.patches = num_frames // tubelet, (img_size // patch_size) ** 2
        self.centre = ClipDataset(items, num_frames, img_size, short_side) if test_view else None

    def __getitem__(self, key) -> dict:
        """{"frames": (3, T, S, S), "label", "index", "ok", "reason"[, "keep"]} of video key = (epoch, index)."""
        epoch, index = key
        item = self.items[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        out = {"label": item.label, "index": index, "ok": True, "reason": ""}
        try:
            out["frames"] = (self.centre.load(item.path, index)[0] if self.centre is not None
                             else self.augment(self.decode(item.path, rng), rng))
        except RejectError as err:
            out.update(frames=torch.zeros(3, self.num_frames, self.img_size, self.img_size), ok=False,
                       reason=err.reason)
        if self.mask_ratio > 0:
            out["keep"] = torch.from_numpy(tube_keep_indices(rng, self.tubes, self.patches, self.mask_ratio))
        return out

    def decode(self, path, rng: np.random.Generator) -> np.ndarray:
        """Random TSN frames, resized to the short side: (T, H, W, 3) uint8."""
        vr = open_video(path)
        idx = clip_indices(len(vr), self.num_frames, rng=rng)
        wanted = np.unique(idx)
        decoded = decode_frames(vr, wanted, path)
        resized = np.stack([resize_short_side(f, self.short_side) for f in decoded])
        return resized[np.searchsorted(wanted, idx)]


def build_augment(cfg: FinetuneConfig, img_size: int, fmt: str) -> ClipAugment:
    return ClipAugment(img_size, cfg.rand_augment, cfg.reprob, tuple(cfg.crop_scale), tuple(cfg.crop_ratio),
                       cfg.uses_flip(fmt))


# ---- loss and evaluation -----------------------------------------------------------------------------


def classification_loss(engine: nn.Module, batch: dict, device: torch.device, label_smoothing: float) -> torch.Tensor:
    """This rank's share of the global batch's mean cross-entropy over its readable clips."""
    frames = batch["frames"].to(device, non_blocking=True)
    keep = batch["keep"].to(device) if "keep" in batch else None
    labels, ok = batch["label"].to(device), batch["ok"].to(device)
    logits = engine(frames, keep).float()
    per_clip = F.cross_entropy(logits, labels.clamp_min(0), label_smoothing=label_smoothing, reduction="none")
    return masked_share(per_clip, ok)


def predict(model: VideoClassifier, dataset: ClipDataset, batch_size: int, workers: int, env: dist.DistEnv,
            amp: str = "off") -> dict | None:
    """Logits of every test view of every video, each rank a share, gathered on rank 0.

    Returns:
        On rank 0: {"logits": (N, V, K) float32, "label": (N,), "ok": (N,) bool, "reason": [str],
        "index": (N,)} in dataset order; None on other ranks.
    """
    def logits(out: torch.Tensor, batch: dict) -> dict:
        return {"logits": out.cpu(), "label": batch["label"]}

    return view_outputs(model, model, logits, dataset, batch_size, workers, env, amp)


def accuracy(pred: dict) -> dict[str, float]:
    """Top-1/top-5 (percent) of the view-averaged logits over the readable test videos."""
    ok = pred["ok"].bool()
    if not ok.any():
        return {"top1": float("nan"), "top5": float("nan")}
    return topk_accuracy(average_views(pred["logits"][ok]), pred["label"][ok], (1, 5))
