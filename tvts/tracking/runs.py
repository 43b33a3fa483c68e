"""Writing runs: the workflow's parent run, one child run per stage job, params, metrics, models.

Every run carries the tags a user filters on (`base_tags`): experiment name, rule, git
commit and the `data.dvc` md5, plus the host and pid that own it (`owner_tags`, which
`mark_stale_runs_killed` reads). A run that raises is marked FAILED (KILLED on a signal), so
a crashed job is visible in MLflow. Every write goes through `spool.RunRef.send`: while the
store is away it lands in the run's spool file instead, and the job carries on.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

from tvts.io import dumps
from tvts.tracking import agent, spool
from tvts.tracking.spool import RunRef, replay_spool, resolve_id
from tvts.tracking.store import (COMMIT_ENV, PAPER_CONFIG_ENV, PARENT_ENV, experiment_id, experiment_name, is_transient,
                                 safe_key, tracking_off)
from tvts.tracking.system import start_system_metrics, system_metrics_enabled
from tvts.train.preemption import Preempted

PARAMS_PER_CALL = 100  # MLflow's log_batch limit for params
DEFER_S = 10.0  # a job still running after this talks to the store itself (live curves)
METRICS_PER_CALL = 1000


def git_commit(cwd: str | Path = ".") -> str:
    """The commit checked out at `cwd`, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def data_md5(dvc_file: str | Path = "data.dvc") -> str:
    """The md5 DVC recorded for the tracked data (`outs[0].md5`), or 'unknown'."""
    try:
        with open(dvc_file, encoding="utf-8") as f:
            return str(yaml.safe_load(f)["outs"][0]["md5"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return "unknown"


def base_tags(exp: str, rule: str | None = None) -> dict[str, str]:
    """The tags every run carries: what a user filters and compares runs on."""
    commit = os.environ.get(COMMIT_ENV) or git_commit()
    tags = {"tvts.exp": exp, "mlflow.source.git.commit": commit,
            "tvts.data_md5": data_md5(os.environ.get("TVTS_DATA_DVC", "data.dvc")),
            "tvts.paper_config": os.environ.get(PAPER_CONFIG_ENV, "false")}
    if rule:
        tags["tvts.rule"] = rule
    return tags




def process_start(pid: int) -> str:
    """When process `pid` started (seconds since boot, from /proc), or "" where that is unknown;
    with the pid it names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]  # field 22, starttime in clock ticks
    except (OSError, IndexError):
        return ""


def owner_tags(pid: int | None = None) -> dict[str, str]:
    """Who writes the run: host, pid (default this process; and its start) and the Slurm job, if any."""
    pid = os.getpid() if pid is None else pid
    tags = {"tvts.host": socket.gethostname(), "tvts.pid": str(pid), "tvts.pid_start": process_start(pid)}
    if os.environ.get("SLURM_JOB_ID"):
        tags["tvts.slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return tags


def _now_ms() -> int:
    return int(time.time() * 1000)


def open_run(tags: dict[str, str], params: dict | None = None, experiment: str | None = None,
             defer: bool = False) -> RunRef:
    """Create a run with `tags` and its params (flattened): one create and one batch per 100 params.
    With `defer`, the writes wait in the spool for `DEFER_S` (see `tvts.tracking.agent`)."""
    ref = RunRef(None)
    if defer:
        ref.defer(DEFER_S)
    ref.send({"op": "create", "experiment": experiment or experiment_name(), "tags": tags, "start": _now_ms()})
    send_params(ref, params or {})
    return ref


def send_params(ref: RunRef, params: dict) -> None:
    """A nested config as flat `a.b` params, in batches (MLflow caps a batch at 100)."""
    plain = json.loads(dumps(params))  # dataclasses and paths -> plain values
    items = {safe_key(k): str(v)[:6000] for k, v in sorted(flatten(plain).items())}
    keys = list(items)
    for i in range(0, len(keys), PARAMS_PER_CALL):
        ref.send({"op": "batch", "params": {k: items[k] for k in keys[i:i + PARAMS_PER_CALL]}})


def init_store(name: str | None = None) -> str:
    """Create the store (running its schema migration once) and the experiment.

    Called from the Snakefile's `onstart`, before any job. A tracking server that does not
    answer is not an error here: the runs are spooled (see `tvts.tracking.spool`).

    Returns:
        The experiment id ("" while the server is unreachable).
    """
    try:
        return experiment_id(name)
    except Exception as err:  # noqa: BLE001 - only a store that is away is forgiven
        if not is_transient(err):
            raise
        spool.LINK.failed(err, 0.0)
        return ""


def start_parent_run(exp: str, params: dict | None = None, command: str = "", owner: int | None = None) -> str:
    """Open the parent run of one workflow invocation; returns its id (left open).

    While the store is away the id is a local one: the jobs tag their runs with it, and the
    replay maps it to the store's id.

    Args:
        owner: the pid of the invocation (default this process): once it is gone, the run is
            marked KILLED unless it ended (tvts.tracking.stale).
    """
    tags = base_tags(exp) | {"mlflow.runName": f"{exp}-workflow", "tvts.kind": "workflow",
                             "tvts.command": command[:5000]} | owner_tags(owner)
    replay_spool()
    ref = open_run(tags, params)
    ref.release()
    return ref.id


def _ref_for(run_id: str) -> RunRef:
    """A handle on an existing run: the store's id, or the spool file of a run still only local."""
    real = resolve_id(run_id)
    return (RunRef.adopt(real) if real.startswith("local-") else None) or RunRef(real)


@contextlib.contextmanager
def _existing(run_id: str) -> Iterator[RunRef]:
    """`_ref_for(run_id)`, or this process's own open handle on that run (its spool file is ours)."""
    mine = spool.OPEN.get(run_id)
    if mine is not None:
        yield mine
        return
    ref = _ref_for(run_id)
    try:
        yield ref
    finally:
        ref.release()


def end_run(run_id: str, ok: bool = True) -> None:
    """Mark a run FINISHED, or FAILED when not `ok`."""
    with _existing(run_id) as ref:
        ref.send({"op": "end", "status": "FINISHED" if ok else "FAILED", "end": _now_ms()})


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars stay as values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def log_params(run_id: str, params: dict) -> None:
    """Log a nested config as flat `a.b` params, in batches (MLflow caps a batch at 100)."""
    with _existing(run_id) as ref:
        send_params(ref, params)


class StageRun:
    """Handle on a job's child run. `run_id` is the store's id (a local one while the store
    has not yet seen the run)."""

    def __init__(self, ref: RunRef | None) -> None:
        self.ref = ref

    @property
    def run_id(self) -> str:
        if self.ref is None:
            return ""
        self.ref.go_live()  # whoever needs the id (a checkpoint, the registry) needs the store's
        return self.ref.id

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = _now_ms()
        batch = [[safe_key(k), float(v), now, step] for k, v in sorted(flatten(metrics).items())
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for i in range(0, len(batch), METRICS_PER_CALL):
            self.ref.send({"op": "batch", "metrics": batch[i:i + METRICS_PER_CALL]})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.ref.send({"op": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path})


class _OffRun(StageRun):
    """The handle when tracking is off: logging does nothing."""

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass


@contextlib.contextmanager
def stage_run(stage: str, exp: str, params: dict, rule: str | None = None,
              run_name: str | None = None, extra_tags: dict | None = None,
              resume_run_id: str | None = None) -> Iterator[StageRun]:
    """Open one job's child run under the workflow's parent run (if any).

    The run is marked FAILED if the body raises (KILLED if it exits on a signal), so a
    crashed job is visible in MLflow. `resume_run_id` reopens an earlier run (a resumed
    training job continues its curves) when that run still exists. Spool files that
    earlier jobs left are replayed first. With `TVTS_SYSTEM_METRICS=on` the run also gets
    MLflow's system metrics.
    """
    if tracking_off():
        yield _OffRun(None)
        return
    defer = not resume_run_id and _may_defer()
    if not defer:
        replay_spool()  # deferred jobs leave that to the agent
    handle = _reopen(resume_run_id) if resume_run_id else None
    if handle is None:
        tags = base_tags(exp, rule or stage) | {"tvts.stage": stage, "mlflow.runName": run_name or f"{exp}/{stage}"}
        if os.environ.get(PARENT_ENV):
            tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
        tags |= owner_tags() | (extra_tags or {})
        handle = StageRun(open_run(tags, params, defer=defer))
    monitor = start_system_metrics(handle, resumed=resume_run_id is not None)
    status = "FAILED"
    try:
        yield handle
        status = "FINISHED"
    except (SystemExit, KeyboardInterrupt, Preempted) as err:  # stopped on request: KILLED, not FAILED
        status = "FINISHED" if isinstance(err, SystemExit) and not err.code else "KILLED"
        raise
    finally:
        if monitor is not None:
            monitor.finish()
        handle.ref.send({"op": "end", "status": status, "end": _now_ms()})
        _hand_off(handle.ref)
        handle.ref.release()


def _may_defer() -> bool:
    """A job that has not imported mlflow spools its run and hands it to the agent at the end."""
    return agent.agent_enabled() and "mlflow" not in sys.modules and not system_metrics_enabled()


def _hand_off(ref: RunRef) -> None:
    """Have the agent replay the job's spool file (or replay it here): the run is in the store
    when the job ends, and `ref.run_id` is the store's id."""
    with ref.lock:
        if ref.deferred_until is None:  # not deferred, or gone live meanwhile
            return
        ref.deferred_until = None
        if ref.timer is not None:
            ref.timer.cancel()
    ref.release()
    reply = agent.ask({"path": str(ref.path), "local_id": ref.local_id})
    if not reply or not reply.get("ok"):
        replay_spool()
    resolved = resolve_id(ref.local_id)
    if not resolved.startswith(spool.LOCAL_PREFIX):
        ref.run_id = resolved


def _reopen(run_id: str) -> StageRun | None:
    """The earlier run, RUNNING again and owned by this process; None when the store no longer has it."""
    ref = _ref_for(run_id)
    try:
        ref.send({"op": "status", "status": "RUNNING"})
    except Exception:  # noqa: BLE001 - the run is gone (another store, deleted): start a new one
        ref.release()
        return None
    ref.send({"op": "batch", "tags": owner_tags()})
    return StageRun(ref)


def register_model(run_id: str, path: str | Path, name: str, alias: str = "best",
                   tags: dict[str, str] | None = None) -> str:
    """Log `path` under the run's `model/` artifacts and register that folder as a new version
    of `name` with `alias` pointing at it. Returns the version number ("" when tracking is off,
    and while the store is away: the registration is then spooled and done at replay)."""
    if tracking_off() or not run_id:
        return ""
    op = {"op": "register", "path": str(Path(path).resolve()), "name": name, "alias": alias, "tags": tags or {}}
    with _existing(run_id) as ref:
        ref.go_live()
        if ref.path is None and ref.run_id and spool.LINK.usable():
            done, version = spool.LINK.timed(lambda: spool.register(spool.client(), ref.run_id, op))
            if done:
                return version
        ref.send(op)
    return ""
