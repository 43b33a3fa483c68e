"""Checkpoints: atomic writes, `weights_only=True` loading, newest-valid resume, pruning.

Two kinds live side by side in one folder:
    step-NNNNNNNN.pt             every `ckpt_every` optimiser steps (and on preemption); the last M are kept
    epoch-EEEE_step-NNNNNNNN.pt  at each epoch end; all kept (checkpoint selection scores these)
Each holds the model, optimiser, scheduler and RNG states, the position in the data
stream, the run's config and its text spec, so a checkpoint alone resumes or evaluates.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from tvts.io import atomic_path

log = logging.getLogger("tvts.checkpoint")
FORMAT = "tvts-workflow/1"
_NAME = re.compile(r"^(?:epoch-(\d+)_)?step-(\d+)\.pt$")


def step_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def epoch_name(epoch: int, step: int) -> str:
    return f"epoch-{epoch:04d}_{step_name(step)}"


def step_of(name: str) -> int | None:
    """The step in a checkpoint's file name (`step_name`/`epoch_name`), None for any other name."""
    m = _NAME.match(name)
    return int(m.group(2)) if m else None


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, state: dict[str, Any]) -> None:
    """Write `state` atomically (temp file + rename): a killed writer leaves no `*.pt`."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with `weights_only=True` (no pickled code runs). Raises on a truncated or foreign file."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a tvts-workflow checkpoint")
    return state


def candidates(folder: Path) -> list[Path]:
    """Checkpoints in `folder`, newest first (by step; an epoch-end file wins a tie)."""
    found = [(int(m.group(2)), m.group(1) is not None, p) for p in Path(folder).glob("*.pt")
             if (m := _NAME.match(p.name))]
    return [p for *_, p in sorted(found, reverse=True)]


def newest_valid(folder: Path, run_key: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads and belongs to this run (same `run_key`), or None.

    Truncated or corrupt files are skipped with a warning, never loaded half-way.
    """
    for path in candidates(folder):
        try:
            state = load(path)
        except Exception as err:  # noqa: BLE001 - any unreadable file is skipped
            log.warning("skipping unreadable checkpoint %s: %s", path, str(err).splitlines()[0][:200])
            continue
        if state.get("run_key") != run_key:
            log.warning("skipping %s: written by a different config or data version", path.name)
            continue
        return path, state
    return None


def prune(folder: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` step-checkpoints; epoch-end ones are kept. Returns the deleted."""
    steps = sorted((p for p in Path(folder).glob("step-*.pt") if _NAME.match(p.name)), reverse=True)
    gone = steps[keep_last:]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def epoch_checkpoints(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob("epoch-*.pt") if _NAME.match(p.name))
