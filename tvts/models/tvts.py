"""TVTS: video encoder + text encoder + sort head + contrastive projections, and its losses.

With a `VideoMAEConfig` the same model also owns a VideoMAE decoder and pretrains the video
encoder by masked reconstruction instead (the VideoMAE baseline, `pretrain.method: videomae`).
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tvts.models.config import LossConfig, ModelConfig, VideoMAEConfig
from tvts.models.pixels import PixelVideo
from tvts.models.sort_head import SortHead
from tvts.models.text import TextEncoder, TextSpec
from tvts.models.video_vit import VideoViT
from tvts.models.videomae import VideoMAEDecoder


@dataclass
class Outputs:
    """What a forward pass gives: TVTS fills the first three, VideoMAE only `recon_loss`."""

    video_emb: torch.Tensor | None = None    # (B, E) L2-normalised
    text_emb: torch.Tensor | None = None     # (B, E) L2-normalised mean of the K projected transcripts
    sort_logits: torch.Tensor | None = None  # (B, K, K)
    recon_loss: torch.Tensor | None = None   # (B,) VideoMAE: MSE over each sample's masked tubelets
    sort_target: torch.Tensor | None = None  # (B, K') what sort_logits score; None: the transcripts' order


class TVTS(nn.Module):
    def __init__(self, cfg: ModelConfig, text_spec: TextSpec, loss: LossConfig | None = None,
                 pretrained_text: str | None = None, videomae: VideoMAEConfig | None = None):
        """`videomae` adds the VideoMAE decoder (built last, so the other parts initialise as for TVTS);
        the text side, sort head and projections still exist, for the evaluations that use them."""
        super().__init__()
        self.cfg, self.loss_cfg, self.text_spec = cfg, loss or LossConfig(), text_spec
        self.video = PixelVideo(cfg.video) if cfg.video.encoder == "pixels" else VideoViT(cfg.video)
        self.text = TextEncoder(text_spec, pretrained_text, cfg.text.pool)
        self.sort_head = SortHead(self.video.dim, self.text.dim, cfg.k, cfg.sort)
        self.vid_proj = nn.Linear(self.video.dim, cfg.embed_dim)
        self.txt_proj = nn.Sequential(nn.ReLU(), nn.Linear(self.text.dim, cfg.embed_dim))
        self.decoder = VideoMAEDecoder(cfg.video, videomae) if videomae is not None else None
        # the controls' heads. loss.sort_by video: each slot's time position, from the CLS (K x K logits)
        # or from each slot's own tokens (K logits per slot); arrow: forward or reversed (2 x 2 logits)
        self.order_head = None
        if self.loss_cfg.sort_by == "video":
            per_slot = self.loss_cfg.order_readout == "segments"
            self.order_head = nn.Linear(self.video.dim, cfg.k if per_slot else cfg.k * cfg.k)
        elif self.loss_cfg.sort_by == "arrow":
            self.order_head = nn.Linear(self.video.dim, 4)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, K, L) token ids -> (B, K, Ct) transcript CLS vectors."""
        b, k, length = input_ids.shape
        cls = self.text(input_ids.reshape(b * k, length), attention_mask.reshape(b * k, length))
        return cls.view(b, k, -1)

    def embed_text(self, text_cls: torch.Tensor) -> torch.Tensor:
        """(B, K, Ct) -> (B, E): the normalised mean of the projected transcripts."""
        return F.normalize(self.txt_proj(text_cls).mean(dim=1), dim=-1)

    def forward(self, frames: torch.Tensor, keep: torch.Tensor | None, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, order: torch.Tensor | None = None) -> Outputs:
        if self.decoder is not None:
            return self.forward_videomae(frames, keep)
        if self.loss_cfg.sort_by == "arrow":
            return self.forward_arrow(frames, keep, input_ids, attention_mask, order)
        if self.order_head is not None:
            return self.forward_video_order(frames, keep, input_ids, attention_mask, order)
        text_cls = self.encode_text(input_ids, attention_mask)                       # (B, K, Ct)
        sort_text = text_cls.detach() if self.loss_cfg.detach_text else text_cls
        if self.loss_cfg.sort_video:
            tokens = self.video.forward_features(frames, keep)                       # (B, 1 + L, C)
            video_emb = F.normalize(self.vid_proj(tokens[:, 0]), dim=-1)
            logits = self.sort_head(tokens, sort_text)
        else:  # text-only baseline: no video anywhere
            video_emb = torch.zeros(text_cls.shape[0], self.cfg.embed_dim, device=text_cls.device)
            logits = self.sort_head(None, sort_text)
        return Outputs(video_emb, self.embed_text(text_cls), logits)

    def forward_videomae(self, frames: torch.Tensor, keep: torch.Tensor | None) -> Outputs:
        """VideoMAE: encode the visible tubelets, reconstruct the hidden ones. The text encoder and
        sort head never run (their outputs would only be thrown away)."""
        tokens = self.video.forward_features(frames, keep)                           # (B, 1 + L, C)
        return Outputs(recon_loss=self.decoder.loss(frames, tokens[:, 1:], keep))

    def forward_video_order(self, frames: torch.Tensor, keep: torch.Tensor | None, input_ids: torch.Tensor,
                            attention_mask: torch.Tensor, order: torch.Tensor | None) -> Outputs:
        """The video-order control: the clip's K segments in the slots `order` gives (slot i holds
        the segment at time order[i], as the transcripts), each slot's position read from the CLS
        or from the slot's own tokens (`loss.order_readout`). Tokens are tube-major, so a slot's
        tubes are consecutive rows."""
        if order is None:
            raise ValueError("loss.sort_by video: the forward pass needs the batch's `order`")
        tokens = self.video.forward_features(shuffle_segments(frames, order), keep)
        k = self.cfg.k
        if self.loss_cfg.order_readout == "segments":   # (B, T' * n, C) -> each slot's tubes, averaged: (B, K, C)
            slots = tokens[:, 1:].reshape(tokens.shape[0], k, -1, tokens.shape[-1]).mean(2)
            logits = self.order_head(slots)
        else:
            logits = self.order_head(tokens[:, 0]).view(-1, k, k)
        return self.control_outputs(tokens, logits, input_ids, attention_mask)

    def forward_arrow(self, frames: torch.Tensor, keep: torch.Tensor | None, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor, order: torch.Tensor | None) -> Outputs:
        """The arrow-of-time control: the clips `arrow_target` marks play backwards, and the CLS tells
        which, as a 2-way sort (slot 0 holds the clip's start: position 0 if forward, 1 if reversed)."""
        if order is None:
            raise ValueError("loss.sort_by arrow: the forward pass needs the batch's `order`")
        target = arrow_target(order)
        backwards = target[:, 0].bool().view(-1, 1, 1, 1, 1)
        tokens = self.video.forward_features(torch.where(backwards, frames.flip(2), frames), keep)
        logits = self.order_head(tokens[:, 0]).view(-1, 2, 2)
        return self.control_outputs(tokens, logits, input_ids, attention_mask, target)

    def control_outputs(self, tokens: torch.Tensor, logits: torch.Tensor, input_ids: torch.Tensor,
                        attention_mask: torch.Tensor, target: torch.Tensor | None = None) -> Outputs:
        """A control's outputs: the contrastive term, when weighted, sees the same (shuffled or
        reversed) clip; with weight 0 the text never runs."""
        video_emb = F.normalize(self.vid_proj(tokens[:, 0]), dim=-1)
        text_emb = (self.embed_text(self.encode_text(input_ids, attention_mask)) if self.loss_cfg.align_weight > 0
                    else torch.zeros_like(video_emb))
        return Outputs(video_emb, text_emb, logits, sort_target=target)


def arrow_target(order: torch.Tensor) -> torch.Tensor:
    """(B, K) transcript permutations -> (B, 2) 2-way orders: [1, 0] (reversed) where the first two
    slots are out of order, which a uniform permutation does with probability 1/2."""
    backwards = (order[:, 0] > order[:, 1]).long()
    return torch.stack([backwards, 1 - backwards], dim=1)


def shuffle_segments(frames: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) cut into K = order.shape[1] equal time segments; slot i of the result holds
    segment order[b, i]."""
    b, c, t = frames.shape[:3]
    k = order.shape[1]
    seg = frames.reshape(b, c, k, t // k, *frames.shape[3:])
    index = order.view(b, 1, k, 1, 1, 1).expand_as(seg)
    return torch.gather(seg, 2, index).reshape(frames.shape)


def in_float32(loss_fn):
    """Compute a loss in float32 even when called under autocast: its inputs upcast, autocast off
    inside (autocast would run the similarity matmul of a contrastive loss in bf16: logits / 0.05
    with 8 mantissa bits)."""
    @functools.wraps(loss_fn)
    def wrapped(*args, **kwargs):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        args = [full_precision(a) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
        with torch.autocast(tensors[0].device.type, enabled=False):
            return loss_fn(*args, **kwargs)
    return wrapped


@in_float32
def contrastive_loss(video: torch.Tensor, text: torch.Tensor, all_video: torch.Tensor, all_text: torch.Tensor,
                     offset: int, temperature: float, reduction: str = "mean") -> torch.Tensor:
    """Symmetric InfoNCE of the local rows against every rank's embeddings.

    Args:
        video, text: (B, E) this rank's normalised embeddings.
        all_video, all_text: (W*B, E) gathered across ranks (with gradients).
        offset: index of this rank's first row in the gathered tensors.
        reduction: "mean" of the two directions' cross-entropies, or their "sum" (the official loss).
    Averaged over ranks, this equals the loss on the combined batch, and so do the gradients.
    """
    labels = torch.arange(video.shape[0], device=video.device) + offset
    v2t = video @ all_text.t() / temperature
    t2v = text @ all_video.t() / temperature
    both = F.cross_entropy(v2t, labels) + F.cross_entropy(t2v, labels)
    return both if reduction == "sum" else both / 2


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """Losses run in at least float32 (bf16/fp16 autocast outputs are upcast; float64 stays)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


@in_float32
def sort_loss(logits: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each transcript's true position: logits (B, K, K), order (B, K)."""
    return F.cross_entropy(full_precision(logits).flatten(0, 1), order.flatten())


def decode_permutation(logits: torch.Tensor) -> torch.Tensor:
    """The most likely *permutation* of positions: (B, K, K) -> (B, K).

    Exhaustive over the K! assignments of the log-probabilities, which gives the same optimum
    as the Hungarian algorithm on the K x K scores (exact, and cheap for K <= 6).
    """
    k = logits.shape[-1]
    logp = logits.float().log_softmax(-1)
    perms = torch.tensor(list(itertools.permutations(range(k))), device=logits.device)  # (K!, K)
    scores = logp[:, torch.arange(k, device=logits.device), perms].sum(-1)              # (B, K!)
    return perms[scores.argmax(-1)]


def sort_accuracy(logits: torch.Tensor, order: torch.Tensor) -> dict[str, float]:
    """Sort accuracies of (B, K, K) logits against the true positions (B, K).

    sort_acc: per-position argmax (chance 1/K). sort_exact_argmax: every position's argmax right,
    the official validation metric. sort_exact: the decoded best permutation is the true order
    (chance 1/K!); it is >= sort_exact_argmax, whose argmaxes need not form a permutation.
    """
    hit = logits.argmax(-1) == order
    exact = (decode_permutation(logits) == order).all(-1).float().mean().item()
    return {"sort_acc": hit.float().mean().item(), "sort_exact": exact,
            "sort_exact_argmax": hit.all(-1).float().mean().item()}
