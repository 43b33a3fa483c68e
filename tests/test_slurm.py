"""The workflow on a real Slurm cluster: every job through sbatch (tests/slurm/start.sh starts one).

Three integration tests on the smoke config, against a local run of the same DAG:
1. `snakemake --profile tests/slurm/profile` end to end gives the same outputs as the local run;
2. pretraining as a 2-task job: two torchrun agents under srun meet at a c10d rendezvous
   (the multi-node code path, on one machine, gloo on CPU);
3. preemption: the running pretraining job gets SIGTERM from Slurm (as at its time-limit warning),
   checkpoints and fails with 75; Snakemake's retry resumes it, and the final weights equal an
   uninterrupted run's.
Skipped, with the reason shown by `pytest -ra`, when no cluster answers.
"""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, SMOKE

PROFILE = ROOT / "tests" / "slurm" / "profile"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TARGET = "results/smoke/select/selection.json"


def cluster_state() -> str:
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return "Slurm is not installed"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"sinfo failed: {err}"
    states = set(out.stdout.split())
    if out.returncode != 0 or not states & {"idle", "mix", "alloc"}:
        return f"no Slurm node is up (sinfo: {out.stdout.strip() or out.stderr.strip()})"
    return ""


pytestmark = pytest.mark.skipif(bool(cluster_state()), reason=f"no Slurm cluster ({cluster_state()}); "
                                "start one with `tests/slurm/start.sh --install` (CI does)")


def run_snakemake(work: Path, *args: str, configfile: Path = SMOKE, slurm: bool = True,
                  timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the workflow; with `slurm`, through the CI profile, under `timeout -s INT` (the
    executor ignores SIGTERM and would wait forever on a lost job)."""
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", str(configfile)]
    cmd += ["--profile", str(PROFILE)] if slurm else ["--cores", "2"]
    cmd = ["timeout", "-s", "INT", str(timeout), *cmd, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=timeout + 60)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def new_workdir(root: Path, corpus: Path) -> Path:
    (root / "data").mkdir(parents=True)
    shutil.copytree(corpus, root / "data" / "smoke")
    shutil.copy(ROOT / "data.dvc", root / "data.dvc")
    return root


def config_with(tmp: Path, name: str, **pretrain_changes) -> Path:
    """The smoke config with `pretrain` sections changed: {"data": {...}, "optim": {...}}."""
    cfg = yaml.safe_load(SMOKE.read_text())
    for section, values in pretrain_changes.items():
        if section == "resources":
            cfg["resources"]["pretrain"] = values
        else:
            cfg["pretrain"][section] |= values
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def slurm_jobs_of(log: str, rule: str) -> list[str]:
    """Slurm job ids of a rule's submissions, from Snakemake's output (the executor deletes the
    Slurm logs of successful jobs)."""
    return re.findall(rf"submitted with SLURM jobid (\d+) \(log: \S*/rule_{rule}/", log)


@pytest.fixture(scope="module")
def local_run(smoke_dag_done) -> Path:
    """The whole smoke DAG run locally (the run every test of this pytest run shares: read-only)."""
    return smoke_dag_done[0]


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, smoke_corpus) -> tuple[Path, subprocess.CompletedProcess]:
    work = new_workdir(tmp_path_factory.mktemp("slurm"), smoke_corpus)
    return work, run_snakemake(work)


def test_whole_dag_through_sbatch_matches_local_run(slurm_run, local_run):
    work, proc = slurm_run
    log = proc.stdout + proc.stderr
    planned = {rule: n for rule, n in re.findall(r"^(\w+)\s+(\d+)$", log.split("Job stats:")[1].split("\n\n")[0], re.M)
               if rule not in ("all", "total")}
    assert {"pretrain", "select_ckpt", "init_model", "eval_linear", "report"} <= set(planned)
    for rule, n in planned.items():  # every job went through sbatch
        assert len(slurm_jobs_of(log, rule)) == int(n), f"{rule}: {n} jobs planned:\n{log[-3000:]}"
    for rel in ["results/smoke/asr/part-0.jsonl", "results/smoke/asr/part-1.jsonl"]:
        assert (work / rel).read_bytes() == (local_run / rel).read_bytes(), rel
    shards = sorted(p.relative_to(work) for p in (work / "results/smoke/shards").glob("part-*/*.tar"))
    assert shards and shards == sorted(p.relative_to(local_run) for p in (local_run / "results/smoke/shards").glob("part-*/*.tar"))
    for rel in shards:
        assert (work / rel).read_bytes() == (local_run / rel).read_bytes(), rel
    same_weights(work / "results/smoke/select/best.pt", local_run / "results/smoke/select/best.pt")
    sel, ref = (json.loads((w / TARGET).read_text()) for w in (work, local_run))
    assert sel["best"] == ref["best"] and sel["candidates"] == ref["candidates"]
    evals = sorted(p.relative_to(local_run) for p in local_run.glob("results/*/eval/*/*.json"))
    assert evals and evals == sorted(p.relative_to(work) for p in work.glob("results/*/eval/*/*.json"))
    for rel in evals:
        ours, theirs = (json.loads((w / rel).read_text())["metrics"] for w in (work, local_run))
        assert ours == pytest.approx(theirs, abs=1e-6), rel
    assert (work / "results/report/summary.md").exists()


def test_pretraining_as_two_task_job_with_c10d_rendezvous(slurm_run, tmp_path):
    work, _ = slurm_run
    cfg = config_with(tmp_path, "two", data={"batch_size": 2},
                      resources={"threads": 1, "mem_mb": 1000, "runtime": 10, "tasks": 2})
    dry = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", str(cfg),
                          "--profile", str(PROFILE), "-n", "results/smoke/pretrain/manifest.json", "-R", "pretrain"],
                         capture_output=True, text=True)
    assert "tasks=2" in dry.stdout and "mpi=srun" in dry.stdout, dry.stdout[-2000:]
    run_snakemake(work, "results/smoke/pretrain/manifest.json", "-R", "pretrain", configfile=cfg)
    log = (work / "logs/smoke/pretrain.log").read_text()
    launch = [line for line in log.splitlines() if line.startswith("tvts launch: srun")][-1]
    assert "--ntasks=2" in launch and "--rdzv-backend c10d" in launch and "--nnodes 2" in launch, launch
    manifest = json.loads((work / "results/smoke/pretrain/manifest.json").read_text())
    assert manifest["counts"]["world_size"] == 2
    assert manifest["counts"]["steps"] > 0


def preempt_when_running(work: Path, min_step: int, done: threading.Event, sent: list) -> None:
    """Once the running pretraining job has logged `min_step`, SIGTERM its job steps through Slurm
    (what `--signal=TERM@secs` does before the time limit)."""
    log = work / "results/smoke/pretrain/log.jsonl"
    while not done.is_set():
        jobs = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True, text=True).stdout
        ids = [line.split()[0] for line in jobs.splitlines() if "rule_pretrain_" in line]
        steps = [int(m) for m in re.findall(r'"step": (\d+)', log.read_text())] if log.exists() else []
        if ids and steps and max(steps) >= min_step:
            subprocess.run(["scancel", "--signal=TERM", ids[0]], check=True)
            sent.append((ids[0], max(steps)))
            return
        time.sleep(0.1)


def test_preempted_pretraining_resumes_to_the_uninterrupted_weights(slurm_run, local_run, tmp_path):
    longer = config_with(tmp_path, "long", data={"batch_size": 1}, optim={"epochs": 60, "decay_epochs": [40]},
                         runtime={"log_every": 1, "ckpt_every": 10_000, "keep_last": 2, "threads": 1})
    target = "results/smoke/pretrain/manifest.json"
    reference = tmp_path / "reference"
    shutil.copytree(local_run, reference, symlinks=True)
    run_snakemake(reference, target, "-R", "pretrain", configfile=longer, slurm=False)
    work, _ = slurm_run
    (work / "results/smoke/pretrain/log.jsonl").unlink(missing_ok=True)  # the watcher reads this run's steps only
    done, sent = threading.Event(), []
    watcher = threading.Thread(target=preempt_when_running, args=(work, 20, done, sent), daemon=True)
    watcher.start()
    try:
        proc = run_snakemake(work, target, "-R", "pretrain", configfile=longer)
    finally:
        done.set()
        watcher.join()
    assert sent, "the pretraining job finished before it could be signalled"
    # Snakemake clears the rule's log before the retry; the retry's log says where it resumed.
    # With ckpt_every 10000, only the checkpoint written on SIGTERM can hold a step >= the signalled one.
    resumed = re.findall(r"resuming from \S+ \(step (\d+)\)", (work / "logs/smoke/pretrain.log").read_text())
    assert resumed and int(resumed[0]) >= sent[0][1], (resumed, sent)
    assert len(slurm_jobs_of(proc.stdout + proc.stderr, "pretrain")) == 2  # the preempted attempt and its retry
    manifest = json.loads((work / target).read_text())
    ref = json.loads((reference / target).read_text())
    assert manifest["counts"]["steps"] == ref["counts"]["steps"]
    final = lambda w: w / "results/smoke/pretrain" / json.loads((w / target).read_text())["outputs"]["epoch_checkpoints"][-1]
    same_weights(final(work), final(reference))
