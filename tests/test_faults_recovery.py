"""Recovery from killed jobs and a killed Snakemake, on the smoke DAG and its stages.

Each test reproduces one way a run went wrong: a killed rerun whose stale results the DAG then
accepted, a final checkpoint retrained because its manifest was missing, a workflow profile that
was never read, a trainer that outlived Snakemake, jobs that needed an activated venv, a
shard-clips temp folder left forever, and pretraining numbers that depended on the CPU's ISA.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from conftest import ROOT, SMOKE, own_store
from test_workflow import SNAKEFILE, TRAIN, planned_jobs, snakemake

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
MANIFEST = "results/smoke/pretrain/manifest.json"
AVX2_MACHINE = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def without_venv() -> dict[str, str]:
    """The environment of a user who runs `.venv/bin/snakemake` without activating the venv."""
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p and p != venv_bin] or ["/usr/bin", "/bin"]
    return os.environ | {"PATH": os.pathsep.join(path)}


def copy_of(done: Path, tmp_path: Path, mp: pytest.MonkeyPatch) -> Path:
    """A copy of a finished workdir, its runs logged to a store of their own (tests/test_workflow.py
    counts the runs of experiment `smoke` in the shared one)."""
    own_store(mp, tmp_path, "tvts")
    work = tmp_path / "work"
    shutil.copytree(done, work, symlinks=True)
    return work


def longer_pretraining(tmp_path: Path) -> Path:
    """The smoke config with one pretraining key changed: ~400 steps, a minute or more, so the
    trainer is still running when killed (it writes a few of its 400 epoch checkpoints only)."""
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["pretrain"]["optim"] |= {"epochs": 400, "decay_epochs": [400]}
    path = tmp_path / "longer.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_snakemake(work: Path, configfile: Path, env: dict, *args: str) -> subprocess.Popen:
    cmd = [SNAKEMAKE, "-s", str(SNAKEFILE), "--directory", str(work), "--configfile", str(configfile),
           "--cores", "2", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def training_process(proc: subprocess.Popen, log: Path, timeout: float = 240) -> psutil.Process:
    """The pretraining worker under `proc` (torchrun's child), once it has logged an optimiser step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"snakemake ended early:\n{proc.stdout.read()[-4000:]}"
        found = [p for p in psutil.Process(proc.pid).children(recursive=True)
                 if "tvts.cli" in _cmdline(p) and "pretrain" in _cmdline(p)]
        workers = [p for p in found if p.ppid() in {f.pid for f in found}]
        if workers and log.exists() and " INFO step " in log.read_text(errors="replace"):
            return workers[0]
        time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"no pretraining step within {timeout} s:\n{proc.stdout.read()[-4000:]}")


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still alive after `timeout` seconds (killed then, so no test leaves them)."""
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        p.kill()
    return alive


def test_a_killed_rerun_leaves_the_job_and_everything_downstream_planned(smoke_dag_done, tmp_path, monkeypatch):
    """Finding: after a pretraining key changed, `pretrain` reran and was SIGKILLed; Snakemake
    deleted its manifest, and the next run said "Nothing to be done" with the old best.pt and
    evaluations standing. Now the stale results are planned again. The run is made without the
    venv on PATH: every job (and torchrun) must be the interpreter's own."""
    work = copy_of(smoke_dag_done[0], tmp_path, monkeypatch)
    cfg = longer_pretraining(tmp_path)
    log = work / "logs/smoke/pretrain.log"
    log.unlink()
    proc = start_snakemake(work, cfg, without_venv(), MANIFEST)
    worker = training_process(proc, log)
    agent = worker.parent()
    agent.send_signal(signal.SIGKILL)           # the job dies (OOM killer, a node lost, kill -9)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out[-3000:]
    assert not wait_gone([worker], 20), "the trainer outlived its torchrun agent"
    assert not (work / "results/smoke/pretrain/manifest.json").exists()
    # every job that reads the pretrain section, the ones downstream of the killed job included
    dry = snakemake(work, "-n", configfile=cfg)
    assert planned_jobs(dry) == TRAIN
    assert "results/smoke/pretrain/manifest.json is missing but results/smoke/select/best.pt exists" in dry.stderr


def test_a_trainer_dies_with_a_sigkilled_snakemake_after_a_checkpoint(smoke_dag_done, tmp_path, monkeypatch):
    """Finding: a SIGKILLed `snakemake` left its trainer running and writing. Now the job's
    processes get SIGTERM when their parent dies: the trainer checkpoints (exit 75) and stops."""
    work = copy_of(smoke_dag_done[0], tmp_path, monkeypatch)
    cfg = longer_pretraining(tmp_path)
    log = work / "logs/smoke/pretrain.log"
    log.unlink()
    proc = start_snakemake(work, cfg, os.environ.copy(), MANIFEST)
    worker = training_process(proc, log)
    job = [worker.parent(), worker]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not wait_gone(job, 20), f"still running after snakemake died: {[p.pid for p in job]}"
    assert "checkpointing and exiting" in log.read_text(errors="replace")
    assert snakemake(work, "--unlock", configfile=cfg).returncode == 0
    assert planned_jobs(snakemake(work, "-n", configfile=cfg)) == TRAIN


def pretrain_in_process(shards: Path, out: Path, cfg: Path) -> int:
    from tvts.stages import pretrain

    return pretrain.main(["--shards", str(shards), "--out", str(out), "--config", str(cfg), "--exp", "t", "--cpu"])


def test_a_final_checkpoint_without_its_manifest_is_finalised_not_retrained(tmp_path, smoke_shards, monkeypatch,
                                                                            caplog):
    """Finding: a run killed after its final checkpoint but before its manifest was retrained from
    step 1 on rerun, every checkpoint deleted. Now the rerun only writes the manifest."""
    import logging

    from tvts.train.pretrain import PretrainJob

    def killed(self):
        raise KeyboardInterrupt("killed between the final checkpoint and the manifest")

    out = tmp_path / "pretrain"
    with monkeypatch.context() as mp:
        mp.setattr(PretrainJob, "manifest", killed)
        with pytest.raises(KeyboardInterrupt):
            pretrain_in_process(smoke_shards, out, SMOKE)
    assert not (out / "manifest.json").exists()
    ckpts = {p.name: p.stat().st_mtime_ns for p in (out / "ckpt").glob("*.pt")}
    log_lines = (out / "log.jsonl").read_text()
    caplog.set_level(logging.INFO)
    assert pretrain_in_process(smoke_shards, out, SMOKE) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "ckpt").glob("*.pt")} == ckpts
    assert (out / "log.jsonl").read_text() == log_lines   # no step was trained again
    manifest = json.loads((out / "manifest.json").read_text())
    epochs = sorted(p.name for p in (out / "ckpt").glob("epoch-*.pt"))
    assert [Path(e).name for e in manifest["outputs"]["epoch_checkpoints"]] == epochs
    assert [h["epoch"] for h in manifest["history"]] == list(range(len(epochs)))
    assert "finalising" in caplog.text


def test_a_finalised_run_forced_to_rerun_trains_again(tmp_path, smoke_shards):
    """`snakemake -R pretrain` deletes the manifest of a finalised run: that one retrains."""
    out = tmp_path / "pretrain"
    assert pretrain_in_process(smoke_shards, out, SMOKE) == 0
    first = (out / "log.jsonl").read_text().splitlines()
    (out / "manifest.json").unlink()
    assert pretrain_in_process(smoke_shards, out, SMOKE) == 0
    again = (out / "log.jsonl").read_text().splitlines()
    assert len(again) == len(first) and json.loads(again[0])["step"] == 1
    assert json.loads(again[0])["time"] > json.loads(first[-1])["time"]


def test_the_workflow_profile_is_read(smoke_workdir, tmp_path):
    """Finding: `workflow/profiles/default` was never read (Snakemake looks for
    `profiles/default` beside the Snakefile or in the working directory)."""
    proc = subprocess.run([SNAKEMAKE, "-s", str(SNAKEFILE), "--directory", str(smoke_workdir),
                           "--configfile", str(SMOKE), "-n"], cwd=tmp_path, capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Using workflow specific profile" in proc.stderr
    profile = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    assert profile["rerun-incomplete"] is True
    assert "latency-wait" not in profile   # it would override the Slurm profile's 60 s


def test_jobs_run_without_an_activated_venv(smoke_workdir, tmp_path, monkeypatch):
    """Finding: `.venv/bin/snakemake` without `source .venv/bin/activate` made every job exit 127
    (`tvts: command not found`)."""
    own_store(monkeypatch, tmp_path, "tvts")
    cmd = [SNAKEMAKE, "-s", str(SNAKEFILE), "--directory", str(smoke_workdir), "--configfile", str(SMOKE),
           "--cores", "1", "results/smoke/asr/part-0.jsonl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=without_venv(), timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (smoke_workdir / "results/smoke/asr/part-0.jsonl").exists()


def test_shard_clips_removes_its_stale_temp_folders(smoke_shards, tmp_path):
    """Finding: a SIGKILLed shard-clips left `.shards.*.tmp` forever. The next run of the stage
    removes the temp folders of its own output, and nobody else's."""
    from tvts.stages import shard_clips

    part = smoke_shards.parent / "asr" / "part-0.jsonl"
    stale = tmp_path / ".shards.k1ll3d_x.tmp"
    (stale / "sub").mkdir(parents=True)
    (stale / "train-000000.tar").write_bytes(b"half a shard")
    others = [tmp_path / ".shards-b.abcd1234.tmp", tmp_path / ".part-0.jsonl.abcd1234.tmp"]
    for other in others:
        other.mkdir()
    assert shard_clips.main(["--asr", str(part), "--out", str(tmp_path / "shards"), "--config", str(SMOKE),
                             "--workers", "1", "--exp", "t"]) == 0
    assert not stale.exists()
    assert all(o.exists() for o in others)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == sorted(o.name for o in others)


def final_weights(pretrain: Path) -> dict[str, torch.Tensor]:
    manifest = json.loads((pretrain / "manifest.json").read_text())
    return torch.load(pretrain / manifest["outputs"]["epoch_checkpoints"][-1], map_location="cpu",
                      weights_only=True)["model"]


def test_pretraining_numbers_do_not_depend_on_the_cpus_isa(smoke_dag_done, tmp_path, monkeypatch):
    """Finding: the same `make run` gave other numbers on an AVX-512 machine. The demo configs pin
    the CPU kernels to AVX2 (`cpu_isa`), so a machine with AVX-512 computes what one without
    does: here, pretraining again with every library forced to AVX2 gives identical weights."""
    done = smoke_dag_done[0]
    work = copy_of(done, tmp_path, monkeypatch)
    env = os.environ | AVX2_MACHINE
    snakemake_env(work, env, "-R", "pretrain", MANIFEST)
    ours, theirs = final_weights(done / "results/smoke/pretrain"), final_weights(work / "results/smoke/pretrain")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), "weights differ between ISAs"
    for run in (done, work):
        manifest = json.loads((run / "results/smoke/pretrain/manifest.json").read_text())
        assert manifest["cpu"]["capability"] == "AVX2", manifest["cpu"]


def snakemake_env(work: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(SNAKEFILE), "--directory", str(work), "--configfile", str(SMOKE), "--cores", "2",
           *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc
