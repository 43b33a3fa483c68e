"""The only package that talks to MLflow.

One parent run per `snakemake` invocation (opened in the Snakefile's `onstart`, its id
handed to jobs through the environment) and one child run per job. Every run carries
the tags a user filters on: experiment name, rule, git commit and the `data.dvc` md5.

    store     where the store is (URI, experiment, artifacts), how to reach it, bounded HTTP retries
    spool     writes that wait on disk while the store is away, replayed in order when it answers
    runs      writing: the parent run, stage runs, params, metrics, the model registry
    stale     RUNNING runs whose job is dead, marked KILLED
    system    MLflow's system metrics (CPU, memory, GPU) behind `TVTS_SYSTEM_METRICS`
    records   reading back: stage runs as `RunRecord`s, the latest finished ones, curves
"""
from __future__ import annotations

from tvts.tracking.records import (RunRecord, latest_runs, list_exps, metric_history, pick_latest,
                                   search_stage_runs, store_exists)
from tvts.tracking.runs import (StageRun, base_tags, data_md5, end_run, flatten, git_commit, init_store, log_params,
                                owner_tags, register_model, stage_run, start_parent_run)
from tvts.tracking.spool import pending_files, replay_spool, spool_dir
from tvts.tracking.stale import mark_stale_runs_killed
from tvts.tracking.store import (COMMIT_ENV, DEFAULT_EXPERIMENT, DEFAULT_URI, EXPERIMENT_ENV, PAPER_CONFIG_ENV,
                                 PARENT_ENV, artifact_root, experiment_name, safe_key, tracking_off,
                                 tracking_uri)
from tvts.tracking.system import system_metrics_enabled, system_metrics_env

__all__ = ["COMMIT_ENV", "DEFAULT_EXPERIMENT", "DEFAULT_URI", "EXPERIMENT_ENV", "PAPER_CONFIG_ENV", "PARENT_ENV",
           "RunRecord", "StageRun", "artifact_root", "base_tags", "data_md5", "end_run", "experiment_name",
           "flatten", "git_commit", "init_store", "latest_runs", "list_exps", "log_params", "mark_stale_runs_killed",
           "metric_history", "owner_tags", "pending_files", "pick_latest", "register_model", "replay_spool", "safe_key",
           "search_stage_runs", "spool_dir", "stage_run", "start_parent_run", "store_exists",
           "system_metrics_enabled", "system_metrics_env", "tracking_off", "tracking_uri"]
