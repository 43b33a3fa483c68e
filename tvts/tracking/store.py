"""Where the MLflow store is and how to reach it: URIs, the experiment, retries, key rules.

Everything here is shared by the writers (`runs`) and the readers (`records`). `mlflow`
is imported lazily: it costs seconds and most CLI paths never need it.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable, TypeVar

DEFAULT_URI = "sqlite:///mlflow.db"
PARENT_ENV = "TVTS_PARENT_RUN_ID"
EXPERIMENT_ENV = "TVTS_MLFLOW_EXPERIMENT"
PAPER_CONFIG_ENV = "TVTS_PAPER_CONFIG"  # "true" when the workflow runs the paper config (set in onstart)
COMMIT_ENV = "TVTS_GIT_COMMIT"  # the workflow's commit, set in onstart (jobs may run elsewhere)
DEFAULT_EXPERIMENT = "tvts"
T = TypeVar("T")


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the SQLite store at the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def experiment_name() -> str:
    """The MLflow experiment every run goes to: `TVTS_MLFLOW_EXPERIMENT`, else "tvts"."""
    return os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT


def connect_mlflow():
    """The `mlflow` module, pointed at `tracking_uri()` (the writers' way in)."""
    import mlflow  # imported lazily: it costs seconds and most CLI paths never need it

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


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


def tracking_off() -> bool:
    """`TVTS_TRACKING=off`: runs are not recorded (benchmarks time the stage, not the store)."""
    return os.environ.get("TVTS_TRACKING") == "off"


def artifact_root() -> Path:
    """Artifacts sit beside a SQLite store (`mlartifacts/`), else under the working directory."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve()
    return Path("mlartifacts").resolve()


def init_store(name: str | None = None) -> str:
    """Create the store (running its schema migration once) and the experiment.

    Called from the Snakefile's `onstart`, before any job: parallel jobs that first
    touch a new SQLite store race on the migration.

    Returns:
        The experiment id.
    """
    mlflow = connect_mlflow()
    name = name or experiment_name()
    artifacts = artifact_root().as_uri()
    exp = mlflow.get_experiment_by_name(name)
    return exp.experiment_id if exp else mlflow.create_experiment(name, artifact_location=artifacts)


def safe_key(key: str) -> str:
    """MLflow keys allow letters, digits, `_-. /` only (config keys can be free text)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", key)[:250]
