"""Tracking heals itself: the next `snakemake` replays what jobs spooled while the tracking server
was away, even when the server came back after every job had ended and nothing is left to run,
and marks the parent runs of dead invocations KILLED (a real `mlflow server` on 127.0.0.1)."""
from __future__ import annotations

import subprocess

from test_faults_recovery import copy_of
from test_faults_tracking import Server
from test_workflow import snakemake
from tvts import tracking
from tvts.tracking import agent, spool, store

STEPS = 800


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_spool_left_after_the_jobs_ended_is_replayed_by_the_next_snakemake(smoke_dag_done, tmp_path,
                                                                              monkeypatch):
    """Finding: with the server back only after `pretrain` and `select_ckpt` had ended, the store
    kept `pretrain` RUNNING with 85 of 800 metrics, and the next `snakemake` replayed nothing
    (with nothing to be done, Snakemake skips `onstart`). Parent runs of SIGKILLed invocations
    stayed RUNNING."""
    work = copy_of(smoke_dag_done[0], tmp_path, monkeypatch)
    server = Server(tmp_path / "server")
    server.root.mkdir()
    server.start()
    try:
        for key, value in {"MLFLOW_TRACKING_URI": server.uri, "TVTS_MLFLOW_EXPERIMENT": "tvts",
                           spool.SPOOL_ENV: str(work / "logs/tracking-spool"), agent.AGENT_ENV: "off"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("TVTS_PARENT_RUN_ID", raising=False)
        monkeypatch.chdir(work)
        monkeypatch.setattr(spool, "LINK", spool.Link())
        dead_parent = tracking.start_parent_run("smoke", {}, "snakemake (SIGKILLed)", owner=dead_pid())
        server.kill()
        with tracking.stage_run("pretrain", "smoke", {"pretrain": {"steps": STEPS}}) as run:  # the job, server away
            for step in range(STEPS):
                run.log_metrics({"train/loss": 1000.0 - step}, step=step)
        assert tracking.pending_files(), "the job's writes wait in the spool"
        server.start()  # back only after the job ended
        proc = snakemake(work)  # nothing to be done: the workflow is read, no job runs
        assert "Nothing to be done" in proc.stdout + proc.stderr
        assert not tracking.pending_files()
        mlc = store.client()
        real = spool.resolve_id(run.run_id)  # a run created while the server was away gets its id at replay
        assert len(mlc.get_metric_history(real, "train/loss")) == STEPS
        assert mlc.get_run(real).info.status == "FINISHED"
        assert mlc.get_run(dead_parent).info.status == "KILLED"
    finally:
        if server.proc.poll() is None:
            server.kill()
