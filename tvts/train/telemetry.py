"""Where a training run's time went and what it cost: the `perf/*` metrics of every training stage.

The core (`trainer.run_epoch`) times each optimiser step and the part of it spent waiting for
the loader, and counts the model FLOPs of the run's first micro-batch (forward and backward,
`torch.utils.flop_counter`). From these, per device:

    perf/samples_per_s_per_device   samples trained / training wall time
    perf/data_wait_share            share of step time spent in `next(loader)`
    perf/step_time_p50_s, _p90_s, _p99_s
    perf/flops_per_sample           forward + backward, counted once per run
    perf/peak_tflops                the device's matmul throughput, measured in this process
    perf/mfu                        flops_per_sample x samples/s / peak_tflops
    perf/peak_mem_gb                CUDA: max allocated; CPU: the process's peak RSS
    perf/device_hours               training wall time x devices, over resumed runs

MFU here is against the *measured* peak (a large matmul in the training dtype), not the
datasheet: it says how much of what this device actually delivers the model used.

The count is of *model* FLOPs, 2·m·n·k per matmul of the forward pass and of the gradients
autograd computes: a fused attention kernel's backward is counted as its 4 matmuls (dV, dP,
dQ, dK), without the recomputation of Q·Kᵀ that torch's own formula adds (that would be
hardware FLOPs, and would make MFU depend on which kernel ran). tests/test_telemetry.py checks
the count against a hand-derived one for the paper's ViT-B and the demo model.
"""
from __future__ import annotations

import contextlib
import logging
import resource
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import torch

log = logging.getLogger("tvts.train.telemetry")
_PEAK_CACHE: dict[tuple[str, torch.dtype], float] = {}


def batch_size(batch: Any) -> int:
    """Samples in a micro-batch: the leading size of its first tensor."""
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else [batch]
    for v in values:
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return int(v.shape[0])
    return 0


def flop_counter():
    """torch's FlopCounterMode with every fused attention backward counted as model FLOPs: torch
    counts 5 equal matmuls (Q·Kᵀ recomputed, dV, dP, dQ, dK), the model has the last 4 (with
    equal query and value head sizes, as in every ViT and BERT, that is 4/5 of torch's count)."""
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    def model_flops(formula):
        def count(*args, **kwargs) -> int:
            return formula(*args, **kwargs) * 4 // 5
        count._get_raw = True   # `formula` is the registry's, already shape-wrapped where it needs to be
        return count

    backward = {op: model_flops(f) for op, f in flop_registry.items()
                if str(op).startswith("aten.") and "attention" in str(op) and str(op).endswith("backward")}
    return FlopCounterMode(display=False, custom_mapping=backward)


def measure_peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of the best of a few square matmuls on `device` (cached per process)."""
    key = (str(device), dtype)
    if key not in _PEAK_CACHE:
        n = 4096 if device.type == "cuda" else 512
        a = torch.full((n, n), 0.5, device=device, dtype=dtype)  # no RNG draw: training's streams stay put
        b = torch.full((n, n), 0.25, device=device, dtype=dtype)
        best = float("inf")
        for _ in range(5):
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(4):
                a @ b
            _sync(device)
            best = min(best, (time.perf_counter() - t0) / 4)
        _PEAK_CACHE[key] = 2 * n**3 / best
    return _PEAK_CACHE[key]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_dtype(device: torch.device, amp: str | None) -> torch.dtype:
    """The dtype the matmuls run in: the autocast dtype where it runs (CUDA or CPU), else float32."""
    from tvts.train.precision import autocast_dtype

    return autocast_dtype(device, amp) or torch.float32


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, by nearest rank (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


@dataclass
class Telemetry:
    """Step timing, data wait and FLOPs of one process's share of a run (not checkpointed)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    world: int = 1
    amp: str | None = None
    step_s: list[float] = field(default_factory=list)  # wall time of each optimiser step
    wait_s: float = 0.0            # of which spent waiting for batches (cumulative)
    samples: int = 0               # samples this process trained
    flops_per_sample: float | None = None
    compiled: bool = False         # the engine is torch.compile'd: never count its steps
    _step_wait: float = 0.0

    def timed(self, batches: Iterable) -> Iterator:
        """`batches`, with the time spent fetching each added to the wait."""
        it = iter(batches)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self._step_wait += time.perf_counter() - t0
            self.samples += batch_size(batch)
            yield batch

    @contextlib.contextmanager
    def counting(self, batch: Any) -> Iterator[None]:
        """Count the FLOPs of the enclosed micro-step, once per run (a no-op afterwards, and for
        compiled engines: see `count_forward`)."""
        if self.flops_per_sample is not None or self.compiled:
            yield
            return
        counter = flop_counter()
        with counter:
            yield
        n = batch_size(batch)
        self.flops_per_sample = counter.get_total_flops() / n if n else 0.0

    def count_forward(self, forward, n: int) -> None:
        """Count FLOPs as 3x one `forward()` of `n` samples (backward ~ 2x forward), without
        touching training: no grad, the RNG streams forked. For compiled engines, which must not
        run under a dispatch mode (it drops them to eager for good)."""
        devices = [self.device] if self.device.type == "cuda" else []
        counter = flop_counter()
        with torch.random.fork_rng(devices=devices), torch.no_grad(), counter:
            forward()
        self.flops_per_sample = 3 * counter.get_total_flops() / max(1, n)

    def step_done(self, seconds: float) -> None:
        self.step_s.append(seconds)
        self.wait_s += self._step_wait
        self._step_wait = 0.0

    def summary(self, train_s: float | None = None) -> dict[str, float]:
        """The `perf/*` metrics so far (`train_s`: training wall time over resumed runs); {} before
        this process has trained a step (e.g. a finished run that only evaluates)."""
        if not self.step_s:
            return {}
        busy = sum(self.step_s)
        out = {"perf/samples_per_s_per_device": self.samples / busy,
               "perf/data_wait_share": min(1.0, self.wait_s / busy),
               "perf/peak_mem_gb": peak_memory_gb(self.device),
               "perf/device_hours": (train_s if train_s is not None else busy) * self.world / 3600}
        for q in (50, 90, 99):
            out[f"perf/step_time_p{q}_s"] = percentile(self.step_s, q / 100)
        if self.flops_per_sample:
            peak = measure_peak_flops(self.device, train_dtype(self.device, self.amp))
            out |= {"perf/flops_per_sample": self.flops_per_sample, "perf/peak_tflops": peak / 1e12,
                    "perf/mfu": self.flops_per_sample * out["perf/samples_per_s_per_device"] / peak}
        return out
