"""The resumable training loop shared by end-to-end fine-tuning and text-to-video fine-tuning.

It is the pretraining trainer's machinery (tvts.train: DDP setup, gathered losses, atomic
checkpoints with every rank's RNG state, `ResumableBatchSampler`, SIGTERM/SIGUSR1 preemption)
around a task's loss function:

- the run key is a hash of everything the trained weights depend on (the training config, the
  model file, the train video list, the world size); only checkpoints with the same key are
  resumed, others are deleted when a run starts afresh;
- `<work>/ckpt/` gets a step checkpoint every `ckpt_every` optimiser steps and one at each epoch
  end (the newest `keep_last` of each kind are kept: fine-tuning checkpoints hold the optimiser
  and are not scored later, unlike pretraining's);
- a preemption signal checkpoints at the next step boundary on every rank, then the stage exits
  with `PREEMPTED` (75); the rerun resumes bit-exactly (sample order, augmentation and every
  rank's dropout stream are restored);
- a run whose newest checkpoint is *complete* is not trained again: the stage restores it and
  only evaluates (a rerun of a finished job costs the evaluation, not the training).

Losses are computed as this rank's share of the loss on the *global* batch: a sum over its
readable videos divided by the number of readable videos on all ranks, times the world size.
DDP averages gradients over ranks, so the result is the gradient of the mean over every
readable video of the global batch, whatever the ranks hold; unreadable videos add nothing.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from tvts.eval.features import autocast
from tvts.io import dumps
from tvts.train import checkpoint as C
from tvts.train import distributed as D
from tvts.train.data import ResumableBatchSampler
from tvts.train.loop import Preemption, TrainState

log = logging.getLogger("tvts.eval.tuning")
PREEMPTED = 75  # EX_TEMPFAIL, as pretraining: checkpointed on SIGTERM/SIGUSR1, rerun to resume
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
    seed: int
    workers: int
    ckpt_every: int
    keep_last: int
    log_every: int


def training_fields(cfg: Any) -> dict[str, Any]:
    """A config dataclass without its RUNTIME_FIELDS (what the run key hashes)."""
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in RUNTIME_FIELDS}


def run_key(parts: dict[str, Any], digests: list[str]) -> str:
    """16 hex digits identifying a training run: its settings and input digests."""
    h = hashlib.sha256(dumps(parts).encode())
    for d in digests:
        h.update(d.encode())
    return h.hexdigest()[:16]


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Per-step schedule: linear warm-up over `warmup` steps, then cosine from 1 down to `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(opt: torch.optim.Optimizer, steps_per_epoch: int, cfg: Recipe, peak_lr: float):
    """LambdaLR over every param group (each keeps its own lr scale, e.g. layer decay)."""
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    floor = min(1.0, cfg.min_lr / peak_lr)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, floor))


def global_count(ok: torch.Tensor) -> torch.Tensor:
    """Number of True rows of `ok` over every rank (a float scalar, the same on all ranks)."""
    n = ok.sum().to(torch.float64)
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    return D.all_reduce_mean(n) * world


def masked_share(per_row: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """This rank's share of the global-batch mean of `per_row` over readable rows (see module docstring)."""
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    n = global_count(ok).clamp_min(1.0).to(per_row.dtype)
    return torch.where(ok, per_row, torch.zeros_like(per_row)).sum() / n * world


@dataclass
class TuneState(TrainState):
    """Everything a checkpoint restores, besides the RNG states: the pretraining loop's state
    (model, engine, optimiser, scheduler, step and epoch counting, one history record per
    finished epoch) plus what fine-tuning adds."""

    model: nn.Module                # the bare model (any downstream model): what checkpoints hold and evaluation runs
    train_s: float = 0.0            # training wall time, summed over resumed runs
    loss_sum: float = 0.0           # global-batch losses of this epoch so far (for its mean)
    loss_n: int = 0
    rejected: dict[int, str] = field(default_factory=dict)  # train index -> reason, as found while training


def wrap_ddp(model: nn.Module, env: D.DistEnv) -> nn.Module:
    """DDP across ranks (parameters without requires_grad are not synchronised); the model itself alone."""
    if env.world == 1:
        return model
    return DistributedDataParallel(model, device_ids=[env.local_rank] if env.device.type == "cuda" else None)


class Checkpoints:
    """`<work>/ckpt/`: rank 0 writes, every rank contributes its RNG state.

    Args:
        folder: the checkpoint folder.
        key: the run key (see `run_key`).
        env: this process's rank and device.
        every: optimiser steps between step checkpoints.
        keep_last: step checkpoints kept, and epoch checkpoints kept.
        extra: more entries saved in every checkpoint (e.g. the MLflow run id).
    """

    def __init__(self, folder: Path, key: str, env: D.DistEnv, every: int, keep_last: int,
                 extra: dict | None = None):
        self.folder, self.key, self.env, self.every, self.keep_last = Path(folder), key, env, every, keep_last
        self.extra = dict(extra or {})

    def find(self) -> tuple[Path, dict] | None:
        """The newest valid checkpoint of this run (complete or not); None = start afresh (others deleted)."""
        found = C.newest_valid(self.folder, self.key) if self.folder.exists() else None
        if found is None:
            if self.env.is_main and self.folder.exists():
                for p in C.candidates(self.folder):
                    p.unlink()
            D.barrier()
        return found

    def _state(self, st: TuneState, rng_ranks: list[dict], complete: bool) -> dict:
        return {"model": st.model.state_dict(), "optimizer": st.optimizer.state_dict(),
                "scheduler": st.scheduler.state_dict(), "rng": rng_ranks[0], "rng_ranks": rng_ranks,
                "step": st.step, "steps_per_epoch": st.steps_per_epoch, "history": st.history,
                "train_s": st.train_s, "loss_sum": st.loss_sum, "loss_n": st.loss_n, "run_key": self.key,
                "rejected": [[i, r] for i, r in sorted(st.rejected.items())],
                "complete": complete} | self.extra

    def _save(self, st: TuneState, name: str, complete: bool = False) -> Path:
        rng_ranks = D.gather_objects(C.rng_state())  # every rank's dropout stream, for an exact resume
        merge_rejected(st)
        path = self.folder / name
        if self.env.is_main:
            C.save(path, self._state(st, rng_ranks, complete))
            C.prune(self.folder, self.keep_last)
            for old in C.epoch_checkpoints(self.folder)[:-self.keep_last]:
                old.unlink(missing_ok=True)
        D.barrier()
        return path

    def step(self, st: TuneState, force: bool = False) -> None:
        """A step checkpoint every `every` steps, or now (`force`, the same on every rank)."""
        if force or st.step % self.every == 0:
            self._save(st, C.step_name(st.step))

    def epoch_end(self, st: TuneState, epoch: int, complete: bool) -> Path:
        return self._save(st, C.epoch_name(epoch, st.step), complete)

    def restore(self, st: TuneState, state: dict) -> None:
        st.model.load_state_dict(state["model"])
        st.optimizer.load_state_dict(state["optimizer"])
        st.scheduler.load_state_dict(state["scheduler"])
        ranks = state.get("rng_ranks") or []
        C.set_rng_state(ranks[self.env.rank] if len(ranks) == self.env.world else state["rng"])
        st.step, st.history, st.train_s = int(state["step"]), list(state["history"]), float(state["train_s"])
        st.loss_sum, st.loss_n = float(state["loss_sum"]), int(state["loss_n"])
        st.rejected = {int(i): str(r) for i, r in state["rejected"]}


def merge_rejected(st: TuneState) -> None:
    """Every rank's unreadable train videos, merged on every rank (a collective)."""
    for part in D.gather_objects(st.rejected):
        st.rejected.update(part)


def train_loader(dataset: Dataset, sampler: ResumableBatchSampler, workers: int, seed: int,
                 env: D.DistEnv) -> DataLoader:
    """A loader over (epoch, index) keys. Its own generator: the worker seeds then never draw from
    the global torch RNG, whose state (dropout) must be the same in a resumed run."""
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=env.device.type == "cuda",
                      persistent_workers=False, generator=torch.Generator().manual_seed(seed))


def optimizer_step(st: TuneState, clip_grad: float) -> None:
    if clip_grad > 0:
        nn.utils.clip_grad_norm_(st.model.parameters(), clip_grad)
    st.optimizer.step()
    st.optimizer.zero_grad(set_to_none=True)
    st.scheduler.step()
    st.step += 1


LossFn = Callable[[nn.Module, dict], torch.Tensor]  # (engine, batch) -> this rank's share of the batch loss


def train_one_epoch(st: TuneState, loader: DataLoader, loss_fn: LossFn, cfg: Recipe, env: D.DistEnv,
                    preempt: Preemption, ckpts: Checkpoints) -> bool:
    """Train to the end of the epoch; False if preempted (after a forced checkpoint)."""
    accum = cfg.grad_accum
    st.engine.train()
    micro, t_last, window = 0, time.perf_counter(), 0.0
    # Whole optimiser steps only: leftover micro-batches would leak gradients into the next epoch.
    for batch in itertools.islice(loader, (st.steps_per_epoch - st.step_in_epoch) * accum):
        micro += 1
        for i, ok, reason in zip(batch["index"].tolist(), batch["ok"].tolist(), batch["reason"]):
            if not ok:
                st.rejected[int(i)] = reason
        sync = micro % accum == 0
        no_sync = not sync and isinstance(st.engine, DistributedDataParallel)
        with st.engine.no_sync() if no_sync else contextlib.nullcontext():
            with autocast(env.device, cfg.amp):
                loss = loss_fn(st.engine, batch) / accum
            loss.backward()
        window += loss.detach().double()
        if not sync:
            continue
        optimizer_step(st, cfg.clip_grad)
        step_loss = float(D.all_reduce_mean(window) * env.world)  # the global batch's loss, on every rank
        st.loss_sum, st.loss_n, window = st.loss_sum + step_loss, st.loss_n + 1, 0.0
        now = time.perf_counter()
        st.train_s, t_last = st.train_s + now - t_last, now
        if env.is_main and st.step % cfg.log_every == 0:
            log.info("step %d loss %.4f lr %.3g", st.step, step_loss, max(st.scheduler.get_last_lr()))
        if D.any_rank(preempt.requested, env.device):
            ckpts.step(st, force=True)
            return False
        ckpts.step(st)
        t_last = time.perf_counter()  # checkpoint writing is not training time
    return True


def train(st: TuneState, dataset: Dataset, sampler: ResumableBatchSampler, loss_fn: LossFn, cfg: Recipe,
          env: D.DistEnv, ckpts: Checkpoints, on_epoch: Callable[[dict], dict] | None = None) -> None:
    """Train every remaining epoch; each ends with `on_epoch(record)` (extra metrics) and a checkpoint.

    Raises:
        SystemExit(PREEMPTED): after checkpointing on SIGTERM/SIGUSR1.
    """
    preempt = Preemption()
    try:
        for epoch in range(st.epoch, cfg.epochs):
            sampler.set_epoch(epoch, start_step=st.step_in_epoch * cfg.grad_accum)
            loader = train_loader(dataset, sampler, cfg.workers, cfg.seed, env)
            if not train_one_epoch(st, loader, loss_fn, cfg, env, preempt, ckpts):
                log.warning("preempted at step %d: checkpoint written, exiting with %d", st.step, PREEMPTED)
                raise SystemExit(PREEMPTED)
            record = {"epoch": epoch, "step": st.step, "train/loss": st.loss_sum / max(1, st.loss_n),
                      "train/lr": max(st.scheduler.get_last_lr())}
            st.loss_sum, st.loss_n = 0.0, 0
            st.history.append(record | (on_epoch(record) if on_epoch else {}))
            ckpts.epoch_end(st, epoch, complete=epoch == cfg.epochs - 1)
    finally:
        preempt.restore()
    merge_rejected(st)


def steps_per_epoch(sampler: ResumableBatchSampler, grad_accum: int, what: str) -> int:
    """Optimiser steps per epoch; SystemExit when the train split is smaller than one global batch."""
    n = sampler.steps_per_epoch() // grad_accum
    if n < 1:
        raise SystemExit(f"{what}: {sampler.n} train videos are fewer than one global batch "
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


def shard_loader(dataset: Dataset, batch_size: int, workers: int, env: D.DistEnv) -> DataLoader:
    """This rank's share of an evaluation set, in index order (every video once over all ranks)."""
    sampler = ResumableBatchSampler(len(dataset), batch_size, env.rank, env.world, shuffle=False, drop_last=False)
    return DataLoader(ByIndex(dataset), batch_sampler=sampler, num_workers=workers,
                      pin_memory=env.device.type == "cuda", persistent_workers=False,
                      generator=torch.Generator().manual_seed(0))  # never draws from the training RNG


@torch.no_grad()
def view_outputs(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                 summarise: Callable[[torch.Tensor, dict], dict], dataset: Dataset, batch_size: int, workers: int,
                 env: D.DistEnv, amp: str = "off") -> dict[str, Any] | None:
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
        with autocast(env.device, amp):
            out = forward(frames.flatten(0, 1)).float().view(b, v, -1)    # (B, V, D)
        rows.append(summarise(out, batch) | {"ok": batch["ok"], "index": batch["index"],
                                             "reason": list(batch["reason"])})
    model.train(was_training)
    return gather_rows(rows, env)


def gather_rows(rows: list[dict], env: D.DistEnv) -> dict[str, Any] | None:
    """Every rank's per-batch results, concatenated in "index" order (rank 0 only).

    Args:
        rows: this rank's batches, each a dict of CPU tensors (first dim = videos) or lists of str,
            including "index" (the dataset index of each video).
        env: this process's rank.
    Returns:
        name -> tensor (or list) over the whole set on rank 0 ({} if empty); None on other ranks.
    """
    every = [r for part in D.gather_objects(rows) for r in part]
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
