"""The one training core: state, optimiser step and epoch runner for every training stage.

Pretraining, classification fine-tuning and text-to-video fine-tuning all train the same way:
whole optimiser steps of `grad_accum` micro-batches (DDP syncs gradients on the last one only),
a step checkpoint every `ckpt_every` steps, an epoch-end hook (validation, logging) followed by
an epoch checkpoint, and SIGTERM/SIGUSR1 answered at the next step boundary by a forced
checkpoint and `Preempted`. What differs is the micro-step (forward, loss, backward), passed in.
The stream of batches is a pure function of (seed, epoch, step), so a resumed run sees exactly
the batches the interrupted one would have seen.

The divergence guard lives here too: a step whose loss or gradient norm is not finite is skipped
(its gradient discarded, the step still counted so the data stream and schedule stay in place)
and counted; too many in a row, or too large a share, stop the run with `Diverged`.
"""
from __future__ import annotations

import itertools
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

from tvts.train import distributed as dist
from tvts.data.shards import REASONS
from tvts.train.preemption import Diverged, Preempted, Preemption, TooManyBadSamples
from tvts.train.telemetry import Telemetry

# (batch, grad_accum): forward, loss / grad_accum, backward; returns the loss terms (floats) or None
MicroStep = Callable[[Any, int], "dict[str, float] | None"]
log = logging.getLogger("tvts.trainer")


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
    skipped_steps: int = 0          # steps the divergence guard skipped (checkpointed)
    skipped_in_row: int = 0         # of which the latest ones in a row
    skipped_terms: str = ""         # why the last skipped step was, and its loss terms, for the message
    first_loss: float = 0.0         # the first finite step's loss, what `max_loss_growth` is against (checkpointed)
    bad_samples: dict[str, int] = field(default_factory=dict)  # this rank's replaced samples, by reason (checkpointed)

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
    max_skipped_in_row: int = 10    # non-finite steps in a row that stop the run (`Diverged`)
    max_skipped_share: float = 0.05  # share of skipped steps that stops it, once `max_skipped_in_row` were skipped
    max_loss_growth: float = 0.0    # a loss over this times the first step's is skipped like a NaN; 0 = off
    max_bad_samples: int = 1000     # samples a rank may replace (unreadable: `bad_samples`) before the run stops
    where: str = ""                 # the stage's config section (e.g. pretrain), for the messages

    @classmethod
    def of(cls, stage: Any, where: str) -> "Budget":
        """From a stage's config: `optim` (epochs, grad_accum, clip_grad, the divergence guard's
        limits), `runtime.amp` and `data.max_bad_samples`."""
        optim = stage.optim
        return cls(optim.epochs, optim.grad_accum, optim.clip_grad, stage.runtime.amp, optim.max_skipped_in_row,
                   optim.max_skipped_share, optim.max_loss_growth, stage.data.max_bad_samples, where)

    def key(self, name: str) -> str:
        """A limit's config key, for a message (its bare name for a stage without the key: the default)."""
        return f"{self.where}.{name}" if self.where else name.rpartition(".")[2]


def grad_norm(model: nn.Module, clip_grad: float) -> float:
    """The total gradient norm (before clipping, which it does when `clip_grad` > 0)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if clip_grad > 0:
        return float(nn.utils.clip_grad_norm_(params, clip_grad))
    return float(nn.utils.get_total_norm([p.grad for p in params])) if params else 0.0


def finite_step(state: TrainState, budget: Budget, terms: dict[str, float], device: torch.device) -> bool:
    """Clip, then check this step: True when every rank saw a finite loss and gradient norm, and
    no loss exploding (`step_problem`); otherwise the step is counted (`skip_step`). The same
    answer on every rank."""
    norm = grad_norm(state.model, budget.clip_grad)
    problem = step_problem(state, budget, terms, norm)
    if dist.any_rank(bool(problem), device):
        skip_step(state, budget, terms | {"grad_norm": norm}, problem or "a bad loss on another rank")
        return False
    state.skipped_in_row = 0
    if state.first_loss == 0.0 and terms:
        state.first_loss = abs(loss_of(terms))
    return True


def loss_of(terms: dict[str, float]) -> float:
    """The total loss among a micro-step's terms: `loss`, else the only (first) one."""
    return terms["loss"] if "loss" in terms else next(iter(terms.values()))


def step_problem(state: TrainState, budget: Budget, terms: dict[str, float], norm: float) -> str:
    """What is wrong with this step, or "": a NaN or inf, or a loss over `max_loss_growth` times the
    run's first (lr 1e3 gives ~1e7 times: finite, but the weights are lost)."""
    if not (math.isfinite(norm) and all(math.isfinite(v) for v in terms.values())):
        return "a non-finite loss or gradient"
    growth, first = budget.max_loss_growth, state.first_loss
    if growth and first and terms and abs(loss_of(terms)) > growth * first:
        return f"a loss over {growth:g} times the first step's ({first:.4g}; {budget.key('optim.max_loss_growth')})"
    return ""


def optimizer_step(state: TrainState, budget: Budget) -> None:
    """One optimiser step, unless `finite_step` just skipped it (its gradient is discarded). The
    schedule and the step counter advance either way: the batch stream is a function of the step."""
    if not state.skipped_in_row:
        state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    with warnings.catch_warnings():  # a skipped first step warns "scheduler.step() before optimizer.step()"
        warnings.simplefilter("ignore", UserWarning)
        state.scheduler.step()
    state.step += 1


def skip_step(state: TrainState, budget: Budget, terms: dict[str, float], problem: str) -> None:
    """Count a bad step; raise `Diverged` once the limits are passed."""
    state.skipped_steps += 1
    state.skipped_in_row += 1
    state.skipped_terms = f"{problem} ({' '.join(f'{k}={v:.4g}' for k, v in terms.items())})"
    log.warning("step %d skipped: %s; %d skipped so far", state.step + 1, state.skipped_terms, state.skipped_steps)
    check_guard(state, budget, state.step + 1)


def check_guard(state: TrainState, budget: Budget, step: int, epoch_end: bool = False) -> None:
    """Raise `Diverged` when `max_skipped_in_row` steps in a row were skipped, or more than
    `max_skipped_share` of the `step` steps so far: from the `max_skipped_in_row`-th skip on, and at
    every epoch end (a run too short for that many skips is not accepted diverged)."""
    share = state.skipped_steps > budget.max_skipped_share * step
    if state.skipped_in_row >= budget.max_skipped_in_row:
        why = f"{state.skipped_in_row} steps in a row ({budget.key('optim.max_skipped_in_row')} {budget.max_skipped_in_row})"
    elif share and (epoch_end or state.skipped_steps >= budget.max_skipped_in_row):
        why = f"{state.skipped_steps} of {step} steps ({budget.key('optim.max_skipped_share')} {budget.max_skipped_share:g})"
    else:
        return
    raise Diverged(f"diverged at step {step}: {why} had {state.skipped_terms or 'a bad loss (before a resume)'}; "
                   "no checkpoint of it was written; lower the learning rate or check the loss settings")


def count_bad_samples(state: TrainState, batch: Any) -> None:
    """Take a batch's `skipped` counts (samples a dataset replaced: tvts.train.data.replace_bad) into
    the run's, by reason."""
    skipped = batch.pop("skipped", None) if isinstance(batch, dict) else None
    if skipped is None:
        return
    for reason, n in zip(REASONS, skipped.sum(0).tolist()):
        if n:
            state.bad_samples[reason] = state.bad_samples.get(reason, 0) + int(n)


def check_bad_samples(state: TrainState, budget: Budget, device: torch.device) -> None:
    """Raises:
        TooManyBadSamples: on every rank, once any rank replaced more than `max_bad_samples`.
    """
    over = sum(state.bad_samples.values()) > budget.max_bad_samples
    if dist.any_rank(over, device):
        counts = " ".join(f"{k}={v}" for k, v in sorted(state.bad_samples.items())) or "on another rank"
        raise TooManyBadSamples(f"too many unreadable samples at step {state.step}: more than "
                                f"{budget.max_bad_samples} ({budget.key('data.max_bad_samples')}) were replaced on a "
                                f"rank ({counts}); see the log's 'skipped a bad sample' lines for the shards")


def bad_sample_counts(state: TrainState) -> dict[str, int]:
    """Every rank's replaced samples, summed by reason (a collective: call it on every rank)."""
    total: dict[str, int] = {}
    for counts in dist.gather_objects(dict(state.bad_samples)):
        for reason, n in counts.items():
            total[reason] = total.get(reason, 0) + n
    return dict(sorted(total.items()))


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
        count_bad_samples(state, batch)
        with dist.no_sync(state.engine, sync), tel.counting(batch):
            terms = micro_step(batch, accum) or {}
        if not sync:
            continue
        finite_step(state, budget, terms, env.device)
        optimizer_step(state, budget)
        check_bad_samples(state, budget, env.device)
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
            check_guard(state, budget, state.step, epoch_end=True)  # before a (final) epoch checkpoint
            end_epoch(epoch)
            last = epoch == budget.epochs - 1
            ckpts.save_epoch(state, epoch, complete=last)
            if not last and dist.any_rank(preempt.requested, env.device):
                raise Preempted(state.step)
