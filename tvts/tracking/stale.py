"""RUNNING stage runs whose job is dead, marked KILLED (call it before a workflow starts jobs).

A job killed by SIGKILL, the OOM killer or a lost node never closes its run, and a RUNNING
run that nobody writes any more misleads every reader. Each stage run names its owner
(`runs.owner_tags`: `tvts.host`, `tvts.pid`, `tvts.pid_start`, `tvts.slurm_job_id`); a run
counts as dead when
  - it has a Slurm job id and `squeue` no longer knows that job (any host), else
  - it belongs to this host and its pid is gone, or now names a later process, else
  - it started more than `max_age_h` ago: a run of another host, or one from before the
    owner tags, whose process cannot be checked from here.
A workflow parent run is owned by its Snakemake process (it opens the run in `onstart`), so
the parent runs of SIGKILLed invocations are found the same way; parent runs from before the
owner tags are left alone.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time

from tvts.tracking.records import store_exists
from tvts.tracking.runs import process_start
from tvts.tracking.spool import replay_spool
from tvts.tracking.store import client, experiment_name, retry_if_locked

log = logging.getLogger("tvts.tracking")
DEFAULT_MAX_AGE_H = 72.0


def mark_stale_runs_killed(experiment: str | None = None, max_age_h: float = DEFAULT_MAX_AGE_H) -> list[str]:
    """Mark the RUNNING stage runs of `experiment` (default `experiment_name()`) whose job is
    dead as KILLED, after replaying any spool (a spooled end status wins over KILLED).

    Args:
        experiment: the MLflow experiment name.
        max_age_h: a run whose process cannot be checked from here counts as dead after this.
    Returns:
        The ids of the runs marked KILLED.
    """
    if not store_exists():
        return []
    replay_spool()
    mlc = client()
    exp = mlc.get_experiment_by_name(experiment or experiment_name())
    if exp is None:
        return []
    killed = []
    for run in _running(mlc, exp.experiment_id):
        tags = run.data.tags
        parent = tags.get("tvts.kind") == "workflow"
        if (parent and not tags.get("tvts.pid")) or not (parent or tags.get("tvts.stage")):
            continue
        if _is_dead(tags, run.info.start_time or 0, max_age_h):
            retry_if_locked(lambda: mlc.set_terminated(run.info.run_id, "KILLED"))
            killed.append(run.info.run_id)
    if killed:
        log.warning("marked %d RUNNING runs of dead jobs or invocations KILLED: %s", len(killed), ", ".join(killed))
    return killed



def _running(mlc, experiment_id: str) -> list:
    runs, token = [], None
    while True:
        page = mlc.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _is_dead(tags: dict[str, str], start_ms: int, max_age_h: float) -> bool:
    slurm = slurm_job_alive(tags["tvts.slurm_job_id"]) if tags.get("tvts.slurm_job_id") else None
    if slurm is not None:
        return not slurm
    if tags.get("tvts.host") == socket.gethostname() and tags.get("tvts.pid", "").isdigit():
        return not pid_alive(int(tags["tvts.pid"]), tags.get("tvts.pid_start", ""))
    return time.time() - start_ms / 1000 > max_age_h * 3600


def pid_alive(pid: int, started: str = "") -> bool:
    """Process `pid` exists (and, when `started` is known, is the one that started then)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    return not started or process_start(pid) in ("", started)


def slurm_job_alive(job_id: str) -> bool | None:
    """Whether Slurm still knows job `job_id` (pending, running, completing); None when
    `squeue` is absent or does not answer."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode == 0:
        return bool(out.stdout.strip())
    return False if "invalid job id" in out.stderr.lower() else None
