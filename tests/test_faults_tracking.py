"""Tracking never stops a job: a tracking server that dies mid-run, artifacts on the server,
parallel jobs on a fresh SQLite store, runs of dead jobs, and MLflow's system metrics.

The server tests run a real `mlflow server` on 127.0.0.1 (started once, killed with SIGKILL
and restarted on the same store and port).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from tvts import tracking
from tvts.tracking import agent, runs, spool, store

from conftest import SMOKE, own_store

EXPERIMENT = "tvts-faults-tracking"


class Server:
    """A real `mlflow server` on a free port, with its artifacts in `<root>/art`."""

    def __init__(self, root: Path):
        self.root, self.proc = root, None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.artifacts = root / "art"

    def start(self, timeout_s: float = 300.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TVTS_"))}
        cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", f"sqlite:///{self.root}/s.db", "--artifacts-destination", str(self.artifacts),
               "--workers", "1"]
        log = open(self.root / "server.log", "a")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                if requests.get(self.uri + "/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError("mlflow server did not start")

    def kill(self) -> None:
        """SIGKILL, the server and its uvicorn worker (one process group)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("mlflow_server"))
    srv.start()
    yield srv
    if srv.proc.poll() is None:
        srv.kill()


@pytest.fixture
def http_store(server, tmp_path, monkeypatch):
    """Jobs point at the server; their cwd and spool are this test's; the link starts fresh."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("TVTS_MLFLOW_EXPERIMENT", EXPERIMENT)
    monkeypatch.setenv("TVTS_GIT_COMMIT", "test")
    monkeypatch.setenv(spool.SPOOL_ENV, str(tmp_path / "spool"))
    monkeypatch.setenv(agent.AGENT_ENV, "off")  # this process talks to the server itself
    monkeypatch.delenv("TVTS_PARENT_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(spool, "LINK", spool.Link())
    monkeypatch.setattr(spool, "PROBE_FIRST_S", 0.5)
    return server


def history(run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in store.client().get_metric_history(run_id, key)]


def timed(blocked: list[float], fn, *args, **kwargs):
    start = time.monotonic()
    out = fn(*args, **kwargs)
    blocked.append(time.monotonic() - start)
    return out


def test_http_artifacts_land_in_the_server_store(http_store, tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    with tracking.stage_run("align_asr", "faults", {}) as run:
        run.log_artifact(tmp_path / "manifest.json")
    assert list(http_store.artifacts.rglob("manifest.json")), "the server's --artifacts-destination holds it"
    assert not (tmp_path / "mlartifacts").exists()
    assert store.client().get_run(run.run_id).info.artifact_uri.startswith("mlflow-artifacts:")


def test_server_killed_mid_run_spools_and_replays_in_order(http_store, tmp_path, smoke_corpus):
    blocked: list[float] = []
    with tracking.stage_run("pretrain", "faults", {"pretrain": {"steps": 30}}) as run:
        for step in range(10):
            run.log_metrics({"train/loss": 100.0 - step}, step=step)
        http_store.kill()
        for step in range(10, 30):  # the server is gone: nothing may block for long
            timed(blocked, run.log_metrics, {"train/loss": 100.0 - step}, step=step)
        parent = timed(blocked, tracking.start_parent_run, "faults", {"cores": 2})  # created while it is away
        assert parent.startswith(spool.LOCAL_PREFIX)
        os.environ["TVTS_PARENT_RUN_ID"] = parent
        start = time.monotonic()
        try:
            with tracking.stage_run("eval_linear", "faults", {"eval": {"lr": 0.1}},
                                    extra_tags={"tvts.task": "linear"}) as child:  # a whole job, created while away
                child.log_metrics({"top1": 42.0})
        finally:
            del os.environ["TVTS_PARENT_RUN_ID"]
        blocked.append(time.monotonic() - start)
        timed(blocked, tracking.end_run, parent)
    assert sum(blocked) <= 30.0, blocked
    assert list((tmp_path / "spool").glob("*.jsonl"))
    job = subprocess.run(["tvts", "align-asr", "--list", str(smoke_corpus / "yttemporal" / "videos.tsv"),
                          "--config", str(SMOKE), "--exp", "faults", "--out", str(tmp_path / "part-0.jsonl")],
                         capture_output=True, text=True, timeout=600)  # a whole stage job while the server is away
    assert job.returncode == 0, job.stderr[-3000:]
    assert job.stderr.count(f"MLflow tracking store {http_store.uri} is unreachable") == 1

    http_store.start()
    spool.LINK = spool.Link()  # the next stage start: a new process
    assert tracking.replay_spool() > 0
    assert not [p for p in (tmp_path / "spool").glob("*.jsonl") if p.name != "ids.jsonl"]
    assert history(run.run_id, "train/loss") == [(s, 100.0 - s) for s in range(30)]
    mlc = store.client()
    assert mlc.get_run(run.run_id).info.status == "FINISHED"
    real_parent = spool.resolve_id(parent)
    assert not real_parent.startswith(spool.LOCAL_PREFIX)
    assert mlc.get_run(real_parent).info.status == "FINISHED"
    assert mlc.get_run(real_parent).data.params == {"cores": "2"}
    late = mlc.get_run(spool.resolve_id(child.run_id))
    assert late.info.status == "FINISHED"
    assert late.data.tags["mlflow.parentRunId"] == real_parent
    assert late.data.tags["tvts.task"] == "linear" and late.data.params == {"eval.lr": "0.1"}
    assert late.data.metrics == {"top1": 42.0}
    aligned = tracking.search_stage_runs(["faults"], ("FINISHED",), EXPERIMENT)
    assert [r.metrics["videos_in"] for r in aligned if r.stage == "align_asr" and "videos_in" in r.metrics]


def test_server_back_mid_run_replays_before_the_next_write(tmp_path, monkeypatch):
    """The store answers again while the job runs: the spooled writes go first, in order."""
    own_store(monkeypatch, tmp_path, EXPERIMENT)
    monkeypatch.setenv(spool.SPOOL_ENV, str(tmp_path / "spool"))
    monkeypatch.setenv(agent.AGENT_ENV, "off")
    monkeypatch.setattr(spool, "LINK", spool.Link())
    monkeypatch.setattr(spool, "PROBE_FIRST_S", 0.0)
    real_apply, away = spool._apply, {"on": False}

    def flaky(ref, op):
        if away["on"]:
            raise RuntimeError("API request to http://tracking failed with exception Max retries exceeded")
        return real_apply(ref, op)

    monkeypatch.setattr(spool, "_apply", flaky)
    with tracking.stage_run("pretrain", "faults", {}) as run:
        run.log_metrics({"loss": 0.0}, step=0)
        away["on"] = True
        for step in range(1, 6):
            run.log_metrics({"loss": float(step)}, step=step)
        assert run.ref.path is not None and run.ref.path.exists()
        away["on"] = False
        run.log_metrics({"loss": 6.0}, step=6)
        assert run.ref.path is None
    assert [v for _, v in history(run.run_id, "loss")] == [float(s) for s in range(7)]
    assert store.client().get_run(run.run_id).info.status == "FINISHED"


def test_bounded_http_retries_unless_the_user_set_them(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "33")
    store.bound_http_retries()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == store.HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "33"


PARALLEL_JOB = textwrap.dedent("""
    import sys
    from tvts import tracking
    with tracking.stage_run("align_asr", "par", {"part": int(sys.argv[1])}, run_name=f"par/part-{sys.argv[1]}") as run:
        run.log_metrics({"videos": 1.0})
    print(run.run_id, "mlflow" in sys.modules)
""")


@pytest.mark.parametrize("via_agent", ["off", "on"])
def test_parallel_jobs_on_a_fresh_sqlite_store_lose_no_run(tmp_path, monkeypatch, via_agent):
    """off: each job migrates and writes the store itself (under the schema lock); on: short jobs
    never import mlflow, the agent writes their runs before they exit."""
    uri = own_store(monkeypatch, tmp_path, EXPERIMENT)
    monkeypatch.setenv(spool.SPOOL_ENV, str(tmp_path / "spool"))
    monkeypatch.setenv(agent.AGENT_ENV, via_agent)
    procs = [subprocess.Popen([sys.executable, "-c", PARALLEL_JOB, str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(8)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outs)[-4000:]
    found = tracking.search_stage_runs(["par"], ("FINISHED",), EXPERIMENT, uri)
    assert sorted(r.params["part"] for r in found) == [str(i) for i in range(8)]
    assert {r.run_id for r in found} == {out.split()[-2] for out in outs}  # the jobs saw the store's ids
    assert {out.split()[-1] for out in outs} == {"True" if via_agent == "off" else "False"}
    assert not [p for p in (tmp_path / "spool").glob("*.jsonl") if p.name != "ids.jsonl"]


def test_a_deferred_job_that_runs_long_shows_up_running(tmp_path, monkeypatch):
    own_store(monkeypatch, tmp_path, EXPERIMENT)
    monkeypatch.setenv(spool.SPOOL_ENV, str(tmp_path / "spool"))
    monkeypatch.setattr(runs, "_may_defer", lambda: True)
    monkeypatch.setattr(runs, "DEFER_S", 0.5)
    with tracking.stage_run("eval_linear", "defer", {"lr": 1}) as run:
        assert run.ref.run_id is None  # spooled, not yet in the store
        deadline = time.monotonic() + 120  # going live imports mlflow in the timer's thread
        while run.ref.run_id is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert run.ref.run_id and store.client().get_run(run.ref.run_id).info.status == "RUNNING"
        run.log_metrics({"top1": 1.0})
    got = store.client().get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.data.metrics == {"top1": 1.0} and got.data.params == {"lr": "1"}


def test_mark_stale_runs_killed_kills_dead_jobs_only(tmp_path, monkeypatch):
    own_store(monkeypatch, tmp_path, EXPERIMENT)
    dead = subprocess.Popen(["true"])
    dead.wait()
    runs = {}
    for name, tags in {"dead": {"tvts.pid": str(dead.pid)}, "live": {},
                       "other_host_recent": {"tvts.host": "elsewhere", "tvts.pid": "1"}}.items():
        ctx = tracking.stage_run("align_asr", "stale", {}, run_name=name, extra_tags=tags)
        runs[name] = (ctx, ctx.__enter__().run_id)  # left open: RUNNING
    try:
        killed = tracking.mark_stale_runs_killed()
        assert killed == [runs["dead"][1]]
        status = {n: store.client().get_run(rid).info.status for n, (_, rid) in runs.items()}
        assert status == {"dead": "KILLED", "live": "RUNNING", "other_host_recent": "RUNNING"}
        assert tracking.mark_stale_runs_killed(max_age_h=0.0) == [runs["other_host_recent"][1]]
    finally:
        for ctx, _ in runs.values():
            ctx.__exit__(None, None, None)


@pytest.mark.parametrize("switch", ["on", "off"])
def test_system_metrics_behind_the_switch(tmp_path, monkeypatch, switch):
    own_store(monkeypatch, tmp_path, EXPERIMENT)
    monkeypatch.setenv("TVTS_SYSTEM_METRICS", switch)
    monkeypatch.setenv("TVTS_SYSTEM_METRICS_INTERVAL", "1")
    assert tracking.system_metrics_enabled() == (switch == "on")
    with tracking.stage_run("pretrain", "sysm", {}) as run:
        time.sleep(3.0)
    keys = set(store.client().get_run(run.run_id).data.metrics)
    system = {k for k in keys if k.startswith("system/")}
    if switch == "on":
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
        assert len(history(run.run_id, "system/cpu_utilization_percentage")) >= 2
    else:
        assert not system


def test_the_config_switch_becomes_every_jobs_environment():
    assert tracking.system_metrics_env({"experiment": "tvts"}) == {}          # unset: the environment decides
    assert tracking.system_metrics_env({"system_metrics": True, "system_metrics_interval": 5}) == {
        "TVTS_SYSTEM_METRICS": "on", "TVTS_SYSTEM_METRICS_INTERVAL": "5.0"}
    assert tracking.system_metrics_env({"system_metrics": False}) == {"TVTS_SYSTEM_METRICS": "off"}
