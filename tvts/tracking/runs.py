"""Writing runs: the workflow's parent run, one child run per stage job, params, metrics, models.

Every run carries the tags a user filters on (`base_tags`): experiment name, rule, git
commit and the `data.dvc` md5. A run that raises is marked FAILED (KILLED on a signal), so
a crashed job is visible in MLflow.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from tvts.io import dumps
from tvts.tracking.store import (COMMIT_ENV, PAPER_CONFIG_ENV, PARENT_ENV, connect_mlflow, init_store,
                                 retry_if_locked, safe_key, tracking_off)
from tvts.train.preemption import Preempted


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


def start_parent_run(exp: str, params: dict | None = None, command: str = "") -> str:
    """Open the parent run of one workflow invocation; returns its id (left open)."""
    mlflow = connect_mlflow()
    client = mlflow.MlflowClient()
    tags = base_tags(exp) | {"mlflow.runName": f"{exp}-workflow", "tvts.kind": "workflow",
                             "tvts.command": command[:5000]}
    run = retry_if_locked(lambda: client.create_run(init_store(), tags=tags))
    if params:
        log_params(run.info.run_id, params)
    return run.info.run_id


def end_run(run_id: str, ok: bool = True) -> None:
    """Mark a run FINISHED, or FAILED when not `ok`."""
    client = connect_mlflow().MlflowClient()
    retry_if_locked(lambda: client.set_terminated(run_id, "FINISHED" if ok else "FAILED"))


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
    from mlflow.entities import Param

    client = connect_mlflow().MlflowClient()
    plain = json.loads(dumps(params))  # dataclasses and paths -> plain values
    items = [Param(safe_key(k), str(v)[:6000]) for k, v in sorted(flatten(plain).items())]
    for i in range(0, len(items), 100):
        retry_if_locked(lambda: client.log_batch(run_id, params=items[i:i + 100]))


@dataclass
class StageRun:
    """Handle on a job's child run."""

    run_id: str

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        client = connect_mlflow().MlflowClient()
        now = int(time.time() * 1000)
        batch = [Metric(safe_key(k), float(v), now, step) for k, v in sorted(flatten(metrics).items())
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for i in range(0, len(batch), 500):
            retry_if_locked(lambda: client.log_batch(self.run_id, metrics=batch[i:i + 500]))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        client = connect_mlflow().MlflowClient()
        retry_if_locked(lambda: client.log_artifact(self.run_id, str(path), artifact_path))


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
    training job continues its curves) when that run still exists.
    """
    if tracking_off():
        yield _OffRun("")
        return
    client = connect_mlflow().MlflowClient()
    handle = _reopen(client, resume_run_id) if resume_run_id else None
    if handle is None:
        tags = base_tags(exp, rule or stage) | {"tvts.stage": stage, "mlflow.runName": run_name or f"{exp}/{stage}"}
        if os.environ.get(PARENT_ENV):
            tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
        tags |= extra_tags or {}
        run = retry_if_locked(lambda: client.create_run(init_store(), tags=tags))
        handle = StageRun(run.info.run_id)
        log_params(handle.run_id, params)
    try:
        yield handle
    except (SystemExit, KeyboardInterrupt, Preempted) as err:  # stopped on request: KILLED, not FAILED
        ok = isinstance(err, SystemExit) and not err.code
        retry_if_locked(lambda: client.set_terminated(handle.run_id, "FINISHED" if ok else "KILLED"))
        raise
    except BaseException:
        end_run(handle.run_id, ok=False)
        raise
    end_run(handle.run_id, ok=True)


def _reopen(client, run_id: str) -> StageRun | None:
    try:
        retry_if_locked(lambda: client.update_run(run_id, status="RUNNING"))
    except Exception:  # noqa: BLE001 - the run is gone (another store, deleted): start a new one
        return None
    return StageRun(run_id)


def register_model(run_id: str, path: str | Path, name: str, alias: str = "best",
                   tags: dict[str, str] | None = None) -> str:
    """Log `path` under the run's `model/` artifacts and register that folder as a new version
    of `name` with `alias` pointing at it. Returns the version number ("" when tracking is off)."""
    if tracking_off() or not run_id:
        return ""
    from mlflow.exceptions import MlflowException

    client = connect_mlflow().MlflowClient()
    retry_if_locked(lambda: client.log_artifact(run_id, str(path), "model"))
    source = f"{client.get_run(run_id).info.artifact_uri}/model"  # a folder: `models:/name@alias` downloads it
    try:
        retry_if_locked(lambda: client.create_registered_model(name))
    except MlflowException as err:
        if "already exists" not in str(err).lower():
            raise
    version = retry_if_locked(lambda: client.create_model_version(name, source, run_id=run_id, tags=tags or {}))
    retry_if_locked(lambda: client.set_registered_model_alias(name, alias, version.version))
    return str(version.version)
