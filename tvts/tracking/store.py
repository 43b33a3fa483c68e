"""Where the MLflow store is and how to reach it: URIs, the experiment, retries, key rules.

Everything here is shared by the writers (`runs`) and the readers (`records`). `mlflow`
is imported lazily: it costs seconds and most CLI paths never need it. One client serves a
whole process (building one per call rebuilt the store each time).
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

DEFAULT_URI = "sqlite:///mlflow.db"
PARENT_ENV = "TVTS_PARENT_RUN_ID"
EXPERIMENT_ENV = "TVTS_MLFLOW_EXPERIMENT"
PAPER_CONFIG_ENV = "TVTS_PAPER_CONFIG"  # "true" when the workflow runs the paper config (set in onstart)
COMMIT_ENV = "TVTS_GIT_COMMIT"  # the workflow's commit, set in onstart (jobs may run elsewhere)
DEFAULT_EXPERIMENT = "tvts"
# MLflow's own defaults (7 retries, factor 2, 120 s timeout) block a job for minutes when the
# server is away; these bound one failing call to ~3 s (refused) or ~30 s (black-holed host).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5"}
T = TypeVar("T")


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the SQLite store at the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def is_http(uri: str | None = None) -> bool:
    """A tracking server (http or https), as opposed to a database the client opens itself."""
    return (uri or tracking_uri()).startswith(("http://", "https://"))


def experiment_name() -> str:
    """The MLflow experiment every run goes to: `TVTS_MLFLOW_EXPERIMENT`, else "tvts"."""
    return os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT


def bound_http_retries() -> None:
    """Set tvts's bounded HTTP timeout and retries, leaving any the user set alone."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def client(uri: str | None = None):
    """The process's `MlflowClient` for `uri` (default `tracking_uri()`)."""
    return _client(uri or tracking_uri())


@functools.lru_cache(maxsize=8)
def _client(uri: str):
    bound_http_retries()
    from mlflow import MlflowClient

    with schema_lock(uri):  # building the client opens (and on a fresh file migrates) the store
        made = MlflowClient(tracking_uri=uri)
        made._tracking_client.store  # noqa: B018 - open it now, under the lock
    return made


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for other stores and in-memory ones)."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


@contextlib.contextmanager
def schema_lock(uri: str) -> Iterator[None]:
    """Hold `<db>.lock` while a SQLite store is opened: parallel processes that each find a fresh
    file would otherwise run the schema migration at once ("duplicate column name")."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def retry_if_locked(fn: Callable[[], T], attempts: int = 8) -> T:
    """SQLite allows one writer at a time; parallel jobs retry briefly instead of failing."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as err:  # sqlalchemy's OperationalError surfaces as MlflowException
            if "locked" not in str(err).lower() or i == attempts - 1:
                raise
            time.sleep(0.2 * 2**i)
    raise AssertionError("unreachable")


def is_transient(err: BaseException) -> bool:
    """The store is away or busy (try again later), as opposed to a request it refuses.

    MLflow's REST client reports a refused connection, a timeout and exhausted retries
    alike as "API request to <url> failed ..."; SQLite reports a busy file as "locked".
    """
    text = str(err).lower()
    if "api request to" in text or "database is locked" in text:
        return True
    code = str(getattr(err, "error_code", ""))
    return code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED") or isinstance(err, (ConnectionError,
                                                                                            TimeoutError))


def tracking_off() -> bool:
    """`TVTS_TRACKING=off`: runs are not recorded (benchmarks time the stage, not the store)."""
    return os.environ.get("TVTS_TRACKING") == "off"


def artifact_root() -> Path:
    """Artifacts sit beside a SQLite store (`mlartifacts/`), else under the working directory."""
    path = sqlite_path(tracking_uri())
    return (path.parent / "mlartifacts").resolve() if path else Path("mlartifacts").resolve()


def experiment_id(name: str | None = None) -> str:
    """The id of experiment `name` (default `experiment_name()`), created if absent.

    A tracking server keeps the artifacts in its own store (`mlflow server
    --artifacts-destination`, proxied as `mlflow-artifacts:`); any other store gets
    `artifact_root()`, which a client writes itself.
    """
    return _experiment_id(tracking_uri(), name or experiment_name())


@functools.lru_cache(maxsize=32)
def _experiment_id(uri: str, name: str) -> str:
    mlc = client(uri)
    exp = retry_if_locked(lambda: mlc.get_experiment_by_name(name))
    if exp:
        return exp.experiment_id
    location = None if is_http(uri) else artifact_root().as_uri()
    try:
        return retry_if_locked(lambda: mlc.create_experiment(name, artifact_location=location))
    except Exception as err:  # noqa: BLE001 - a parallel job created it first
        if "already exists" not in str(err).lower():
            raise
        return mlc.get_experiment_by_name(name).experiment_id


def safe_key(key: str) -> str:
    """MLflow keys allow letters, digits, `_-. /` only (config keys can be free text)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", key)[:250]
