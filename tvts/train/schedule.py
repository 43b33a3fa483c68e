"""Learning-rate schedules, per optimiser step, as factors of each param group's base lr."""
from __future__ import annotations

import math
from typing import Callable

import torch


def step_decay(step: int, steps_per_epoch: int, warmup_steps: int, decay_epochs: tuple[int, ...],
               decay_factor: float) -> float:
    """Linear warm-up over `warmup_steps`, then x `decay_factor` after each epoch in `decay_epochs`
    (pretraining: the paper's lr 1e-4, x0.1 after epochs 12 and 16 of 20)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    epoch = step // max(1, steps_per_epoch)
    return warm * decay_factor ** sum(epoch >= e for e in decay_epochs)


def warmup_cosine(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine from 1 down to `floor` at `total` (fine-tuning)."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_scheduler(opt: torch.optim.Optimizer, factor: Callable[[int], float]) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over every param group (each keeps its own lr scale, e.g. layer decay)."""
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
