"""Preemption: Slurm sends SIGTERM (or SIGUSR1 with --signal) before it kills a job.

The trainer checks the flag at every optimiser step boundary, writes a checkpoint on every
rank's behalf, and raises `Preempted`. Only a command line turns that into the exit code
`PREEMPTED`, which the Slurm profile reads as "requeue me": the rerun resumes bit-exactly.
"""
from __future__ import annotations

import logging
import signal

log = logging.getLogger("tvts.preemption")
PREEMPTED = 75  # EX_TEMPFAIL: checkpointed on SIGTERM/SIGUSR1, rerun to resume


class Preempted(Exception):
    """Training stopped on a signal after checkpointing at `step`; rerunning resumes from there."""

    exit_code = PREEMPTED

    def __init__(self, step: int):
        super().__init__(f"preempted at step {step}: checkpoint written, rerun to resume")
        self.step = step


class Diverged(RuntimeError):
    """Training stopped by the divergence guard (tvts.train.trainer): too many non-finite steps.
    A command line prints its one-line message and exits 1; rerunning the same config fails again."""


class TooManyBadSamples(RuntimeError):
    """Training stopped: more samples could not be read than `data.max_bad_samples` allows."""


class Preemption:
    """While active, SIGTERM / SIGUSR1 set `requested` instead of killing the process."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict = {}

    def __enter__(self) -> "Preemption":
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)

    def _handle(self, signum, frame) -> None:
        log.warning("received signal %d: checkpointing and exiting", signum)
        self.requested = True
