"""`tvts launch`: the torchrun command line of a training rule, on one node and across a Slurm job;
and the resources `snakemake --profile slurm` asks for (dry run, no cluster needed)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tvts.launch import LaunchError, Layout, launch_command, main, procs_per_node

from conftest import ROOT

STAGE = ["pretrain", "--shards", "s"]


def test_one_cpu_process_without_gpus():
    cmd = launch_command(Layout(gpus=0), STAGE, {})
    assert cmd == ["torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node", "1", "-m", "tvts.cli", *STAGE]


def test_one_process_per_gpu_the_job_got():
    assert procs_per_node(Layout(gpus=8), {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}) == 4  # Slurm gave 4 of 8
    assert procs_per_node(Layout(gpus=2), {}) == 2                                  # not under Slurm
    assert procs_per_node(Layout(gpus=0), {"CUDA_VISIBLE_DEVICES": "0,1"}) == 1      # a CPU rule stays on CPU


def test_several_agents_need_a_slurm_job():
    with pytest.raises(LaunchError, match="SLURM_JOB_ID"):
        launch_command(Layout(gpus=8, agents=4), STAGE, {})


def test_several_agents_meet_at_a_c10d_rendezvous_on_the_first_node(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no scontrol: a plain node list
    env = {"SLURM_JOB_ID": "12345", "SLURM_JOB_NODELIST": "gpu07,gpu08,gpu09,gpu10"}
    cmd = launch_command(Layout(gpus=8, agents=4, cpus_per_agent=64), STAGE, env)
    line = " ".join(cmd)
    assert line.startswith("srun --ntasks=4 --kill-on-bad-exit=1 --gres=gpu:8 --cpus-per-task=64 torchrun")
    assert "--nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint gpu07:29745 --rdzv-id tvts-12345" in line
    assert cmd[-3:] == STAGE[-3:]


def test_cli_prints_the_command(capsys):
    assert main(["--gpus", "0", "--print", "--", *STAGE]) == 0
    assert "torchrun --standalone" in capsys.readouterr().err
    assert main(["--agents", "2", "--print", "--", *STAGE]) == 2  # no Slurm job here: a clear error


def test_profile_dry_run_shows_the_papers_slurm_resources(tmp_path):
    """`snakemake --profile slurm -n` from the repository root, on the paper config."""
    env = os.environ | {"TVTS_SLURM_PARTITION": "gpu-long", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--profile", "slurm", "-n",
                           "--configfile", "config/paper.yaml", "--directory", str(tmp_path), "-s", "Snakefile"],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Using profiles slurm and workflow specific profile" in out  # + profiles/default
    block = out.split("rule pretrain:")[1].split("rule ")[0]
    resources = re.search(r"resources: (.*)", block).group(1)
    for item in ("nodes=4", "tasks=4", "mpi=srun", "gres=gpu:8", "slurm_partition=gpu-long", "runtime=4320",
                 "slurm_extra=--signal=TERM@600"):
        assert item in resources, resources
    assert "tvts launch --gpus 8 --agents 4 --cpus-per-agent 64 --" in block
    finetune = out.split("rule eval_finetune:")[1].split("rule ")[0]
    assert "gpu=8" in re.search(r"resources: (.*)", finetune).group(1)
