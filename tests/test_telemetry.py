"""Throughput telemetry: what the core measures per step, and the perf/* metrics it reports."""
from __future__ import annotations

import time

import pytest
import torch
import torch.nn as nn

from tvts.train import telemetry
from tvts.train.telemetry import Telemetry


def test_flops_of_a_linear_step_are_six_per_weight_per_sample():
    tel, layer = Telemetry(), nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64, requires_grad=True)
    with tel.counting({"x": x}):
        layer(x).sum().backward()       # forward 2*in*out, backward 2*in*out for each of dW and dx
    assert tel.flops_per_sample == 6 * 64 * 32
    with tel.counting({"x": x}):        # counted once per run
        layer(torch.randn(2, 64)).sum().backward()
    assert tel.flops_per_sample == 6 * 64 * 32


def test_compiled_engines_count_three_forwards_without_touching_the_rng():
    tel, layer = Telemetry(compiled=True), nn.Linear(64, 32, bias=False)
    x = torch.randn(4, 64)
    with tel.counting({"x": x}):        # never under a dispatch mode: no count
        layer(x)
    assert tel.flops_per_sample is None
    before = torch.get_rng_state()
    tel.count_forward(lambda: nn.functional.dropout(layer(x), 0.5), n=4)
    assert tel.flops_per_sample == 3 * 2 * 64 * 32 and torch.equal(before, torch.get_rng_state())


def test_summary_splits_step_time_into_waiting_and_computing():
    tel = Telemetry()
    slow = ({"x": torch.zeros(3, 2)} for _ in range(4))

    def loader():
        for batch in slow:
            time.sleep(0.02)
            yield batch

    t_last = time.perf_counter()
    for batch in tel.timed(loader()):
        now = time.perf_counter()
        tel.step_done(now - t_last)
        t_last = now
    out = tel.summary(train_s=7200.0)
    assert len(tel.step_s) == 4 and tel.samples == 12
    assert tel.wait_s >= 4 * 0.02 and tel.wait_s <= sum(tel.step_s)   # waits are inside the steps
    assert out["perf/samples_per_s_per_device"] == pytest.approx(12 / sum(tel.step_s))
    assert out["perf/device_hours"] == 2.0 and out["perf/peak_mem_gb"] > 0
    assert out["perf/step_time_p50_s"] <= out["perf/step_time_p90_s"] <= out["perf/step_time_p99_s"]
    assert "perf/mfu" not in out                                       # no FLOPs counted
    assert Telemetry().summary() == {}                                 # no step: nothing to report


def test_percentile_by_nearest_rank():
    assert telemetry.percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert telemetry.percentile(list(map(float, range(101))), 0.99) == 99.0
    assert telemetry.percentile([], 0.5) != telemetry.percentile([], 0.5)   # nan


def test_peak_flops_is_measured_on_the_device():
    peak = telemetry.measure_peak_flops(torch.device("cpu"), torch.float32)
    assert peak > 1e6 and telemetry.measure_peak_flops(torch.device("cpu"), torch.float32) == peak  # cached
