"""The one training core: state, optimiser step and epoch runner for every training stage.

Pretraining, classification fine-tuning and text-to-video fine-tuning all train the same way:
whole optimiser steps of `grad_accum` micro-batches (DDP syncs gradients on the last one only),
a step checkpoint every `ckpt_every` steps, an epoch-end hook (validation, logging) followed by
an epoch checkpoint, and SIGTERM/SIGUSR1 answered at the next step boundary by a forced
checkpoint and `Preempted`. What differs is the micro-step (forward, loss, backward), passed in.
The stream of batches is a pure function of (seed, epoch, step), so a resumed run sees exactly
the batches the interrupted one would have seen.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

from tvts.train import distributed as dist
from tvts.train.preemption import Preempted, Preemption
from tvts.train.telemetry import Telemetry

MicroStep = Callable[[Any, int], None]  # (batch, grad_accum): forward, loss / grad_accum, backward


@dataclass
class TrainState:
    """Everything a checkpoint restores besides the RNG states; subclasses add their own fields
    through `extra_state` / `load_extra`, and `sync` runs (on every rank) before each save."""

    model: nn.Module                # the bare model: what checkpoints hold and evaluation runs
    engine: nn.Module               # what runs forward: DDP and/or compiled wrapper of `model`
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    step: int = 0                   # optimiser steps done
    history: list[dict] = field(default_factory=list)  # one record per finished epoch
    train_s: float = 0.0            # training wall time (checkpoint writing excluded), over resumed runs
    telemetry: Telemetry = field(default_factory=Telemetry)  # this process's timings (not checkpointed)

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    @property
    def step_in_epoch(self) -> int:
        return self.step % self.steps_per_epoch

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra(self, saved: dict[str, Any]) -> None:
        pass

    def sync(self) -> None:
        """A collective before each checkpoint (e.g. merging what every rank found)."""


@dataclass(frozen=True)
class Budget:
    """How long and in what steps a run trains."""

    epochs: int
    grad_accum: int = 1
    clip_grad: float = 0.0          # 0 = no clipping
    amp: str = "off"                # the autocast mode (telemetry's MFU is against that dtype's peak)


def optimizer_step(state: TrainState, clip_grad: float) -> None:
    if clip_grad > 0:
        nn.utils.clip_grad_norm_(state.model.parameters(), clip_grad)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.scheduler.step()
    state.step += 1


def run_epoch(state: TrainState, batches: Iterable, micro_step: MicroStep, budget: Budget, env: dist.DistEnv,
              preempt: Preemption, ckpts, after_step: Callable[[], None]) -> bool:
    """Train to the end of the epoch; False if preempted (after a forced step checkpoint).

    Whole optimiser steps only: leftover micro-batches would leak gradients into the next epoch.
    """
    accum, tel = budget.grad_accum, state.telemetry
    state.engine.train()
    t_last = time.perf_counter()
    remaining = (state.steps_per_epoch - state.step_in_epoch) * accum
    for micro, batch in enumerate(tel.timed(itertools.islice(batches, remaining)), start=1):
        sync = micro % accum == 0
        with dist.no_sync(state.engine, sync), tel.counting(batch):
            micro_step(batch, accum)
        if not sync:
            continue
        optimizer_step(state, budget.clip_grad)
        tel.step_done(time.perf_counter() - t_last)
        after_step()
        now = time.perf_counter()
        state.train_s, t_last = state.train_s + now - t_last, now
        # A signal on an epoch's last step lets the epoch end (validation, epoch checkpoint) first.
        if dist.any_rank(preempt.requested, env.device) and state.step_in_epoch:
            ckpts.save_step(state, force=True)
            return False
        ckpts.save_step(state)
        t_last = time.perf_counter()
    return True


def run_epochs(state: TrainState, sampler, loader_for: Callable[[], Iterable], micro_step: MicroStep, budget: Budget,
               env: dist.DistEnv, ckpts, after_step: Callable[[], None] = lambda: None,
               end_epoch: Callable[[int], None] = lambda epoch: None) -> None:
    """Train every remaining epoch; each ends with `end_epoch(epoch)` and an epoch checkpoint.

    Args:
        sampler: the ResumableBatchSampler behind `loader_for()`'s loader (positioned here per epoch).
        loader_for: a new loader over the sampler's current epoch.
    Raises:
        Preempted: after checkpointing on SIGTERM/SIGUSR1.
    """
    tel = state.telemetry
    tel.device, tel.world, tel.amp = env.device, env.world, budget.amp
    tel.compiled = hasattr(state.engine, "_orig_mod")  # what torch.compile returns wraps the module so
    with Preemption() as preempt:
        for epoch in range(state.epoch, budget.epochs):
            sampler.set_epoch(epoch, start_step=state.step_in_epoch * budget.grad_accum)
            if not run_epoch(state, loader_for(), micro_step, budget, env, preempt, ckpts, after_step):
                raise Preempted(state.step)
            end_epoch(epoch)
            last = epoch == budget.epochs - 1
            ckpts.save_epoch(state, epoch, complete=last)
            if not last and dist.any_rank(preempt.requested, env.device):
                raise Preempted(state.step)
