"""MLflow's system metrics (CPU, memory, disk, network; GPU utilisation and memory through
`nvidia-ml-py`) for every stage run, behind a switch.

    TVTS_SYSTEM_METRICS=on               sample while a stage run is open (default off)
    TVTS_SYSTEM_METRICS_INTERVAL=10      seconds between samples
    MLFLOW_SYSTEM_METRICS_NODE_ID=...    the node's name in the keys (default: `node<rank>` on a
                                         multi-node job, none on one node)

Keys are MLflow's: `system/cpu_utilization_percentage`, `system/gpu_0_utilization_percentage`,
... (`system/<node>/...` with a node id). The samples go through the run's own writer, so
they are spooled like any metric while the store is away (MLflow's own loop would stop at
the first failed `get_run`).
"""
from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("tvts.tracking")
SWITCH_ENV = "TVTS_SYSTEM_METRICS"
INTERVAL_ENV = "TVTS_SYSTEM_METRICS_INTERVAL"
DEFAULT_INTERVAL_S = 10.0


def system_metrics_enabled() -> bool:
    """`TVTS_SYSTEM_METRICS` is on (on, true, 1, yes)."""
    return os.environ.get(SWITCH_ENV, "").strip().lower() in ("on", "true", "1", "yes")


def system_metrics_env(section: dict) -> dict[str, str]:
    """The environment that turns a workflow config's `tracking.system_metrics` (and its
    `system_metrics_interval`) into every job's switch; {} where the config leaves them unset."""
    env = {}
    if "system_metrics" in section:
        env[SWITCH_ENV] = "on" if section["system_metrics"] else "off"
    if "system_metrics_interval" in section:
        env[INTERVAL_ENV] = str(float(section["system_metrics_interval"]))
    return env


def sampling_interval() -> float:
    """`TVTS_SYSTEM_METRICS_INTERVAL` in seconds (default 10)."""
    return float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL_S)


def node_id() -> str | None:
    """`node<rank>` when the job spans several nodes (torchrun's GROUP_RANK, else Slurm's
    SLURM_NODEID), so each node's curves stay apart; None on one node.
    `MLFLOW_SYSTEM_METRICS_NODE_ID` overrides it (MLflow reads that itself)."""
    world, local_world = os.environ.get("WORLD_SIZE"), os.environ.get("LOCAL_WORLD_SIZE")
    multi = (world and local_world and world != local_world) or int(os.environ.get("SLURM_NNODES", "1")) > 1
    if not multi:
        return None
    rank = os.environ.get("GROUP_RANK") or os.environ.get("SLURM_NODEID")
    return f"node{rank}" if rank is not None else socket.gethostname()


def start_system_metrics(handle, resumed: bool = False):
    """Start sampling for the stage run `handle` (a `StageRun`) when the switch is on, on the
    node's first process only (LOCAL_RANK 0). Returns the monitor (call `finish()`), or None."""
    if not system_metrics_enabled() or os.environ.get("LOCAL_RANK", "0") != "0":
        return None
    try:
        monitor = _monitor_class()(handle, sampling_interval(), node_id(), resumed)
    except Exception as err:  # noqa: BLE001 - a missing psutil never fails a stage
        log.warning("system metrics are off for this run: %s", err)
        return None
    monitor.start()
    return monitor


def _monitor_class():
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    from tvts.tracking.store import tracking_uri

    class RunMonitor(SystemMetricsMonitor):
        """MLflow's monitor, publishing through the stage run's writer."""

        def __init__(self, handle, interval: float, node: str | None, resumed: bool):
            super().__init__(handle.ref.run_id or "", sampling_interval=interval, node_id=node,
                             tracking_uri=tracking_uri(), resume_logging=resumed and bool(handle.ref.run_id))
            self._handle = handle

        def monitor(self) -> None:
            """Sample every interval; publish every `samples_before_logging` samples, and at the end."""
            while not self._shutdown_event.is_set():
                for _ in range(self.samples_before_logging):
                    self.collect_metrics()
                    if self._shutdown_event.wait(self.sampling_interval):
                        break
                try:
                    self.publish_metrics(self.aggregate_metrics())
                except Exception as err:  # noqa: BLE001 - a sample lost is no reason to stop sampling
                    log.warning("system metrics sample not logged: %s", err)

        def publish_metrics(self, metrics: dict) -> None:
            prefix = self._metrics_prefix + (self.node_id + "/" if self.node_id else "")
            self._handle.log_metrics({prefix + k: v for k, v in metrics.items()}, step=self._logging_step)
            self._logging_step += 1
            for monitor in self.monitors:
                monitor.clear_metrics()

    return RunMonitor
