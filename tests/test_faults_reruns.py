"""A rerun that dies leaves nothing stale: `snakemake -R <stage>` killed at any moment, then a
plain `snakemake` plans that stage and everything below it again (on the smoke DAG)."""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from test_faults_recovery import copy_of, start_snakemake, wait_gone, _cmdline
from test_workflow import EVAL, planned_jobs, snakemake
from conftest import SMOKE

# The smoke experiment's pretraining and everything that reads it (not the baseline `random`).
BELOW_PRETRAIN = {"pretrain": 1, "select_ckpt": 1, "report": 1, "all": 1} | EVAL


def stage_jobs(proc, stage: str) -> list[psutil.Process]:
    return [p for p in psutil.Process(proc.pid).children(recursive=True)
            if "tvts" in " ".join(_cmdline(p)) and stage in _cmdline(p)]


def kill_stage_jobs_until_exit(proc, stage: str, timeout: float = 300) -> None:
    """SIGKILL the first `tvts <stage>` process as soon as it exists (Snakemake has deleted the
    job's old outputs by then: the state a kill at any later moment leaves too), then every other
    job of that stage until Snakemake exits, so no forced job can finish: which of two parallel
    jobs would have finished first is timing, not behaviour."""
    deadline = time.monotonic() + timeout
    killed = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            assert killed, f"snakemake ended before {stage} started:\n{proc.stdout.read()[-4000:]}"
            return
        found = stage_jobs(proc, stage)
        for p in found:
            p.send_signal(signal.SIGKILL)
        wait_gone(found, 20)
        killed += len(found)
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"snakemake still running {timeout} s after {stage} was started" if killed
                         else f"no {stage} job within {timeout} s")


@pytest.mark.parametrize("rule,stage,planned", [
    ("pretrain", "pretrain", BELOW_PRETRAIN),
    # both experiments' fine-tuning (smoke and its baseline `random`): `-R` forced both
    ("eval_finetune", "eval-finetune", {"eval_finetune": 2, "report": 1, "all": 1}),
])
def test_a_killed_forced_rerun_is_planned_again_with_everything_below(smoke_dag_done, tmp_path, monkeypatch,
                                                                      rule, stage, planned):
    """Finding: after a killed `snakemake -R pretrain`, the rerun said "Nothing to be done" (with
    or without --rerun-incomplete), and the old select/best.pt stood although its candidate
    checkpoints were gone and pretraining never finished."""
    work = copy_of(smoke_dag_done[0], tmp_path, monkeypatch)
    proc = start_snakemake(work, SMOKE, os.environ.copy(), "-R", rule)
    kill_stage_jobs_until_exit(proc, stage)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out[-3000:]
    for extra in ((), ("--rerun-incomplete",)):
        dry = snakemake(work, "-n", *extra)
        assert planned_jobs(dry) == planned, dry.stdout[-3000:] + dry.stderr[-3000:]


def test_a_rerun_finished_after_the_kill_leaves_nothing_planned(smoke_dag_done, tmp_path, monkeypatch):
    """The forcing ends once the stage has rerun: no job is planned twice."""
    work = copy_of(smoke_dag_done[0], tmp_path, monkeypatch)
    (work / "results/smoke/pretrain/manifest.json").unlink()  # what a killed `-R pretrain` leaves
    assert planned_jobs(snakemake(work, "-n")) == BELOW_PRETRAIN
    snakemake(work)
    assert planned_jobs(snakemake(work, "-n")) == {}
