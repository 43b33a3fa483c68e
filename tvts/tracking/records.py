"""Reading the store back (compare, report): stage runs as `RunRecord`s, the run that counts, curves.

Read-only: none of these create a store, an experiment or a run, so pointing them at a
wrong URI never leaves a stray mlflow.db.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tvts.tracking.store import client, experiment_name, safe_key, tracking_uri

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
    return client(uri)


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
            if _is_kept(run, rec, wanted, statuses):
                records.append(rec)
        token = page.token
        if not token:
            break
    return sorted(records, key=lambda r: (r.start_time, r.end_time or 0, r.run_id), reverse=True)


def _is_kept(run, rec: RunRecord, wanted: set[str] | None, statuses: tuple[str, ...] | None) -> bool:
    """A stage run (not a workflow parent run) of a wanted experiment, in a wanted state."""
    if run.data.tags.get("tvts.kind") == "workflow" or not rec.stage:
        return False
    return (wanted is None or rec.exp in wanted) and (statuses is None or rec.status in statuses)


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
