"""Fine-tuning on the one training core (tvts.train.trainer), for classification and text-to-video.

The core brings DDP, atomic checkpoints with every rank's RNG state, `ResumableBatchSampler`
and SIGTERM/SIGUSR1 preemption; this module adds what both fine-tuning tasks need around a
task's loss function:

- the run key is a hash of everything the trained weights depend on (the training config, the
  model file, the train video list, the world size); only checkpoints with the same key are
  resumed, others are deleted when a run starts afresh;
- `<work>/ckpt/` gets a step checkpoint every `ckpt_every` optimiser steps and one at each epoch
  end (the newest `keep_last` of each kind are kept: fine-tuning checkpoints hold the optimiser
  and are not scored later, unlike pretraining's);
- a preemption signal checkpoints at the next step boundary on every rank, then `Preempted` is
  raised (the stage exits with 75); the rerun resumes bit-exactly (sample order, augmentation and every
  rank's dropout stream are restored);
- a run whose newest checkpoint is *complete* is not trained again: the stage restores it and
  only evaluates (a rerun of a finished job costs the evaluation, not the training).

Losses are computed as this rank's share of the loss on the *global* batch: a sum over its
readable videos divided by the number of readable videos on all ranks, times the world size.
DDP averages gradients over ranks, so the result is the gradient of the mean over every
readable video of the global batch, whatever the ranks hold; unreadable videos add nothing.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Protocol

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from tvts.config import ConfigError
from tvts.io import dumps
from tvts.train import distributed as dist
from tvts.train import schedule
from tvts.train.data import ResumableBatchSampler
from tvts.train.precision import compile_engine
from tvts.train.trainer import Budget, TrainState, run_epochs

log = logging.getLogger("tvts.eval.tuning")
# Config fields that change how a run goes, not what it computes: left out of the run key,
# so a job resumed with more workers or another checkpoint interval keeps its checkpoints.
RUNTIME_FIELDS = frozenset({"workers", "ckpt_every", "keep_last", "log_every", "threads", "val_every"})


class Recipe(Protocol):
    """The training fields FinetuneConfig and T2VConfig share."""

    epochs: int
    warmup_epochs: int
    min_lr: float
    batch_size: int
    grad_accum: int
    clip_grad: float
    amp: str
    compile: bool
    seed: int
    workers: int
    ckpt_every: int
    keep_last: int
    log_every: int


def training_fields(cfg: Any) -> dict[str, Any]:
    """A config dataclass without its RUNTIME_FIELDS (what the run key hashes)."""
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in RUNTIME_FIELDS}


def tuning_engine(model: nn.Module, env: dist.DistEnv, cfg: Recipe, stage: str, section: str) -> nn.Module:
    """What runs the training forward: DDP across ranks, compiled when `<section>.compile`."""
    engine = dist.wrap_ddp(model, env)
    return compile_engine(engine, stage, f"{section}.compile") if cfg.compile else engine


def run_key(parts: dict[str, Any], digests: list[str]) -> str:
    """16 hex digits identifying a training run: its settings and input digests."""
    h = hashlib.sha256(dumps(parts).encode())
    for d in digests:
        h.update(d.encode())
    return h.hexdigest()[:16]


def build_scheduler(opt: torch.optim.Optimizer, steps_per_epoch: int, cfg: Recipe, peak_lr: float):
    """Per-step linear warm-up over `warmup_epochs`, then cosine down to `min_lr`."""
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    floor = min(1.0, cfg.min_lr / peak_lr)
    return schedule.build_scheduler(opt, lambda s: schedule.warmup_cosine(s, total, warmup, floor))


def global_count(ok: torch.Tensor) -> torch.Tensor:
    """Number of True rows of `ok` over every rank (a float scalar, the same on all ranks)."""
    n = ok.sum().to(torch.float64)
    return dist.all_reduce_mean(n) * dist.world_size()


def masked_share(per_row: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """This rank's share of the global-batch mean of `per_row` over readable rows (see module docstring)."""
    n = global_count(ok).clamp_min(1.0).to(per_row.dtype)
    return torch.where(ok, per_row, torch.zeros_like(per_row)).sum() / n * dist.world_size()


@dataclass
class TuneState(TrainState):
    """The core's training state plus what fine-tuning checkpoints: the epoch's running loss and
    the train videos found unreadable (merged over ranks before every checkpoint)."""

    loss_sum: float = 0.0           # global-batch losses of this epoch so far (for its mean)
    loss_n: int = 0
    rejected: dict[int, str] = field(default_factory=dict)  # train index -> reason, as found while training

    def extra_state(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum, "loss_n": self.loss_n,
                "rejected": [[i, r] for i, r in sorted(self.rejected.items())]}

    def load_extra(self, saved: dict[str, Any]) -> None:
        self.loss_sum, self.loss_n = float(saved["loss_sum"]), int(saved["loss_n"])
        self.rejected = {int(i): str(r) for i, r in saved["rejected"]}

    def sync(self) -> None:
        """Every rank's unreadable train videos, merged on every rank (a collective)."""
        for part in dist.gather_objects(self.rejected):
            self.rejected.update(part)


def train_loader(dataset: Dataset, sampler: ResumableBatchSampler, workers: int, seed: int,
                 env: dist.DistEnv) -> DataLoader:
    """A loader over (epoch, index) keys. Its own generator: the worker seeds then never draw from
    the global torch RNG, whose state (dropout) must be the same in a resumed run."""
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=env.device.type == "cuda",
                      persistent_workers=False, generator=torch.Generator().manual_seed(seed))


LossFn = Callable[[nn.Module, dict], torch.Tensor]  # (engine, batch) -> this rank's share of the batch loss


class Tuning:
    """The micro-step and per-step bookkeeping of a fine-tuning run around its `loss_fn`."""

    def __init__(self, state: TuneState, loss_fn: LossFn, cfg: Recipe, env: dist.DistEnv):
        self.state, self.loss_fn, self.cfg, self.env = state, loss_fn, cfg, env
        self.window = 0.0   # this optimiser step's loss so far (this rank's share)

    def micro_step(self, batch: dict, accum: int) -> None:
        for i, ok, reason in zip(batch["index"].tolist(), batch["ok"].tolist(), batch["reason"]):
            if not ok:
                self.state.rejected[int(i)] = reason
        with dist.autocast(self.env.device, self.cfg.amp):
            loss = self.loss_fn(self.state.engine, batch) / accum
        loss.backward()
        self.window += loss.detach().double()

    def after_step(self) -> None:
        state = self.state
        step_loss = float(dist.all_reduce_mean(self.window) * self.env.world)  # the global batch's, on every rank
        state.loss_sum, state.loss_n, self.window = state.loss_sum + step_loss, state.loss_n + 1, 0.0
        if self.env.is_main and state.step % self.cfg.log_every == 0:
            log.info("step %d loss %.4f lr %.3g", state.step, step_loss, max(state.scheduler.get_last_lr()))


def train(state: TuneState, dataset: Dataset, sampler: ResumableBatchSampler, loss_fn: LossFn, cfg: Recipe,
          env: dist.DistEnv, ckpts, on_epoch: Callable[[dict], dict] | None = None) -> None:
    """Train every remaining epoch; each ends with `on_epoch(record)` (extra metrics) and a checkpoint.

    Raises:
        Preempted: after checkpointing on SIGTERM/SIGUSR1.
    """
    tuning = Tuning(state, loss_fn, cfg, env)

    def end_epoch(epoch: int) -> None:
        record = {"epoch": epoch, "step": state.step, "train/loss": state.loss_sum / max(1, state.loss_n),
                  "train/lr": max(state.scheduler.get_last_lr())}
        state.loss_sum, state.loss_n = 0.0, 0
        state.history.append(record | (on_epoch(record) if on_epoch else {}))

    run_epochs(state, sampler, lambda: train_loader(dataset, sampler, cfg.workers, cfg.seed, env), tuning.micro_step,
               Budget(cfg.epochs, cfg.grad_accum, cfg.clip_grad, cfg.amp), env, ckpts, tuning.after_step, end_epoch)
    state.sync()


def steps_per_epoch(sampler: ResumableBatchSampler, grad_accum: int, what: str) -> int:
    """Optimiser steps per epoch; a ConfigError when the train split is smaller than one global batch."""
    n = sampler.steps_per_epoch() // grad_accum
    if n < 1:
        raise ConfigError(f"{what}.batch_size: {sampler.n} train videos are fewer than one global batch "
                          f"({sampler.batch} x {sampler.world} ranks x grad_accum {grad_accum}); lower batch_size")
    return n


class ByIndex(Dataset):
    """Adapts an index-keyed dataset (e.g. ClipDataset's test views) to (epoch, index) keys."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        return self.dataset[key[1] if isinstance(key, (tuple, list)) else key]


def shard_loader(dataset: Dataset, batch_size: int, workers: int, env: dist.DistEnv) -> DataLoader:
    """This rank's share of an evaluation set, in index order (every video once over all ranks)."""
    sampler = ResumableBatchSampler(len(dataset), batch_size, env.rank, env.world, shuffle=False, drop_last=False)
    return DataLoader(ByIndex(dataset), batch_sampler=sampler, num_workers=workers,
                      pin_memory=env.device.type == "cuda", persistent_workers=False,
                      generator=torch.Generator().manual_seed(0))  # never draws from the training RNG


@torch.no_grad()
def view_outputs(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                 summarise: Callable[[torch.Tensor, dict], dict], dataset: Dataset, batch_size: int, workers: int,
                 env: dist.DistEnv, amp: str = "off") -> dict[str, Any] | None:
    """`forward` on every view of every video, in eval mode, each rank a share, gathered on rank 0.

    Args:
        model: the module behind `forward`; in eval mode for the pass, its own mode restored after.
        forward: (B*V, 3, T, S, S) clips -> (B*V, ...) outputs (run under autocast).
        summarise: (the (B, V, D) float32 outputs, the batch) -> this batch's CPU tensors by name.
        dataset: the test views (a ClipDataset: "frames" (V, 3, T, S, S), "ok", "reason", "index" per video).
        batch_size, workers: the loader's. env: this process's rank and device. amp: autocast precision.
    Returns:
        On rank 0: summarise's names, then "ok", "index", "reason", over the set in dataset order; None elsewhere.
    """
    was_training = model.training
    model.eval()
    rows = []
    for batch in shard_loader(dataset, batch_size, workers, env):
        frames = batch["frames"].to(env.device, non_blocking=True)          # (B, V, 3, T, S, S)
        b, v = frames.shape[:2]
        with dist.autocast(env.device, amp):
            out = forward(frames.flatten(0, 1)).float().view(b, v, -1)    # (B, V, D)
        rows.append(summarise(out, batch) | {"ok": batch["ok"], "index": batch["index"],
                                             "reason": list(batch["reason"])})
    model.train(was_training)
    return gather_rows(rows, env)


def gather_rows(rows: list[dict], env: dist.DistEnv) -> dict[str, Any] | None:
    """Every rank's per-batch results, concatenated in "index" order (rank 0 only).

    Args:
        rows: this rank's batches, each a dict of CPU tensors (first dim = videos) or lists of str,
            including "index" (the dataset index of each video).
        env: this process's rank.
    Returns:
        name -> tensor (or list) over the whole set on rank 0 ({} if empty); None on other ranks.
    """
    every = [r for part in dist.gather_objects(rows) for r in part]
    if not env.is_main:
        return None
    if not every:
        return {}
    order = torch.argsort(torch.cat([r["index"] for r in every]), stable=True)
    out: dict[str, Any] = {}
    for k, first in every[0].items():
        if isinstance(first, torch.Tensor):
            out[k] = torch.cat([r[k] for r in every])[order]
        else:
            flat = [x for r in every for x in r[k]]
            out[k] = [flat[i] for i in order.tolist()]
    return out
