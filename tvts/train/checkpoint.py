"""Checkpoints: atomic writes, `weights_only=True` loading, newest-valid resume, pruning.

Two kinds live side by side in one folder:
    step-NNNNNNNN.pt             every `ckpt_every` optimiser steps (and on preemption); the last M are kept
    epoch-EEEE_step-NNNNNNNN.pt  at each epoch end; all kept (checkpoint selection scores these)
Each holds the model, optimiser, scheduler and RNG states, the position in the data
stream, the run's config and its text spec, so a checkpoint alone resumes or evaluates.
`CheckpointManager` is how every training stage finds, writes and restores them.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from tvts.io import CheckpointError, atomic_path, atomic_write_json, load_weights
from tvts.train import distributed as dist

log = logging.getLogger("tvts.checkpoint")
FORMAT = "tvts-workflow/1"
_NAME = re.compile(r"^(?:epoch-(\d+)_)?step-(\d+)\.pt$")
# Written once a run's outputs are (its manifest): a complete checkpoint without it belongs to a
# run that died at its very end, and is finished, not retrained.
FINALISED = "finalised.json"


def step_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def epoch_name(epoch: int, step: int) -> str:
    return f"epoch-{epoch:04d}_{step_name(step)}"


def step_of(name: str) -> int | None:
    """The step in a checkpoint's file name (`step_name`/`epoch_name`), None for any other name."""
    m = _NAME.match(name)
    return int(m.group(2)) if m else None


class NonFiniteWeights(CheckpointError):
    """Weights with a NaN or infinite value: never written, selected or evaluated."""


def nonfinite_tensors(weights: dict[str, Any]) -> list[str]:
    """The names of the floating-point tensors in `weights` that hold a NaN or an infinity."""
    return [k for k, v in weights.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def require_finite(weights: dict[str, Any], where: str) -> None:
    """Raises:
        NonFiniteWeights: naming `where`, how many tensors are not finite and the first of them.
    """
    bad = nonfinite_tensors(weights)
    if bad:
        raise NonFiniteWeights(f"{where}: {len(bad)} of {len(weights)} weight tensors are not finite "
                               f"(NaN or inf, first: {bad[0]}); refusing a diverged model")


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
    """Write `state` atomically (temp file + rename): a killed writer leaves no `*.pt`, and a full
    disk says `No space left on device: <path>` (through `atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save({"format": FORMAT, **state}, f)
        except RuntimeError as err:
            # torch reports a failed write as "unexpected pos ..."; the OSError it hides says why
            if isinstance(err.__context__, OSError):
                raise err.__context__ from err
            raise


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with `weights_only=True` (no pickled code runs). Raises on a truncated or foreign file."""
    state = load_weights(path, map_location)
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


class CheckpointManager:
    """One run's checkpoint folder: rank 0 writes, every rank contributes its RNG state.

    Args:
        folder: the checkpoint folder (`<run>/ckpt`).
        key: the run key: a hash of everything the weights depend on. Only checkpoints with this
            key are resumed; when a run starts afresh, every checkpoint in the folder is deleted.
        env: this process's rank and device.
        every: optimiser steps between step checkpoints.
        keep_last: step checkpoints kept.
        keep_epochs: epoch checkpoints kept (None = all: pretraining's are scored by selection).
        extra: more entries saved in every checkpoint (config, text spec, MLflow run id).
    """

    def __init__(self, folder: Path, key: str, env: dist.DistEnv, every: int, keep_last: int,
                 keep_epochs: int | None = None, extra: dict | None = None):
        self.folder, self.key, self.env, self.every = Path(folder), key, env, every
        self.keep_last, self.keep_epochs, self.extra = keep_last, keep_epochs, dict(extra or {})

    def find(self, resume_complete: bool = True) -> tuple[Path, dict[str, Any]] | None:
        """The newest valid checkpoint of this run, or None after clearing the folder (start afresh).

        Args:
            resume_complete: whether a finished run's final checkpoint counts once the run was
                finalised (`finalise`; then it is only evaluated again). If not, a finalised run
                trains again from the start (`snakemake -R pretrain` deleted its manifest), while
                a finished run that died before `finalise` resumes at its end, with nothing left
                to train but its manifest to write.
        """
        found = newest_valid(self.folder, self.key) if self.folder.exists() else None
        finalised = (self.folder / FINALISED).exists()
        dist.barrier()  # every rank has looked before rank 0 clears anything
        if found and (resume_complete or not (found[1]["complete"] and finalised)):
            return found
        if self.env.is_main and self.folder.exists():
            for p in candidates(self.folder):
                p.unlink()
            (self.folder / FINALISED).unlink(missing_ok=True)
        dist.barrier()
        return None

    def finalise(self) -> None:
        """Mark the run finished with its outputs written (rank 0); `find` then starts afresh."""
        if self.env.is_main:
            atomic_write_json(self.folder / FINALISED, {"run_key": self.key})

    def save_step(self, state, force: bool = False) -> None:
        """A step checkpoint every `every` steps, or now (`force`, the same on every rank)."""
        if force or state.step % self.every == 0:
            self._save(state, step_name(state.step))

    def save_epoch(self, state, epoch: int, complete: bool) -> Path:
        return self._save(state, epoch_name(epoch, state.step), complete)

    def restore(self, state, saved: dict[str, Any]) -> None:
        """Load `saved` into the TrainState `state`, this rank's RNG stream included."""
        state.model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.scheduler.load_state_dict(saved["scheduler"])
        ranks = saved.get("rng_ranks") or []
        set_rng_state(ranks[self.env.rank] if len(ranks) == self.env.world else saved["rng"])
        state.step, state.history = int(saved["step"]), list(saved["history"])
        state.train_s = float(saved.get("train_s", 0.0))
        guard = saved.get("guard", {})
        state.skipped_steps, state.skipped_in_row = int(guard.get("skipped", 0)), int(guard.get("in_row", 0))
        state.first_loss = float(guard.get("first_loss", 0.0))
        bad = guard.get("bad_samples_ranks") or []
        state.bad_samples = dict(bad[self.env.rank]) if len(bad) == self.env.world else {}
        state.load_extra(saved)

    def _state(self, state, rng_ranks: list[dict], bad_ranks: list[dict], complete: bool) -> dict[str, Any]:
        return {"model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                "scheduler": state.scheduler.state_dict(), "rng": rng_ranks[0], "rng_ranks": rng_ranks,
                "step": state.step, "steps_per_epoch": state.steps_per_epoch, "history": state.history,
                "train_s": state.train_s, "run_key": self.key, "complete": complete,
                "guard": {"skipped": state.skipped_steps, "in_row": state.skipped_in_row,
                          "first_loss": state.first_loss, "bad_samples_ranks": bad_ranks}} \
            | state.extra_state() | self.extra

    def _save(self, state, name: str, complete: bool = False) -> Path:
        """Raises:
            NonFiniteWeights: the model holds a NaN or inf (nothing is written).
        """
        require_finite(state.model.state_dict(), f"{self.folder / name} (step {state.step})")
        rng_ranks = dist.gather_objects(rng_state())  # every rank's dropout stream, for an exact resume
        bad_ranks = dist.gather_objects(dict(state.bad_samples))  # every rank's replaced samples
        state.sync()
        path = self.folder / name
        if self.env.is_main:
            save(path, self._state(state, rng_ranks, bad_ranks, complete))
            prune(self.folder, self.keep_last)
            if self.keep_epochs is not None:
                for old in epoch_checkpoints(self.folder)[:-self.keep_epochs]:
                    old.unlink(missing_ok=True)
        dist.barrier()
        return path
