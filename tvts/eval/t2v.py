"""Text-to-video retrieval: zero-shot with the pretrained encoders, and after contrastive fine-tuning.

Embeddings are the pretraining ones (tvts.models.tvts): a caption is tokenised with the
checkpoint's own tokenizer, encoded as one transcript (K = 1) and projected (`embed_text`);
a video is the final-norm CLS of its clip, projected by `vid_proj` and L2-normalised. The
similarity is the cosine; ranks are pessimistic on ties (tvts.eval.metrics).

Test protocol (`T2VConfig`):
- queries (`test_captions`): "first" = one query per test video, its first caption in file
  order (the MSR-VTT 1k-A size: 1,000 queries for 1,000 videos; DiDeMo's reader already joins a
  video's descriptions into one paragraph, LSMDC has one caption per clip); "all" = every caption
  of every test video is a query (the MSVD convention); "auto" = "all" for msvd, else "first".
  Each query's ground truth is its own video; the gallery is every readable test video.
- videos (`test_views`): "center" = one view, the centre TSN frames and centre crop (short side
  `eval.views.short_side`); "views" = the `eval.views` temporal x spatial views, their normalised
  embeddings averaged and renormalised.
- unreadable test videos leave the gallery together with their queries (counted in the output).

Fine-tuning (`epochs` > 0) trains the whole model but the (unused, frozen) sort head with the
pretraining loss: symmetric InfoNCE over embeddings gathered from every rank, at the
checkpoint's temperature unless `temperature` is set. Each epoch pairs every train video with
one caption drawn from an RNG seeded by (seed, epoch, video index), and a random TSN clip and
crop (tvts.eval.views); no RandAugment. The loop is tvts.eval.tuning's (resumable, DDP).
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from tvts.data.formats.common import VideoItem
from tvts.eval.config import T2VConfig
from tvts.eval.metrics import t2v_metrics
from tvts.eval.tuning import masked_share, view_outputs
from tvts.eval.views import ClipDataset
from tvts.models.text import TextSpec, load_tokenizer, tokenize
from tvts.models.tvts import TVTS, contrastive_loss
from tvts.models.video_vit import tube_keep_indices
from tvts.train import distributed as dist

CAPTION_STREAM = 7  # the caption draw's RNG is seeded (seed, epoch, index, CAPTION_STREAM): apart from the frames'


class RetrievalModel(nn.Module):
    """The TVTS parts retrieval uses. The sort head stays in the state dict but is frozen, so DDP
    (which skips parameters without gradients) does not wait for its unused gradients."""

    def __init__(self, tvts: TVTS):
        super().__init__()
        self.tvts = tvts
        tvts.sort_head.requires_grad_(False)

    def video_embed(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, T, S, S) -> (B, E): vid_proj of the final-norm CLS, L2-normalised."""
        cls = self.tvts.video.forward_features(frames, keep)[:, 0]
        return F.normalize(self.tvts.vid_proj(cls), dim=-1)

    def text_embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(N, L) tokens -> (N, E): each caption as one transcript (K = 1), projected and normalised."""
        return self.tvts.embed_text(self.tvts.encode_text(input_ids[:, None], attention_mask[:, None]))

    def forward(self, frames: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.video_embed(frames, keep), self.text_embed(input_ids, attention_mask)


def build_optimizer(model: RetrievalModel, cfg: T2VConfig) -> torch.optim.AdamW:
    """AdamW at cfg.lr; weight decay on weight matrices only."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for _, p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


# ---- data ---------------------------------------------------------------------------------------


class CaptionedClips(Dataset):
    """Training pairs keyed by (epoch, index): a random clip of the video and one of its captions.

    Args:
        clips: a ClipDataset of the train videos with train=True (one random view).
        spec: the checkpoint's text spec (the tokenizer is built lazily in each worker).
        max_length: caption tokens.
        seed: seeds the caption draw together with (epoch, index).
        mode: "random" or "first" caption.
        mask_ratio, tubes, patches: tube masking of the clip (0 = none).
    """

    def __init__(self, clips: ClipDataset, spec: TextSpec, max_length: int, seed: int = 0, mode: str = "random",
                 mask_ratio: float = 0.0, tubes: int = 8, patches: int = 196):
        self.clips, self.spec, self.max_length, self.seed, self.mode = clips, spec, max_length, seed, mode
        self.mask_ratio, self.tubes, self.patches = mask_ratio, tubes, patches
        self._tok = None

    def __len__(self) -> int:
        return len(self.clips)

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_tok": None}  # workers build their own tokenizer

    def caption(self, epoch: int, index: int) -> str:
        captions = self.clips.items[index].captions
        if self.mode == "first" or len(captions) == 1:
            return captions[0]
        rng = np.random.default_rng([self.seed, epoch, index, CAPTION_STREAM])
        return captions[int(rng.integers(len(captions)))]

    def __getitem__(self, key) -> dict:
        """{"frames": (3, T, S, S), "input_ids", "attention_mask": (L,), "index", "ok", "reason"[, "keep"]}."""
        epoch, index = key
        self.clips.set_epoch(epoch)              # the clip's frames and crop: RNG (seed, epoch, index)
        out = self.clips[index]
        out["frames"] = out["frames"][0]
        if self._tok is None:
            self._tok = load_tokenizer(self.spec, self.max_length)
        ids, mask = tokenize(self._tok, [self.caption(epoch, index)])
        out["input_ids"], out["attention_mask"] = ids[0], mask[0]
        if self.mask_ratio > 0:
            rng = np.random.default_rng([self.seed, epoch, index, CAPTION_STREAM + 1])
            out["keep"] = torch.from_numpy(tube_keep_indices(rng, self.tubes, self.patches, self.mask_ratio))
        return out


def queries(items: list[VideoItem], mode: str) -> tuple[list[str], list[int]]:
    """The test queries: (captions, index of each caption's video), mode "first" or "all"."""
    texts, video = [], []
    for i, item in enumerate(items):
        chosen = item.captions[:1] if mode == "first" else item.captions
        texts += list(chosen)
        video += [i] * len(chosen)
    return texts, video


# ---- loss --------------------------------------------------------------------------------------------


def contrastive_share(video: torch.Tensor, text: torch.Tensor, ok: torch.Tensor, temperature: float) -> torch.Tensor:
    """This rank's share of the symmetric InfoNCE over the global batch, gathered with gradients.

    With every video readable this is exactly the pretraining loss (`contrastive_loss`). Otherwise
    unreadable pairs are neither queries nor negatives, and the mean runs over readable pairs.
    """
    all_v, all_t = dist.gather_with_grad(video), dist.gather_with_grad(text)
    all_ok = dist.gather_with_grad(ok.float()).bool()
    offset = dist.rank() * video.shape[0]
    if bool(all_ok.all()):
        return contrastive_loss(video, text, all_v, all_t, offset, temperature)
    labels = torch.arange(video.shape[0], device=video.device) + offset
    hide = torch.finfo(video.dtype).min / 2              # finite: a row with no readable column stays finite
    v2t = (video @ all_t.t() / temperature).masked_fill(~all_ok[None], hide)
    t2v = (text @ all_v.t() / temperature).masked_fill(~all_ok[None], hide)
    per_pair = (F.cross_entropy(v2t, labels, reduction="none") + F.cross_entropy(t2v, labels, reduction="none")) / 2
    return masked_share(per_pair, ok)


def retrieval_loss(engine: nn.Module, batch: dict, device: torch.device, temperature: float) -> torch.Tensor:
    """The fine-tuning loss of one batch (see `contrastive_share`)."""
    keep = batch["keep"].to(device) if "keep" in batch else None
    v, t = engine(batch["frames"].to(device, non_blocking=True), batch["input_ids"].to(device),
                  batch["attention_mask"].to(device), keep)
    return contrastive_share(v.float(), t.float(), batch["ok"].to(device), temperature)


# ---- evaluation -------------------------------------------------------------------------------------


def video_embeddings(model: RetrievalModel, dataset: ClipDataset, batch_size: int, workers: int,
                     env: dist.DistEnv, amp: str = "off") -> dict | None:
    """Normalised embedding of every test video (views averaged), each rank a share, gathered on rank 0.

    Returns:
        On rank 0: {"emb": (N, E) float32, "ok": (N,) bool, "reason": [str], "index": (N,)}; None elsewhere.
    """
    def averaged(emb: torch.Tensor, batch: dict) -> dict:
        return {"emb": F.normalize(emb.mean(1), dim=-1).cpu()}

    return view_outputs(model, model.video_embed, averaged, dataset, batch_size, workers, env, amp)


@torch.no_grad()
def text_embeddings(model: RetrievalModel, texts: list[str], tokenizer, batch_size: int, env: dist.DistEnv,
                    amp: str = "off") -> torch.Tensor:
    """(N, E) normalised caption embeddings, `batch_size` captions per forward (on this rank's device)."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        ids, mask = tokenize(tokenizer, texts[start:start + batch_size])
        with dist.autocast(env.device, amp):
            out.append(model.text_embed(ids.to(env.device), mask.to(env.device)).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def retrieval_scores(video: dict, texts: list[str], text_video: list[int], text_emb: torch.Tensor) -> dict:
    """R@1/5/10 (percent) and median rank of text -> video over the readable videos.

    Args:
        video: `video_embeddings` output (rank 0).
        texts, text_video: the queries and their video's dataset index.
        text_emb: (N_text, E) query embeddings.
    Returns:
        {"r1", "r5", "r10", "medr", "n_queries"}.
    """
    ok = video["ok"].bool()
    column = torch.full((len(ok),), -1, dtype=torch.long)
    column[ok] = torch.arange(int(ok.sum()))
    gt = column[torch.as_tensor(text_video, dtype=torch.long)] if texts else torch.zeros(0, dtype=torch.long)
    keep = gt >= 0                                                      # queries of unreadable videos leave too
    if not keep.any():
        return {"r1": float("nan"), "r5": float("nan"), "r10": float("nan"), "medr": float("nan"), "n_queries": 0}
    sim = text_emb[keep] @ video["emb"][ok].t()                         # (Nq, Nv) cosine
    m = t2v_metrics(sim, gt[keep])
    return {k: m[k] for k in ("r1", "r5", "r10", "medr")} | {"n_queries": int(keep.sum())}
