"""Tracking that never stops a job: while the store does not answer, a run's writes go to an
append-only spool file on disk, and are replayed in order when it answers again.

A run has one spool file, `<spool dir>/<ns>-<pid>-<id>.jsonl`: a header line (the tracking
URI, the run id if the store gave one, else a local id) and then one line per write, in
the order the job made them. A run that could not even be created starts with its
`create` line; at replay it is created then, and `ids.jsonl` maps its local id to the real
one (the workflow's parent run id travels to the jobs, and a checkpoint keeps its run id).

The owner holds an exclusive `flock` on its file while it runs, so only files whose job is
over (finished, or dead) are replayed by others: at the next stage start, or
`replay_spool()`. A replayed op is counted in `<file>.done` before the next one, so a
replay cut short resumes where it stopped.

`LINK` is the process's view of the store: after a failed call it stops calling (it
probes `/health` now and then instead), and it gives up on live calls altogether once
`BLOCK_BUDGET_S` were spent waiting, so tracking never blocks a job for more than ~30 s.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tvts.tracking.store import (artifact_root, client, experiment_id, is_http, is_transient, retry_if_locked,
                                 sqlite_path, tracking_uri)

log = logging.getLogger("tvts.tracking")
SPOOL_ENV = "TVTS_SPOOL_DIR"
DEFAULT_SPOOL = Path("logs") / "tracking-spool"
BLOCK_BUDGET_S = 25.0  # all failed calls and probes of one process together
PROBE_FIRST_S, PROBE_MAX_S, PROBE_TIMEOUT_S = 5.0, 60.0, 2.0
LOCAL_PREFIX = "local-"
MAX_METRICS_PER_CALL = 1000  # MLflow's log_batch limit


def spool_dir() -> Path:
    """`TVTS_SPOOL_DIR`; else beside a SQLite store (`mlartifacts/.tvts-spool/`, with its artifacts),
    else `logs/tracking-spool/` under the working directory (both git-ignored)."""
    if os.environ.get(SPOOL_ENV):
        return Path(os.environ[SPOOL_ENV]).resolve()
    return artifact_root() / ".tvts-spool" if sqlite_path(tracking_uri()) else DEFAULT_SPOOL.resolve()


class Link:
    """Whether this process still talks to the store, and what waiting on it has cost."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self.blocked_s = 0.0
        self.next_probe = 0.0
        self.probe_every = PROBE_FIRST_S

    def failed(self, err: BaseException, spent_s: float) -> None:
        """A call failed after `spent_s` s: warn once per outage, and stop calling until a probe answers."""
        self.blocked_s += spent_s
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.probe_every = PROBE_FIRST_S
            log.warning("MLflow tracking store %s is unreachable (%s); runs, params and metrics are spooled "
                        "to %s and replayed when it answers", tracking_uri(), str(err)[:300], spool_dir())
        self.next_probe = time.monotonic() + self.probe_every
        self.probe_every = min(self.probe_every * 2, PROBE_MAX_S)

    def usable(self) -> bool:
        """True when a live call may be made: the store was not seen away, or a probe now answers."""
        if self.down_since is None:
            return True
        if self.blocked_s >= BLOCK_BUDGET_S or time.monotonic() < self.next_probe:
            return False
        start = time.monotonic()
        ok = probe(tracking_uri())
        if not ok:
            self.failed(RuntimeError("probe"), time.monotonic() - start)
            return False
        log.warning("MLflow tracking store %s answers again after %.0f s; replaying the spool",
                    tracking_uri(), time.monotonic() - self.down_since)
        self.down_since = None
        return True

    def timed(self, fn: Callable[[], Any]) -> tuple[bool, Any]:
        """Call `fn` while the store is usable: (True, result), or (False, None) if it is away."""
        if not self.usable():
            return False, None
        start = time.monotonic()
        try:
            return True, fn()
        except Exception as err:  # noqa: BLE001 - only a store that is away is forgiven
            if not is_transient(err):
                raise
            self.failed(err, time.monotonic() - start)
            return False, None


LINK = Link()
OPEN: dict[str, RunRef] = {}  # this process's runs with an open spool file, by local id


def probe(uri: str) -> bool:
    """A tracking server's `/health` answers within `PROBE_TIMEOUT_S` (no retries); databases: True."""
    if not is_http(uri):
        return True
    import requests

    try:
        return requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S).ok
    except requests.RequestException:
        return False


@dataclass
class RunRef:
    """A run as a job writes it: its id once the store gave one, and its spool file while it has one."""

    run_id: str | None
    local_id: str = field(default_factory=lambda: LOCAL_PREFIX + uuid.uuid4().hex)
    path: Path | None = None
    deferred_until: float | None = None  # until then every write goes to the spool (see `agent`)
    timer: threading.Timer | None = None  # ends the deferral of a job that runs long
    lock: threading.RLock = field(default_factory=threading.RLock)  # the system-metrics thread writes too
    _file: Any = None

    @property
    def id(self) -> str:
        """The id to hand out: the store's, else the local one."""
        return self.run_id or self.local_id

    def send(self, op: dict) -> None:
        """Write `op` to the store, or to the spool while the store is away or older ops wait there."""
        with self.lock:
            if self.deferred_until is not None and time.monotonic() < self.deferred_until:
                self._spool(op)
                return
            self.deferred_until = None  # a long job: it talks to the store itself from now on
            if self.path is not None and LINK.usable():
                replay_spool(own=self)
            if self.path is None:
                done, _ = LINK.timed(lambda: retry_if_locked(lambda: _apply(self, op)))
                if done:
                    return
            self._spool(op)

    def defer(self, seconds: float) -> None:
        """Spool every write for `seconds`; then (or at the first write after) talk to the store."""
        self.deferred_until = time.monotonic() + seconds
        self.timer = threading.Timer(seconds, self.go_live)  # a silent long job still shows up RUNNING
        self.timer.daemon = True
        self.timer.start()

    def go_live(self) -> None:
        """Stop deferring: replay what waits in the spool now, if the store answers."""
        if self.timer is not None and self.timer is not threading.current_thread():
            self.timer.cancel()
        with self.lock:
            if self.deferred_until is not None:
                self.deferred_until = None
                if self.path is not None and LINK.usable():
                    replay_spool(own=self)

    def _spool(self, op: dict) -> None:
        if self._file is None:
            folder = spool_dir()
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / f"{time.time_ns()}-{os.getpid()}-{self.id}.jsonl"
            self._file = open(self.path, "a", encoding="utf-8")
            fcntl.flock(self._file, fcntl.LOCK_EX)  # ours while the job runs: nobody else replays it
            OPEN[self.local_id] = self
            header = {"uri": tracking_uri(), "run_id": self.run_id, "local_id": self.local_id}
            self._file.write(json.dumps(header) + "\n")
        self._file.write(json.dumps(op) + "\n")
        self._file.flush()  # a job killed next still leaves it on disk

    @classmethod
    def adopt(cls, local_id: str) -> RunRef | None:
        """Take over the spool file of a run that is still only local (its job is over), or None."""
        found = [p for p in pending_files() if p.stem.endswith(local_id)]
        if not found:
            return None
        ref = cls(None, local_id, found[0])
        ref._file = open(found[0], "a", encoding="utf-8")
        fcntl.flock(ref._file, fcntl.LOCK_EX)
        return ref

    def release(self) -> None:
        """The job is over: let the next stage start (or `replay_spool`) replay what is left."""
        with self.lock:
            OPEN.pop(self.local_id, None)
            if self._file is not None:
                self._file.close()
                self._file = None


def merge_metrics(ops: list[dict]) -> list[tuple[dict, int]]:
    """(op, how many ops it stands for): runs of metric-only batches joined up to MLflow's limit."""
    out: list[tuple[dict, int]] = []
    for op in ops:
        prev, n = out[-1] if out else (None, 0)
        if (prev is not None and _metrics_only(op) and _metrics_only(prev)
                and len(prev["metrics"]) + len(op["metrics"]) <= MAX_METRICS_PER_CALL):
            out[-1] = ({"op": "batch", "metrics": prev["metrics"] + op["metrics"]}, n + 1)
        else:
            out.append((op, 1))
    return out


def _metrics_only(op: dict) -> bool:
    return op["op"] == "batch" and set(op) == {"op", "metrics"}


def _apply(ref: RunRef, op: dict) -> None:
    from mlflow.entities import Metric, Param, RunTag

    mlc = client()
    kind = op["op"]
    if kind == "create":
        tags = {k: resolve_id(v) if k == "mlflow.parentRunId" else v for k, v in op["tags"].items()}
        run = mlc.create_run(experiment_id(op["experiment"]), start_time=op["start"], tags=tags)
        ref.run_id = run.info.run_id
        if ref.path is not None:  # created from the spool: later references to the local id resolve
            _remember(ref.local_id, ref.run_id)
    elif kind == "batch":
        mlc.log_batch(ref.run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in op.get("metrics", [])],
                      params=[Param(k, v) for k, v in op.get("params", {}).items()],
                      tags=[RunTag(k, v) for k, v in op.get("tags", {}).items()])
    elif kind == "status":
        mlc.update_run(ref.run_id, status=op["status"])
    elif kind == "end":
        mlc.set_terminated(ref.run_id, op["status"], end_time=op["end"])
    elif kind == "artifact":
        _apply_artifact(mlc, ref, op)
    elif kind == "register":
        register(mlc, ref.run_id, op)
    else:
        raise ValueError(f"unknown spooled op {kind!r}")


def _apply_artifact(mlc, ref: RunRef, op: dict) -> None:
    if not Path(op["path"]).exists():  # removed since: the metrics and status still count
        log.warning("spooled artifact %s of run %s no longer exists; skipped", op["path"], ref.id)
        return
    mlc.log_artifact(ref.run_id, op["path"], op.get("artifact_path"))


def register(mlc, run_id: str, op: dict) -> str:
    """Log `op["path"]` under the run's `model/` artifacts and register that folder as a new
    version of model `op["name"]`, with alias `op["alias"]` on it. Returns the version."""
    from mlflow.exceptions import MlflowException

    mlc.log_artifact(run_id, op["path"], "model")
    source = f"{mlc.get_run(run_id).info.artifact_uri}/model"  # a folder: `models:/name@alias` downloads it
    try:
        mlc.create_registered_model(op["name"])
    except MlflowException as err:
        if "already exists" not in str(err).lower():
            raise
    version = mlc.create_model_version(op["name"], source, run_id=run_id, tags=op["tags"])
    mlc.set_registered_model_alias(op["name"], op["alias"], version.version)
    return str(version.version)


def _ids_file() -> Path:
    return spool_dir() / "ids.jsonl"


def _remember(local_id: str, run_id: str) -> None:
    folder = spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(_ids_file(), "a", encoding="utf-8") as f:
        f.write(json.dumps({"local": local_id, "run_id": run_id}) + "\n")


def resolve_id(run_id: str) -> str:
    """The store's id for a run created from the spool under a local id (others unchanged)."""
    if not run_id or not run_id.startswith(LOCAL_PREFIX) or not _ids_file().exists():
        return run_id
    with open(_ids_file(), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["local"] == run_id:
                return row["run_id"]
    return run_id


def pending_files() -> list[Path]:
    """This store's spool files, oldest first (a parent run's before its children's)."""
    folder = spool_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.jsonl") if p.name != "ids.jsonl")


def replay_spool(own: RunRef | None = None) -> int:
    """Replay every spool file of this store whose job is over (and `own`, this job's run).

    Returns:
        How many ops reached the store.
    """
    applied = 0
    for path in pending_files():
        if own is not None and path == own.path:
            n, complete = _replay_own(own)
        else:
            n, complete = _replay_other(path)
        applied += n
        if not complete:
            break  # the store went away again: keep the order, try later
    return applied


def _replay_own(ref: RunRef) -> tuple[int, bool]:
    n, complete = _replay_file(ref.path, ref)
    if complete:
        ref.release()
        ref.path = None
    return n, complete


def _replay_other(path: Path) -> tuple[int, bool]:
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:  # replayed by another process meanwhile
        return 0, True
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its job still runs (or another process replays it)
            return 0, True
        header = json.loads(f.readline() or "{}")
        if not path.exists() or header.get("uri") != tracking_uri():
            return 0, True
        ref = RunRef(header.get("run_id") or resolve_id(header["local_id"]), header["local_id"], path)
        return _replay_file(path, ref)


def _replay_file(path: Path, ref: RunRef) -> tuple[int, bool]:
    """Apply the file's ops from where the last replay stopped; delete it when all are in.

    Returns:
        (ops applied, whether the file is done).
    """
    done_path = path.with_suffix(".done")
    done = json.loads(done_path.read_text()) if done_path.exists() else {"n": 0, "run_id": None}
    ref.run_id = done["run_id"] or ref.run_id
    with open(path, encoding="utf-8") as f:
        ops = [json.loads(line) for line in f.readlines()[1:] if line.endswith("\n")]  # a torn last line waits
    applied = 0
    for group, n in merge_metrics(ops[done["n"]:]):
        if not _replay_op(ref, group):
            return applied, False
        applied += n
        done = {"n": done["n"] + n, "run_id": ref.run_id}
        done_path.write_text(json.dumps(done))  # before the next op: a cut replay never repeats one
    path.unlink()
    done_path.unlink(missing_ok=True)
    return applied, True


def _replay_op(ref: RunRef, op: dict) -> bool:
    """False while the store is away; an op the store refuses is logged and passed over."""
    try:
        ok, _ = LINK.timed(lambda: retry_if_locked(lambda: _apply(ref, op)))
    except Exception as err:  # noqa: BLE001 - one refused op must not hold back the rest
        log.warning("the store refused spooled %s op of run %s (%s); skipped", op["op"], ref.id, str(err)[:300])
        return True
    return ok
