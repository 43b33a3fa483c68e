"""The only module that talks to MLflow.

One parent run per `snakemake` invocation (opened in the Snakefile's `onstart`, its id
handed to jobs through the environment) and one child run per job. Every run carries
the tags a user filters on: experiment name, rule, git commit and the `data.dvc` md5.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import yaml

from tvts.io import dumps
from tvts.train.preemption import Preempted

DEFAULT_URI = "sqlite:///mlflow.db"
PARENT_ENV = "TVTS_PARENT_RUN_ID"
EXPERIMENT_ENV = "TVTS_MLFLOW_EXPERIMENT"
PAPER_CONFIG_ENV = "TVTS_PAPER_CONFIG"  # "true" when the workflow runs the paper config (set in onstart)
COMMIT_ENV = "TVTS_GIT_COMMIT"  # the workflow's commit, set in onstart (jobs may run elsewhere)
DEFAULT_EXPERIMENT = "tvts"
T = TypeVar("T")


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the SQLite store at the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def experiment_name() -> str:
    return os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT


def _mlflow():
    import mlflow  # imported lazily: it costs seconds and most CLI paths never need it

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def _retry(fn: Callable[[], T], attempts: int = 8) -> T:
    """SQLite allows one writer at a time; parallel jobs retry briefly instead of failing."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as err:  # sqlalchemy's OperationalError surfaces as MlflowException
            if "locked" not in str(err).lower() or i == attempts - 1:
                raise
            time.sleep(0.2 * 2**i)
    raise AssertionError("unreachable")


def artifact_root() -> Path:
    """Artifacts sit beside a SQLite store (`mlartifacts/`), else under the working directory."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve()
    return Path("mlartifacts").resolve()


def git_commit(cwd: str | Path = ".") -> str:
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
    commit = os.environ.get(COMMIT_ENV) or git_commit()
    tags = {"tvts.exp": exp, "mlflow.source.git.commit": commit,
            "tvts.data_md5": data_md5(os.environ.get("TVTS_DATA_DVC", "data.dvc")),
            "tvts.paper_config": os.environ.get(PAPER_CONFIG_ENV, "false")}
    if rule:
        tags["tvts.rule"] = rule
    return tags


def init_store(name: str | None = None) -> str:
    """Create the store (running its schema migration once) and the experiment.

    Called from the Snakefile's `onstart`, before any job: parallel jobs that first
    touch a new SQLite store race on the migration.

    Returns:
        The experiment id.
    """
    mlflow = _mlflow()
    name = name or experiment_name()
    artifacts = artifact_root().as_uri()
    exp = mlflow.get_experiment_by_name(name)
    return exp.experiment_id if exp else mlflow.create_experiment(name, artifact_location=artifacts)


def start_parent_run(exp: str, params: dict | None = None, command: str = "") -> str:
    """Open the parent run of one workflow invocation; returns its id (left open)."""
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    tags = base_tags(exp) | {"mlflow.runName": f"{exp}-workflow", "tvts.kind": "workflow",
                             "tvts.command": command[:5000]}
    run = _retry(lambda: client.create_run(init_store(), tags=tags))
    if params:
        log_params(run.info.run_id, params)
    return run.info.run_id


def end_run(run_id: str, ok: bool = True) -> None:
    client = _mlflow().MlflowClient()
    _retry(lambda: client.set_terminated(run_id, "FINISHED" if ok else "FAILED"))


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


def safe_key(key: str) -> str:
    """MLflow keys allow letters, digits, `_-. /` only (config keys can be free text)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", key)[:250]


def log_params(run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    client = _mlflow().MlflowClient()
    plain = json.loads(dumps(params))  # dataclasses and paths -> plain values
    items = [Param(safe_key(k), str(v)[:6000]) for k, v in sorted(flatten(plain).items())]
    for i in range(0, len(items), 100):
        _retry(lambda: client.log_batch(run_id, params=items[i:i + 100]))


@dataclass
class StageRun:
    """Handle on a job's child run."""

    run_id: str

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        client = _mlflow().MlflowClient()
        now = int(time.time() * 1000)
        batch = [Metric(safe_key(k), float(v), now, step) for k, v in sorted(flatten(metrics).items())
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for i in range(0, len(batch), 500):
            _retry(lambda: client.log_batch(self.run_id, metrics=batch[i:i + 500]))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        client = _mlflow().MlflowClient()
        _retry(lambda: client.log_artifact(self.run_id, str(path), artifact_path))



class _OffRun(StageRun):
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
    if os.environ.get("TVTS_TRACKING") == "off":  # benchmarks time the stage, not the store
        yield _OffRun("")
        return
    client = _mlflow().MlflowClient()
    handle = _reopen(client, resume_run_id) if resume_run_id else None
    if handle is None:
        tags = base_tags(exp, rule or stage) | {"tvts.stage": stage, "mlflow.runName": run_name or f"{exp}/{stage}"}
        if os.environ.get(PARENT_ENV):
            tags["mlflow.parentRunId"] = os.environ[PARENT_ENV]
        tags |= extra_tags or {}
        run = _retry(lambda: client.create_run(init_store(), tags=tags))
        handle = StageRun(run.info.run_id)
        log_params(handle.run_id, params)
    try:
        yield handle
    except (SystemExit, KeyboardInterrupt, Preempted) as err:  # stopped on request: KILLED, not FAILED
        ok = isinstance(err, SystemExit) and not err.code
        _retry(lambda: client.set_terminated(handle.run_id, "FINISHED" if ok else "KILLED"))
        raise
    except BaseException:
        end_run(handle.run_id, ok=False)
        raise
    end_run(handle.run_id, ok=True)


def _reopen(client, run_id: str) -> StageRun | None:
    try:
        _retry(lambda: client.update_run(run_id, status="RUNNING"))
    except Exception:  # noqa: BLE001 - the run is gone (another store, deleted): start a new one
        return None
    return StageRun(run_id)


def register_model(run_id: str, path: str | Path, name: str, alias: str = "best",
                   tags: dict[str, str] | None = None) -> str:
    """Log `path` under the run's `model/` artifacts and register that folder as a new version
    of `name` with `alias` pointing at it. Returns the version number ("" when tracking is off)."""
    if os.environ.get("TVTS_TRACKING") == "off" or not run_id:
        return ""
    from mlflow.exceptions import MlflowException

    client = _mlflow().MlflowClient()
    _retry(lambda: client.log_artifact(run_id, str(path), "model"))
    source = f"{client.get_run(run_id).info.artifact_uri}/model"  # a folder: `models:/name@alias` downloads it
    try:
        _retry(lambda: client.create_registered_model(name))
    except MlflowException as err:
        if "already exists" not in str(err).lower():
            raise
    version = _retry(lambda: client.create_model_version(name, source, run_id=run_id, tags=tags or {}))
    _retry(lambda: client.set_registered_model_alias(name, alias, version.version))
    return str(version.version)


# ---------------------------------------------------------------------------------------
# Reading the store back (compare, report). Read-only: none of these create a store,
# an experiment or a run, so pointing them at a wrong URI never leaves a stray mlflow.db.

_TERMINAL_OK = "FINISHED"


@dataclass(frozen=True)
class RunRecord:
    """One stage run as the readers see it: its identifying tags, latest metrics and params.

    `part` tells apart runs that share (exp, stage, task, dataset) by design, e.g. the
    `align_asr` jobs of one workflow (`<exp>/align_asr/part-3`), so they are not taken
    for reruns of one another.
    """

    run_id: str
    exp: str
    stage: str
    task: str
    dataset: str
    part: str
    paper_config: bool
    status: str
    start_time: int  # ms since the epoch, as MLflow stores it
    end_time: int | None
    name: str
    rule: str
    commit: str
    metrics: dict[str, float]
    params: dict[str, str]

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """What a rerun shares with the run it replaces."""
        return (self.exp, self.stage, self.task, self.dataset, self.part)


def _reader(uri: str | None = None):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri or tracking_uri())


def store_exists(uri: str | None = None) -> bool:
    """False for a SQLite store whose file is absent (other stores are assumed to exist)."""
    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///")
        return path == ":memory:" or Path(path).exists()
    return True


def _part_of(tags: dict[str, str]) -> str:
    if tags.get("tvts.part"):
        return tags["tvts.part"]
    m = re.search(r"/(part-\d+)$", tags.get("mlflow.runName", ""))
    return m.group(1) if m else ""


def _record(run) -> RunRecord:
    tags = run.data.tags
    return RunRecord(
        run_id=run.info.run_id, exp=tags.get("tvts.exp", ""), stage=tags.get("tvts.stage", ""),
        task=tags.get("tvts.task", ""), dataset=tags.get("tvts.dataset", ""), part=_part_of(tags),
        paper_config=tags.get("tvts.paper_config", "").strip().lower() == "true",
        status=run.info.status, start_time=int(run.info.start_time or 0), end_time=run.info.end_time,
        name=tags.get("mlflow.runName", ""), rule=tags.get("tvts.rule", ""),
        commit=tags.get("mlflow.source.git.commit", ""),
        metrics=dict(run.data.metrics), params=dict(run.data.params))


def _exp_filter(exps: list[str] | None) -> str:
    """Push a single experiment name into the query; several (or odd quoting) filter in Python."""
    if not exps or len(exps) != 1:
        return ""
    name = exps[0]
    for quote in ("'", '"'):
        if quote not in name:
            return f"tags.`tvts.exp` = {quote}{name}{quote}"
    return ""


def search_stage_runs(exps: list[str] | None = None, statuses: tuple[str, ...] | None = None,
                      experiment: str | None = None, uri: str | None = None) -> list[RunRecord]:
    """Every stage run of the MLflow experiment, newest first (workflow parent runs left out).

    Args:
        exps: keep runs whose `tvts.exp` is one of these (None: every experiment name).
        statuses: keep runs in one of these states, e.g. ("FINISHED",) (None: all).
        experiment: MLflow experiment name (default: `experiment_name()`).
        uri: tracking URI (default: `tracking_uri()`).
    Returns:
        The runs as `RunRecord`s; [] for an absent store or experiment.
    """
    if not store_exists(uri):
        return []
    client = _reader(uri)
    mlexp = client.get_experiment_by_name(experiment or experiment_name())
    if mlexp is None:
        return []
    wanted = set(exps) if exps else None
    records, token = [], None
    while True:
        page = client.search_runs([mlexp.experiment_id], _exp_filter(exps), max_results=1000,
                                  order_by=["attributes.start_time DESC"], page_token=token)
        for run in page:
            rec = _record(run)
            if (run.data.tags.get("tvts.kind") == "workflow" or not rec.stage
                    or (wanted is not None and rec.exp not in wanted)
                    or (statuses is not None and rec.status not in statuses)):
                continue
            records.append(rec)
        token = page.token
        if not token:
            break
    return sorted(records, key=lambda r: (r.start_time, r.end_time or 0, r.run_id), reverse=True)


def pick_latest(records: list[RunRecord]) -> list[RunRecord]:
    """The newest FINISHED run per `RunRecord.key`; failed, killed and running reruns never win.

    Returns:
        One record per key, in the order of `records` (so newest first for `search_stage_runs`).
    """
    best: dict[tuple, RunRecord] = {}
    for rec in records:
        if rec.status != _TERMINAL_OK:
            continue
        held = best.get(rec.key)
        if held is None or (rec.start_time, rec.end_time or 0) > (held.start_time, held.end_time or 0):
            best[rec.key] = rec
    return [r for r in records if best.get(r.key) is r]


def latest_runs(exps: list[str] | None = None, experiment: str | None = None,
                uri: str | None = None) -> list[RunRecord]:
    """The run that counts for each (exp, stage, task, dataset): the latest FINISHED one.

    Args:
        exps: experiment names (`tvts.exp`) to keep; None keeps all.
        experiment: MLflow experiment name (default: `experiment_name()`).
        uri: tracking URI (default: `tracking_uri()`).
    """
    return pick_latest(search_stage_runs(exps, None, experiment, uri))


def list_exps(experiment: str | None = None, uri: str | None = None) -> list[str]:
    """The `tvts.exp` names that have at least one stage run, sorted."""
    return sorted({r.exp for r in search_stage_runs(None, None, experiment, uri) if r.exp})


def metric_history(run_id: str, key: str, uri: str | None = None) -> list[tuple[int, float]]:
    """A metric's curve as (step, value), sorted by step.

    A resumed run logs some steps again; the value logged last for a step wins.
    """
    from mlflow.exceptions import MlflowException

    if not store_exists(uri):
        return []
    try:
        history = _reader(uri).get_metric_history(run_id, safe_key(key))
    except MlflowException:
        return []
    per_step: dict[int, tuple[int, float]] = {}
    for m in history:
        if m.step not in per_step or m.timestamp >= per_step[m.step][0]:
            per_step[m.step] = (m.timestamp, m.value)
    return [(step, per_step[step][1]) for step in sorted(per_step)]
