"""A per-host writer that keeps MLflow imported, so a short stage job need not import it.

Importing `mlflow` and opening a SQLite store cost a fresh process 2-5 s of CPU, against
~0.1 s for the calls a short job makes. So a stage job that has not imported mlflow spools
its run (see `spool`), and when it ends hands the spool file to this agent, which replays
it and answers with the run's id: the run is in the store before the job exits. The first
job of a workflow starts the agent (`agent.main`, in a new session, so it
outlives that job); it serves one tracking URI and spool folder, and exits after
`IDLE_S` without a request. Anything amiss (no agent within `START_S`, no answer within
`ANSWER_S`) and the job replays its file itself, as before.

`TVTS_TRACKING_AGENT=off` turns this off: every job then talks to the store itself.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

AGENT_ENV = "TVTS_TRACKING_AGENT"
IDLE_S = 60.0
START_S = 30.0  # the agent's own mlflow import, on a loaded machine
ANSWER_S = 30.0


def agent_enabled() -> bool:
    return os.environ.get(AGENT_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def address() -> str:
    """The agent's socket (Linux abstract namespace: nothing on disk), one per URI and spool folder."""
    from tvts.tracking.spool import spool_dir
    from tvts.tracking.store import tracking_uri

    key = hashlib.sha1(f"{tracking_uri()}\n{spool_dir()}".encode()).hexdigest()[:24]
    return f"\0tvts-tracking-{key}"


def ask(request: dict) -> dict | None:
    """Send `request` to the agent (starting one if none listens); its answer, or None."""
    sock = _connect()
    if sock is None:
        _spawn()
        deadline = time.monotonic() + START_S
        while sock is None and time.monotonic() < deadline:
            time.sleep(0.1)
            sock = _connect()
    if sock is None:
        return None
    with sock:
        try:
            sock.settimeout(ANSWER_S)
            sock.sendall((json.dumps(request) + "\n").encode())
            line = sock.makefile("r", encoding="utf-8").readline()
        except OSError:
            return None
    return json.loads(line) if line else None


def _connect() -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address())
    except OSError:
        sock.close()
        return None
    return sock


def _spawn() -> None:
    from tvts.tracking.spool import spool_dir

    folder = spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "agent.log", "a") as log:
        subprocess.Popen([sys.executable, "-c", "from tvts.tracking.agent import main; main()"],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)


def answer(request: dict) -> dict:
    """Replay the spool (the requester's file among it); the run's id as the store has it."""
    from tvts.tracking import spool

    spool.LINK.blocked_s = 0.0  # the agent blocks no job: it may keep trying
    spool.replay_spool()
    return {"ok": True, "run_id": spool.resolve_id(request["local_id"]),
            "pending": Path(request["path"]).exists()}


def serve() -> None:
    """Listen until `IDLE_S` pass without a request (or another agent already listens)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(address())
    except OSError:  # another agent won the race
        return
    server.listen(64)
    from tvts.tracking.store import client

    client()  # import mlflow and open the store now, not on the first request
    server.settimeout(IDLE_S)
    while True:
        try:
            conn, _ = server.accept()
        except socket.timeout:
            return
        with conn:
            _serve_one(conn)


def _serve_one(conn: socket.socket) -> None:
    try:
        conn.settimeout(ANSWER_S)
        request = json.loads(conn.makefile("r", encoding="utf-8").readline())
        reply = answer(request)
    except Exception as err:  # noqa: BLE001 - one bad request never ends the agent
        reply = {"ok": False, "error": str(err)[:500]}
    try:
        conn.sendall((json.dumps(reply) + "\n").encode())
    except OSError:
        pass


def main() -> None:
    """The agent's process (started by `ask`)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve()
