"""The pretraining loop: build pieces, train epochs, validate, checkpoint, resume, preempt.

`run()` wires `build_*`, `train_one_epoch` and `evaluate` together. Only rank 0 writes
checkpoints and talks to MLflow (through `tvts.tracking`, via the `log` callback).
"""
from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from tvts.models.text import TextSpec
from tvts.models.tvts import TVTS, Outputs, contrastive_loss, full_precision, sort_accuracy, sort_loss
from tvts.train import distributed as D
from tvts.train.config import PretrainConfig
from tvts.train.data import ResumableBatchSampler, ViewConfig, WindowDataset

log = logging.getLogger("tvts.pretrain")
MetricsFn = Callable[[dict[str, float], int], None]


# ---- building blocks -------------------------------------------------------------------------

def view_config(cfg: PretrainConfig) -> ViewConfig:
    m = cfg.model
    return ViewConfig(m.video, m.k, m.mask_ratio, m.text.max_length, cfg.data.short_side, cfg.data.eval_mask,
                      frames=cfg.loss.sort_video or cfg.method == "videomae", mask_kind=m.mask_kind)


def build_model(cfg: PretrainConfig, spec: TextSpec, load_pretrained_text: bool = True) -> TVTS:
    """The TVTS model (with the VideoMAE decoder for `method: videomae`). Pretrained text weights
    load from `model.text.model` only for a new run that starts from them (not for `scratch`, a
    `tvts:` init, or a checkpoint about to be loaded)."""
    pretrained = (cfg.model.text.model if load_pretrained_text and cfg.model.text.model != "scratch"
                  and not cfg.init.startswith("tvts:") else None)
    videomae = cfg.videomae if cfg.method == "videomae" else None
    model = TVTS(cfg.model, spec, cfg.loss, pretrained_text=pretrained, videomae=videomae)
    model.video.grad_checkpointing = cfg.runtime.grad_checkpointing
    return model


def freeze_unused(model: TVTS, cfg: PretrainConfig) -> None:
    """Freeze what the method's loss never reaches, before DDP and the optimiser see the model.

    VideoMAE trains the video encoder and decoder only. DDP waits for a gradient of every
    parameter that requires one, so the idle text encoder, sort head and projections must not.
    Only training calls this: evaluations rebuild the model with everything trainable.
    """
    if cfg.method == "videomae":
        for part in (model.text, model.sort_head, model.vid_proj, model.txt_proj):
            part.requires_grad_(False)


def build_optimizer(model: nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    o = cfg.optim
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=o.lr,
                             betas=tuple(o.betas), weight_decay=o.weight_decay)


def lr_factor(step: int, steps_per_epoch: int, cfg: PretrainConfig) -> float:
    """Linear warm-up, then x decay_factor after each epoch in `decay_epochs` (the paper's step decay)."""
    o = cfg.optim
    warm = min(1.0, (step + 1) / o.warmup_steps) if o.warmup_steps else 1.0
    epoch = step // max(1, steps_per_epoch)
    return warm * o.decay_factor ** sum(epoch >= e for e in o.decay_epochs)


def build_scheduler(opt: torch.optim.Optimizer, steps_per_epoch: int, cfg: PretrainConfig):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps_per_epoch, cfg))


def make_loader(ds: WindowDataset, sampler: ResumableBatchSampler, cfg: PretrainConfig,
                env: D.DistEnv, workers: int | None = None) -> DataLoader:
    w = cfg.data.workers if workers is None else workers
    # Its own generator: a DataLoader otherwise draws its worker seed from the global torch RNG,
    # so a resumed run (one draw fewer mid-epoch) would get other dropout masks than the original.
    gen = torch.Generator().manual_seed(cfg.seed)
    return DataLoader(ds, batch_sampler=sampler, num_workers=w, pin_memory=env.device.type == "cuda",
                      prefetch_factor=cfg.data.prefetch if w else None, persistent_workers=False, generator=gen)


def autocast(env: D.DistEnv, cfg: PretrainConfig):
    if env.device.type != "cuda" or cfg.runtime.amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if cfg.runtime.amp == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def run_model(model: nn.Module, batch: dict[str, torch.Tensor]) -> Outputs:
    return model(batch["frames"], batch["keep"], batch["input_ids"], batch["attention_mask"])


def losses(out: Outputs, order: torch.Tensor, cfg: PretrainConfig, env: D.DistEnv) -> dict[str, torch.Tensor]:
    """loss = align_weight * InfoNCE (gathered across ranks, with gradients) + sort_weight * sort CE;
    for videomae, the reconstruction MSE alone (a per-sample mean: DDP's gradient average is exact)."""
    if cfg.method == "videomae":
        recon = full_precision(out.recon_loss).mean()
        return {"loss": recon, "loss_recon": recon}
    lc = cfg.loss
    zero = out.sort_logits.new_zeros(())
    align = zero
    if lc.align_weight > 0 and lc.sort_video:
        v, t = full_precision(out.video_emb), full_precision(out.text_emb)
        align = contrastive_loss(v, t, D.gather_with_grad(v), D.gather_with_grad(t), env.rank * v.shape[0],
                                 lc.temperature)
    sort = sort_loss(out.sort_logits, order) if lc.sort_weight > 0 else zero
    return {"loss": lc.align_weight * align + lc.sort_weight * sort, "loss_align": align, "loss_sort": sort}


# ---- training state, checkpoints, preemption ---------------------------------------------------

@dataclass
class TrainState:
    model: TVTS                     # the bare model (what checkpoints hold)
    engine: nn.Module               # what runs forward: DDP and/or compiled wrapper of `model`
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    step: int = 0                   # optimiser steps done
    history: list[dict] = field(default_factory=list)  # per-epoch validation metrics

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    @property
    def step_in_epoch(self) -> int:
        return self.step % self.steps_per_epoch


def wrap(model: TVTS, cfg: PretrainConfig, env: D.DistEnv) -> nn.Module:
    engine: nn.Module = model
    if env.world > 1:
        engine = DistributedDataParallel(model, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
    if cfg.runtime.compile:
        engine = torch.compile(engine)
    return engine


class Preemption:
    """SIGTERM / SIGUSR1 (what Slurm sends before killing a job) set a flag the loop checks each step."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.requested = False
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame) -> None:
        log.warning("received signal %d: checkpointing and exiting", signum)
        self.requested = True

    def restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)


# ---- one epoch, evaluation ----------------------------------------------------------------------

@dataclass
class Meter:
    """Sums over the current logging window."""

    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    n: int = 0
    samples: int = 0
    wait: float = 0.0
    t0: float = field(default_factory=time.perf_counter)

    def add(self, values: dict[str, float], samples: int) -> None:
        for k, v in values.items():
            self.sums[k] += v
        self.n += 1
        self.samples += samples

    def summary(self, world: int) -> dict[str, float]:
        dt = max(1e-9, time.perf_counter() - self.t0)
        out = {k: v / max(1, self.n) for k, v in self.sums.items()}
        return out | {"samples_per_s": self.samples * world / dt, "data_wait": min(1.0, self.wait / dt)}


def train_one_epoch(st: TrainState, loader: DataLoader, cfg: PretrainConfig, env: D.DistEnv,
                    preempt: Preemption, on_metrics: MetricsFn, on_step: Callable[[], None]) -> bool:
    """Train until the epoch ends; returns False if preempted (after `on_step` checkpointed)."""
    accum = cfg.optim.grad_accum
    st.engine.train()
    meter, micro, tw = Meter(), 0, time.perf_counter()
    for batch in loader:
        meter.wait += time.perf_counter() - tw
        batch = to_device(batch, env.device)
        micro += 1
        sync = micro % accum == 0
        ctx = st.engine.no_sync() if (not sync and isinstance(st.engine, DistributedDataParallel)) else contextlib.nullcontext()
        with ctx:
            with autocast(env, cfg):
                out = run_model(st.engine, batch)
            parts = losses(out, batch["order"], cfg, env)
            (parts["loss"] / accum).backward()
        meter.add({k: v.item() for k, v in parts.items()} | train_accuracy(out, batch), len(batch["order"]))
        if not sync:
            tw = time.perf_counter()
            continue
        optimizer_step(st, cfg)
        if st.step % cfg.runtime.log_every == 0:
            on_metrics({f"train/{k}": v for k, v in meter.summary(env.world).items()}
                       | {"train/lr": st.scheduler.get_last_lr()[0]}, st.step)
            meter = Meter()
        if D.any_rank(preempt.requested, env.device):
            on_step(force=True)
            return False
        on_step(force=False)
        tw = time.perf_counter()
    return True


def train_accuracy(out: Outputs, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """The running sort accuracy (none for VideoMAE, whose forward has no sort head)."""
    if out.sort_logits is None:
        return {}
    return {"sort_acc": sort_accuracy(out.sort_logits.detach(), batch["order"])["sort_acc"]}


def optimizer_step(st: TrainState, cfg: PretrainConfig) -> None:
    if cfg.optim.clip_grad > 0:
        nn.utils.clip_grad_norm_(st.model.parameters(), cfg.optim.clip_grad)
    st.optimizer.step()
    st.optimizer.zero_grad(set_to_none=True)
    st.scheduler.step()
    st.step += 1


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, cfg: PretrainConfig, env: D.DistEnv) -> dict[str, float]:
    """Validation on every rank's share, gathered: sort accuracies, val losses, video<->text R@1
    (VideoMAE: the reconstruction loss)."""
    model.eval()
    parts = defaultdict(list)
    for batch in loader:
        batch = to_device(batch, env.device)
        with autocast(env, cfg):
            out = run_model(model, batch)
        for name, t in (("logits", out.sort_logits), ("order", batch["order"]), ("v", out.video_emb),
                        ("t", out.text_emb), ("recon", out.recon_loss), ("index", batch["index"])):
            if t is not None:
                parts[name].append(t.float().cpu() if t.is_floating_point() else t.cpu())
    local = {k: torch.cat(v) for k, v in parts.items()}
    gathered = D.gather_objects(local)
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
        out["loss_align"] = ((F.cross_entropy(sim / cfg.loss.temperature, target)
                              + F.cross_entropy(sim.t() / cfg.loss.temperature, target)) / 2).item()
    out["n"] = float(len(order))
    return out
