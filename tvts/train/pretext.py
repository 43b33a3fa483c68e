"""The pretraining objective, one batch at a time: its optimiser and schedule, the forward pass,
the losses, and the validation pass whose metrics checkpoint selection reads.

`tvts.train.pretrain` runs these through the one training core (`tvts.train.trainer`).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tvts.models.config import LossConfig
from tvts.models.tvts import TVTS, Outputs, contrastive_loss, full_precision, sort_accuracy, sort_loss
from tvts.train import distributed as dist
from tvts.train import schedule
from tvts.train.config import PretrainConfig
from tvts.train.data import ResumableBatchSampler, ViewConfig, WindowDataset
from tvts.train.precision import compile_engine


def view_config(cfg: PretrainConfig) -> ViewConfig:
    m = cfg.model
    return ViewConfig(m.video, m.k, m.mask_ratio, m.text.max_length, cfg.data.short_side, cfg.data.eval_mask,
                      frames=cfg.loss.sort_video or cfg.method == "videomae", mask_kind=m.mask_kind)


def freeze_unused(model: TVTS, cfg: PretrainConfig) -> None:
    """Freeze what the method's loss never reaches, before DDP and the optimiser see the model.

    VideoMAE trains the video encoder and decoder only. DDP waits for a gradient of every
    parameter that requires one, so the idle text encoder, sort head and projections must not.
    Only training calls this: evaluations rebuild the model with everything trainable.
    """
    if cfg.method == "videomae":
        for part in (model.text, model.sort_head, model.vid_proj, model.txt_proj):
            part.requires_grad_(False)
    if cfg.loss.sort_by != "transcripts":  # the order head replaces the sort head; without a contrastive term, no text
        model.sort_head.requires_grad_(False)
        if cfg.loss.align_weight == 0:
            for part in (model.text, model.txt_proj, model.vid_proj):
                part.requires_grad_(False)


def build_optimizer(model: nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=o.lr,
                             betas=tuple(o.betas), weight_decay=o.weight_decay)


def build_scheduler(opt: torch.optim.Optimizer, steps_per_epoch: int, cfg: PretrainConfig):
    """The paper's step decay (with optional linear warm-up), per optimiser step."""
    o = cfg.optim
    return schedule.build_scheduler(
        opt, lambda s: schedule.step_decay(s, steps_per_epoch, o.warmup_steps, o.decay_epochs, o.decay_factor))


def make_loader(ds: WindowDataset, sampler: ResumableBatchSampler, cfg: PretrainConfig,
                env: dist.DistEnv, workers: int | None = None) -> DataLoader:
    w = cfg.data.workers if workers is None else workers
    # Its own generator: a DataLoader otherwise draws its worker seed from the global torch RNG,
    # so a resumed run (one draw fewer mid-epoch) would get other dropout masks than the original.
    gen = torch.Generator().manual_seed(cfg.seed)
    return DataLoader(ds, batch_sampler=sampler, num_workers=w, pin_memory=env.device.type == "cuda",
                      prefetch_factor=cfg.data.prefetch if w else None, persistent_workers=False, generator=gen)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def run_model(model: nn.Module, batch: dict[str, torch.Tensor]) -> Outputs:
    return model(batch["frames"], batch["keep"], batch["input_ids"], batch["attention_mask"], batch["order"])


def losses(out: Outputs, order: torch.Tensor, cfg: PretrainConfig, env: dist.DistEnv) -> dict[str, torch.Tensor]:
    """loss = align_weight * InfoNCE (gathered across ranks, with gradients) + sort_weight * sort CE;
    for videomae, the reconstruction MSE alone (a per-sample mean: DDP's gradient average is exact)."""
    if cfg.method == "videomae":
        recon = full_precision(out.recon_loss).mean()
        return {"loss": recon, "loss_recon": recon}
    lc = cfg.loss
    zero = out.sort_logits.new_zeros(())
    align = zero
    if lc.align_weight > 0 and lc.sort_video:
        align = align_loss(full_precision(out.video_emb), full_precision(out.text_emb), lc, env)
    sort = sort_loss(out.sort_logits, sort_target(out, order)) if lc.sort_weight > 0 else zero
    return {"loss": lc.align_weight * align + lc.sort_weight * sort, "loss_align": align, "loss_sort": sort}


def sort_target(out: Outputs, order: torch.Tensor) -> torch.Tensor:
    """What the sort logits are scored against: the transcripts' order, or a control's own target."""
    return order if out.sort_target is None else out.sort_target


def align_loss(v: torch.Tensor, t: torch.Tensor, lc: LossConfig, env: dist.DistEnv) -> torch.Tensor:
    """The contrastive term on this rank, with embeddings gathered from every rank.

    gather_grad "local" (official): the full-batch loss on every rank, each keeping only its own
    slice of the gradient. "exact": this rank's rows against every rank's, whose average over
    ranks is the full-batch loss, with an exact gradient. One process: the same loss.
    """
    if lc.gather_grad == "local":
        all_v, all_t = dist.gather_local_grad(v), dist.gather_local_grad(t)
        return contrastive_loss(all_v, all_t, all_v, all_t, 0, lc.temperature, lc.align_reduction)
    return contrastive_loss(v, t, dist.gather_with_grad(v), dist.gather_with_grad(t), env.rank * v.shape[0],
                            lc.temperature, lc.align_reduction)


def wrap(model: TVTS, cfg: PretrainConfig, env: dist.DistEnv, stage: str = "pretrain") -> nn.Module:
    """What runs forward: DDP across ranks, compiled if `runtime.compile`."""
    engine = dist.wrap_ddp(model, env)
    if cfg.runtime.compile:
        engine = compile_engine(engine, stage, f"{stage}.runtime.compile")
    return engine


@dataclass
class Meter:
    """Sums over the current logging window."""

    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    n: int = 0
    samples: int = 0
    wait0: float = 0.0   # the run's data wait (telemetry's, cumulative) when the window opened
    t0: float = field(default_factory=time.perf_counter)

    def add(self, values: dict[str, float], samples: int) -> None:
        for k, v in values.items():
            self.sums[k] += v
        self.n += 1
        self.samples += samples

    def summary(self, world: int, wait: float) -> dict[str, float]:
        """Window means, global samples/s and the window's data-wait share (`wait`: cumulative wait now)."""
        dt = max(1e-9, time.perf_counter() - self.t0)
        out = {k: v / max(1, self.n) for k, v in self.sums.items()}
        return out | {"samples_per_s": self.samples * world / dt, "data_wait": min(1.0, (wait - self.wait0) / dt)}


def train_accuracy(out: Outputs, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """The running sort accuracy (none for VideoMAE, whose forward has no sort head)."""
    if out.sort_logits is None:
        return {}
    return {"sort_acc": sort_accuracy(out.sort_logits.detach(), sort_target(out, batch["order"]))["sort_acc"]}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, cfg: PretrainConfig, env: dist.DistEnv) -> dict[str, float]:
    """Validation on every rank's share, gathered: sort accuracies, val losses, video<->text R@1
    (VideoMAE: the reconstruction loss)."""
    model.eval()
    parts = defaultdict(list)
    for batch in loader:
        batch = to_device(batch, env.device)
        with dist.autocast(env.device, cfg.runtime.amp):
            out = run_model(model, batch)
        for name, t in (("logits", out.sort_logits), ("order", sort_target(out, batch["order"])), ("v", out.video_emb),
                        ("t", out.text_emb), ("recon", out.recon_loss), ("index", batch["index"])):
            if t is not None:
                parts[name].append(t.float().cpu() if t.is_floating_point() else t.cpu())
    local = {k: torch.cat(v) for k, v in parts.items()}
    gathered = dist.gather_objects(local)
    model.train()
    if not env.is_main:
        return {}
    return validation_metrics({k: torch.cat([g[k] for g in gathered if k in g]) for k in local}, cfg)


def validation_metrics(r: dict[str, torch.Tensor], cfg: PretrainConfig) -> dict[str, float]:
    if cfg.method == "videomae":  # no sort metrics: the sort head is not trained
        return {"loss_recon": r["recon"].double().mean().item(), "n": float(len(r["recon"]))}
    logits, order = r["logits"], r["order"]
    k = logits.shape[-1]
    out = sort_accuracy(logits, order)
    out["loss_sort"] = sort_loss(logits, order).item()
    hit = logits.argmax(-1) == order
    for j in range(k):  # accuracy of the transcript whose true position is j
        out[f"sort_acc_pos{j}"] = hit[order == j].float().mean().item()
    if cfg.loss.sort_video:
        sim = r["v"] @ r["t"].t()
        target = torch.arange(sim.shape[0])
        out["v2t_r1"] = (sim.argmax(1) == target).float().mean().item()
        out["t2v_r1"] = (sim.argmax(0) == target).float().mean().item()
        tau = cfg.loss.temperature
        both = F.cross_entropy(sim / tau, target) + F.cross_entropy(sim.t() / tau, target)
        out["loss_align"] = (both if cfg.loss.align_reduction == "sum" else both / 2).item()
    out["n"] = float(len(order))
    return out
