"""`tvts launch`: start a training stage under torchrun, on one node or across a Slurm allocation.

The training rules run `exec tvts launch --gpus G --agents A -- <stage> <args>`:

* one agent (the default): `torchrun --standalone --nproc-per-node P -m tvts.cli <stage> ...`, where P
  is the number of GPUs the job got (CUDA_VISIBLE_DEVICES, as set by Slurm), or one CPU process;
* several agents (`resources.<rule>.nodes` > 1, or `tasks` > 1 to test the path on one machine): one
  torchrun agent per Slurm task through `srun`, meeting at a c10d rendezvous on the allocation's
  first node, keyed by the job id so that a requeued job never joins a stale rendezvous.

The launcher replaces itself with the command (exec), so the signals Slurm sends to the job step
(the time-limit warning, preemption) reach torchrun, which forwards them to the trainer processes;
those checkpoint and exit with 75 (tvts.stages.pretrain) for Snakemake's `retries` to resume.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

RDZV_PORT_BASE = 29400  # + job id mod 1000: jobs sharing a head node use distinct ports


class LaunchError(RuntimeError):
    """The requested layout cannot run in this environment; the message says why."""


@dataclass(frozen=True)
class Layout:
    """Processes of a training job.

    Args:
        gpus: GPUs per node requested in the config (0 = CPU).
        agents: torchrun agents (normally one per node).
    """

    gpus: int = 0
    agents: int = 1
    cpus_per_agent: int = 0  # srun --cpus-per-task of each agent (0 = Slurm's default)


def visible_gpus(env: Mapping[str, str]) -> int | None:
    """GPUs this process may use, as Slurm (or the user) set CUDA_VISIBLE_DEVICES; None if unset."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return len([d for d in value.split(",") if d.strip() and d.strip() != "-1"])


def procs_per_node(layout: Layout, env: Mapping[str, str]) -> int:
    """One process per GPU the job got; one process on a CPU-only job."""
    if layout.gpus <= 0:
        return 1
    got = visible_gpus(env)
    return max(1, got if got else layout.gpus)


def job_nodes(job_id: str) -> str:
    """The allocation's node list. Read from Slurm, not from SLURM_JOB_NODELIST: the Snakemake
    job-step executor strips the SLURM_* variables (but the job id) from the job's environment."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%N"], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        raise LaunchError(f"cannot read the node list of Slurm job {job_id}: {out.stderr.strip() or 'no output'}")
    return out.stdout.split()[0]


def head_node(job_id: str, env: Mapping[str, str]) -> str:
    """The first host of the allocation: the c10d rendezvous endpoint."""
    nodelist = env.get("SLURM_JOB_NODELIST") or job_nodes(job_id)
    if shutil.which("scontrol"):
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]
    return nodelist.split(",")[0]


def launch_command(layout: Layout, argv: list[str], env: Mapping[str, str]) -> list[str]:
    """The command line that runs `tvts <argv>` with this layout.

    Args:
        layout: GPUs per node and number of agents.
        argv: the stage and its arguments, e.g. ["pretrain", "--shards", ...].
        env: the job's environment (os.environ).
    Returns:
        argv of torchrun (one agent) or of `srun ... torchrun ...` (several agents).
    """
    nproc = procs_per_node(layout, env)
    stage = ["-m", "tvts.cli", *argv]
    if layout.agents <= 1:
        return ["torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), *stage]
    job_id = env.get("SLURM_JOB_ID")
    if not job_id:
        raise LaunchError(f"{layout.agents} torchrun agents need a Slurm job (SLURM_JOB_ID is not set); "
                          "run with `snakemake --profile slurm`, or set resources.<rule>.nodes/tasks to 1")
    endpoint = f"{head_node(job_id, env)}:{RDZV_PORT_BASE + int(job_id) % 1000}"
    srun = ["srun", f"--ntasks={layout.agents}", "--kill-on-bad-exit=1"]
    if layout.gpus > 0:
        srun.append(f"--gres=gpu:{layout.gpus}")
    if layout.cpus_per_agent > 0:
        srun.append(f"--cpus-per-task={layout.cpus_per_agent}")
    torchrun = ["torchrun", "--nnodes", str(layout.agents), "--nproc-per-node", str(nproc),
                "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", f"tvts-{job_id}"]
    return [*srun, *torchrun, *stage]


def parse_args(argv: list[str] | None) -> tuple[Layout, list[str], bool]:
    p = argparse.ArgumentParser(prog="tvts launch", description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=0, help="GPUs per node (0 = one CPU process)")
    p.add_argument("--agents", type=int, default=1, help="torchrun agents, one per Slurm task")
    p.add_argument("--cpus-per-agent", type=int, default=0, help="srun --cpus-per-task of each agent")
    p.add_argument("--print", action="store_true", help="print the command instead of running it")
    p.add_argument("stage", nargs=argparse.REMAINDER, help="-- <stage> [args]")
    args = p.parse_args(argv)
    stage = args.stage[1:] if args.stage[:1] == ["--"] else args.stage
    if not stage:
        p.error("no stage given: tvts launch [--gpus G] [--agents A] -- <stage> [args]")
    if args.gpus < 0 or args.agents < 1:
        p.error("--gpus must be >= 0 and --agents >= 1")
    return Layout(args.gpus, args.agents, args.cpus_per_agent), stage, args.print


def main(argv: list[str] | None = None) -> int:
    layout, stage, dry = parse_args(argv)
    try:
        cmd = launch_command(layout, stage, os.environ)
    except LaunchError as err:
        print(f"tvts launch: {err}", file=sys.stderr)
        return 2
    print("tvts launch:", " ".join(cmd), file=sys.stderr, flush=True)
    if dry:
        return 0
    os.execvp(cmd[0], cmd)  # replace this process: Slurm's signals reach torchrun directly
    return 0  # unreachable
