"""Benchmark: the MLflow bookkeeping one stage job pays, tracking on against TVTS_TRACKING=off.

    .venv/bin/python bench/tracking.py [--jobs 3] [--params 60] [--metrics 20] [--parallel 1] [--uri URI]

Each job is a fresh `python` process that runs a trivial stage the way a Snakemake job
does: `tracking.stage_run` with `--params` config params, one `log_metrics` of `--metrics`
values, one small artifact. The store is a SQLite file in a temporary folder, created first
(as the Snakefile's `onstart` does), unless `--uri` names another. Prints the median job
time on and off, their ratio, and where a tracked job's time goes (importing mlflow,
opening the run, logging, closing), for jobs that write the store themselves
(`TVTS_TRACKING_AGENT=off`) and for jobs that hand their run to the tracking agent.
`--parallel N` starts N jobs at once, as parallel alignment parts do.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB = """
import json, os, sys, time
t0 = time.perf_counter()
from tvts import tracking
t1 = time.perf_counter()
if not tracking.tracking_off() and os.environ.get("TVTS_TRACKING_AGENT") == "off":
    import mlflow  # noqa: F401 - timed apart: the floor of a job that writes the store itself
t2 = time.perf_counter()
params = {"stage": {f"key_{i}": i * 0.5 for i in range(int(sys.argv[1]))}}
ctx = tracking.stage_run("align_asr", "bench", params, run_name="bench/align_asr/part-0")
run = ctx.__enter__()
t3 = time.perf_counter()
run.log_metrics({f"count_{i}": float(i) for i in range(int(sys.argv[2]))})
run.log_artifact(sys.argv[3])
t4 = time.perf_counter()
ctx.__exit__(None, None, None)
t5 = time.perf_counter()
print(json.dumps({"import_tvts": t1 - t0, "import_mlflow": t2 - t1, "open_run": t3 - t2, "log": t4 - t3,
                  "close_run": t5 - t4}))
"""


def run_jobs(n: int, parallel: int, env: dict, args, artifact: Path) -> list[tuple[float, dict]]:
    """`n` jobs, `parallel` at a time: (wall seconds, the job's own breakdown) each."""
    out: list[tuple[float, dict]] = []
    while len(out) < n:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", JOB, str(args.params), str(args.metrics), str(artifact)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(min(parallel, n - len(out)))]
        for p in procs:
            stdout, stderr = p.communicate()
            if p.returncode:
                raise SystemExit(f"bench job failed:\n{stderr[-3000:]}")
            out.append((time.perf_counter() - start, json.loads(stdout.strip().splitlines()[-1])))
    return out


def job_env(tmp: Path, uri: str | None, tracking: bool, via_agent: bool = False) -> dict:
    env = dict(os.environ, TVTS_GIT_COMMIT="bench", TVTS_MLFLOW_EXPERIMENT="bench-tracking",
               MLFLOW_TRACKING_URI=uri or f"sqlite:///{tmp}/mlflow.db", TVTS_SPOOL_DIR=str(tmp / "spool"),
               TVTS_TRACKING_AGENT="on" if via_agent else "off")
    env.pop("TVTS_PARENT_RUN_ID", None)
    if not tracking:
        env["TVTS_TRACKING"] = "off"
    return env


def row(label: str, jobs: list[tuple[float, dict]], t_off: float) -> str:
    t = statistics.median(w for w, _ in jobs)
    return f"| {label} | {t:.2f} | {t - t_off:.2f} | {t / t_off:.1f}x |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3, help="jobs timed per mode (median reported)")
    parser.add_argument("--params", type=int, default=60, help="config params per run")
    parser.add_argument("--metrics", type=int, default=20, help="metrics logged per run")
    parser.add_argument("--parallel", type=int, default=1, help="jobs started at once")
    parser.add_argument("--uri", default=None, help="tracking URI (default: a fresh SQLite store)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        artifact = tmp / "manifest.json"
        artifact.write_text(json.dumps({"stage": "bench"}))
        on_env = job_env(tmp, args.uri, True)
        subprocess.run([sys.executable, "-m", "tvts.cli", "tracking", "init"], env=on_env, check=True,
                       capture_output=True, cwd=ROOT)  # the store exists before any job, as in a workflow
        off = run_jobs(args.jobs, args.parallel, job_env(tmp, args.uri, False), args, artifact)
        on = run_jobs(args.jobs, args.parallel, on_env, args, artifact)
        first = run_jobs(1, 1, job_env(tmp, args.uri, True, via_agent=True), args, artifact)  # starts the agent
        agent = run_jobs(args.jobs, args.parallel, job_env(tmp, args.uri, True, via_agent=True), args, artifact)
    t_off = statistics.median(w for w, _ in off)
    print(f"tracking bookkeeping per stage job: {args.params} params, {args.metrics} metrics, 1 artifact, "
          f"{args.jobs} jobs per mode, {args.parallel} at a time, store {args.uri or 'SQLite (fresh file)'}")
    print("| tracking | job s (median) | overhead s | ratio on/off |")
    print("|---|---|---|---|")
    print(f"| off | {t_off:.2f} | | |")
    print(row("on, the job writes the store itself", on, t_off))
    print(row("on, through the agent (once it runs)", agent, t_off))
    print(row("on, the job that starts the agent", first, t_off))
    for label, jobs in (("itself", on), ("through the agent", agent)):
        parts = {k: statistics.median(b[k] for _, b in jobs) for k in jobs[0][1]}
        print(f"tracked job ({label}), median s: " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
