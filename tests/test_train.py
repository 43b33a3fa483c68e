"""The trainer: sampler, schedule, checkpoints, DDP equivalence, preemption and exact resume."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tvts.stages import pretrain
from tvts.train import checkpoint
from tvts.train import pretext, trainer
from tvts.train.preemption import PREEMPTED
from tvts.train.config import OptimConfig, PretrainConfig
from tvts.train.data import ResumableBatchSampler

from conftest import SMOKE

HERE = Path(__file__).parent


def test_sampler_ranks_slice_the_global_batch_and_resume_skips():
    one = list(ResumableBatchSampler(40, 8, rank=0, world=1, seed=3))
    r0 = list(ResumableBatchSampler(40, 4, rank=0, world=2, seed=3))
    r1 = list(ResumableBatchSampler(40, 4, rank=1, world=2, seed=3))
    assert len(one) == len(r0) == len(r1) == 5
    for full, a, b in zip(one, r0, r1):
        assert full == a + b  # the two ranks together see exactly the one-process batch
    s = ResumableBatchSampler(40, 8, seed=3)
    s.set_epoch(0, start_step=3)
    assert list(s) == one[3:]
    s.set_epoch(1)
    assert list(s) != one and sorted(i for b in s for _, i in b) == sorted(i for b in one for _, i in b)
    assert len(ResumableBatchSampler(43, 8, world=2)) == 2  # drops the incomplete global batch


def test_video_epochs_draw_one_window_per_video_afresh_each_epoch():
    groups = [[0, 1, 2], [3], [4, 5], [6, 7, 8, 9], [10, 11]]                  # windows of 5 videos
    video_of = {i: v for v, g in enumerate(groups) for i in g}
    s = ResumableBatchSampler(12, 1, seed=7, groups=groups)
    assert s.steps_per_epoch() == 5                                           # videos, not windows
    epochs = []
    for epoch in range(6):
        s.set_epoch(epoch)
        items = [i for b in s for _, i in b]
        assert sorted(video_of[i] for i in items) == list(range(5))           # each video once
        epochs.append(items)
    assert len({tuple(sorted(e)) for e in epochs}) > 1                        # other windows another epoch
    again = ResumableBatchSampler(12, 1, seed=7, groups=groups)
    again.set_epoch(3, start_step=2)                                          # a pure function of (seed, epoch)
    assert [i for b in again for _, i in b] == epochs[3][2:]
    r0 = ResumableBatchSampler(12, 1, rank=0, world=2, seed=7, groups=groups)
    r1 = ResumableBatchSampler(12, 1, rank=1, world=2, seed=7, groups=groups)
    two = ResumableBatchSampler(12, 2, seed=7, groups=groups)
    assert [a + b for a, b in zip(r0, r1)] == list(two)                       # ranks slice the global batch
    capped = ResumableBatchSampler(12, 1, seed=7, groups=groups, limit=3)
    assert capped.steps_per_epoch() == 3 and len({video_of[i] for b in capped for _, i in b}) == 3


def test_pretraining_epoch_is_one_window_per_video(tmp_path, smoke_shards):
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["pretrain"]["optim"] |= {"epochs": 1, "decay_epochs": [1]}
    cfg["pretrain"]["data"] |= {"batch_size": 1, "eval_batch_size": 4, "epoch": "video"}
    path = tmp_path / "video.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert run_pretrain(smoke_shards, tmp_path / "out", path) == 0
    counts = json.loads((tmp_path / "out/manifest.json").read_text())["counts"]
    assert counts["train_videos"] < counts["train_windows"]
    assert counts["steps_per_epoch"] == counts["steps"] == counts["train_videos"]
    epoch_end = [r for r in map(json.loads, (tmp_path / "out/log.jsonl").read_text().splitlines()) if "epoch" in r]
    perf = epoch_end[-1]                               # the telemetry, logged with each validation
    assert perf["perf/flops_per_sample"] > 0 and 0 < perf["perf/mfu"] and 0 <= perf["perf/data_wait_share"] <= 1
    assert perf["perf/samples_per_s_per_device"] > 0 and perf["perf/step_time_p50_s"] > 0


def lr_factors(cfg: PretrainConfig, steps: int, steps_per_epoch: int = 10) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    factor = pretext.build_scheduler(opt, steps_per_epoch, cfg).lr_lambdas[0]
    return [factor(s) for s in range(steps)]


def test_step_decay_schedule():
    cfg = PretrainConfig(optim=OptimConfig(lr=1.0, epochs=20, decay_epochs=(12, 16), warmup_steps=0))
    f = lr_factors(cfg, 200)
    assert f[0] == f[119] == 1.0 and f[120] == f[159] == pytest.approx(0.1) and f[160] == f[199] == pytest.approx(0.01)
    assert lr_factors(PretrainConfig(optim=OptimConfig(warmup_steps=4)), 5) == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_checkpoints_atomic_newest_valid_and_prune(tmp_path, caplog):
    for step in (2, 4, 6):
        checkpoint.save(tmp_path / checkpoint.step_name(step), {"step": step, "run_key": "k", "complete": False})
    checkpoint.save(tmp_path / checkpoint.epoch_name(0, 5), {"step": 5, "run_key": "k", "complete": False})
    (tmp_path / checkpoint.step_name(8)).write_bytes(b"PK\x03\x04 truncated")        # a half-written file
    checkpoint.save(tmp_path / checkpoint.step_name(7), {"step": 7, "run_key": "other", "complete": False})
    path, state = checkpoint.newest_valid(tmp_path, "k")
    assert path.name == checkpoint.step_name(6) and state["step"] == 6
    assert "skipping unreadable checkpoint" in caplog.text and "different config" in caplog.text
    checkpoint.prune(tmp_path, keep_last=2)
    left = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert left == [checkpoint.epoch_name(0, 5), checkpoint.step_name(7), checkpoint.step_name(8)]   # epoch-end ones are kept
    with pytest.raises(Exception):
        checkpoint.load(tmp_path / checkpoint.step_name(8))
    assert not list(tmp_path.glob(".*.tmp"))


def ddp_runs(tmp_path: Path, gather: str) -> dict[int, dict]:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    results = {}
    for n in (1, 2):
        out = tmp_path / f"{gather}-w{n}.pt"
        proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", str(n), str(HERE / "ddp_grads.py"),
                               str(out), str(HERE), gather], capture_output=True, text=True, timeout=300,
                              env=os.environ | {"OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[n] = torch.load(out, weights_only=True)
    return results


def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    """Same losses (rtol 1e-9) and first-step gradients (atol 1e-10 + rtol 1e-7) as one process on the
    combined batch, over 3 AdamW steps. In float64 (see ddp_grads.py); seen: 1.7e-15 at most."""
    results = ddp_runs(tmp_path, "exact")
    assert results[1]["losses"] == pytest.approx(results[2]["losses"], rel=1e-9)
    assert results[1]["losses"][0] != pytest.approx(results[1]["losses"][2], rel=1e-3)  # training moved
    g1, g2 = results[1]["grads"], results[2]["grads"]
    assert g1.keys() == g2.keys() and any(k.startswith("video.") for k in g1) and any(k.startswith("text.") for k in g1)
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], atol=1e-10, rtol=1e-7, msg=k)


def test_official_gather_gives_one_over_world_of_the_contrastive_gradient(tmp_path):
    """`gather_grad: local` (the official all-gather) on 2 ranks: the same full-batch loss, half its gradient."""
    results = ddp_runs(tmp_path, "local")
    assert results[1]["losses"][0] == pytest.approx(results[2]["losses"][0], rel=1e-9)
    g1, g2 = results[1]["grads"], results[2]["grads"]
    assert g1.keys() == g2.keys() and any(k.startswith("video.") for k in g1) and any(k.startswith("text.") for k in g1)
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k] / 2, atol=1e-10, rtol=1e-7, msg=k)


def train_config(tmp_path: Path, **runtime) -> Path:
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["pretrain"]["optim"] |= {"epochs": 3, "decay_epochs": [2]}
    cfg["pretrain"]["data"] |= {"batch_size": 2, "eval_batch_size": 4}
    cfg["pretrain"]["runtime"] |= {"ckpt_every": 1} | runtime
    cfg["pretrain"]["model"]["text"]["dropout"] = 0.1        # RNG-dependent layers: resume must
    cfg["pretrain"]["model"]["video"]["drop_path"] = 0.1     # restore their random state exactly
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_pretrain(shards: Path, out: Path, cfg: Path, *extra: str) -> int:
    try:
        return pretrain.main(["--shards", str(shards), "--out", str(out), "--config", str(cfg), "--exp", "t",
                              "--cpu", *extra])
    except SystemExit as err:
        return int(err.code)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    manifest = json.loads((out / "manifest.json").read_text())
    return checkpoint.load(out / manifest["outputs"]["epoch_checkpoints"][-1])["model"]


def test_preempted_run_resumes_to_identical_weights(tmp_path, smoke_shards, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    cfg = train_config(tmp_path)
    assert run_pretrain(smoke_shards, tmp_path / "straight", cfg) == 0
    straight = final_weights(tmp_path / "straight")
    manifest = json.loads((tmp_path / "straight/manifest.json").read_text())
    total = manifest["counts"]["steps"]
    assert total >= 6 and len(manifest["outputs"]["epoch_checkpoints"]) == 3

    real_step = trainer.optimizer_step

    def step_then_signal(state, c):  # Slurm's SIGTERM arrives mid-epoch, after step 4
        real_step(state, c)
        if state.step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "optimizer_step", step_then_signal)
    out = tmp_path / "preempted"
    assert run_pretrain(smoke_shards, out, cfg) == PREEMPTED
    assert not (out / "manifest.json").exists()
    assert max(int(p.stem.split("-")[-1]) for p in (out / "ckpt").glob("*.pt")) == 4
    monkeypatch.setattr(trainer, "optimizer_step", real_step)
    (out / "ckpt" / checkpoint.step_name(999)).write_bytes(b"\x80\x02 not a checkpoint")  # newest, corrupt: skipped
    assert run_pretrain(smoke_shards, out, cfg) == 0
    assert "skipping unreadable checkpoint" in caplog.text and "resuming from" in caplog.text
    resumed = final_weights(out)
    for k, v in straight.items():
        assert torch.equal(resumed[k], v), k
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and max(steps) == total  # the log was trimmed, not duplicated


def test_preemption_on_an_epochs_last_step_keeps_that_epoch(tmp_path, smoke_shards, monkeypatch):
    """The signal arrives with the epoch's last step: the epoch is still validated and checkpointed
    as an epoch end before exit 75, and the resumed run matches an uninterrupted one."""
    cfg = train_config(tmp_path)
    assert run_pretrain(smoke_shards, tmp_path / "straight", cfg) == 0
    straight = json.loads((tmp_path / "straight/manifest.json").read_text())
    per_epoch = straight["counts"]["steps_per_epoch"]
    real_step = trainer.optimizer_step

    def step_then_signal(state, c):
        real_step(state, c)
        if state.step == per_epoch:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "optimizer_step", step_then_signal)
    out = tmp_path / "preempted"
    assert run_pretrain(smoke_shards, out, cfg) == PREEMPTED
    assert (out / "ckpt" / checkpoint.epoch_name(0, per_epoch)).exists()
    monkeypatch.setattr(trainer, "optimizer_step", real_step)
    planted = out / "ckpt" / checkpoint.epoch_name(7, 1)
    planted.write_bytes(b"not from this run")
    assert run_pretrain(smoke_shards, out, cfg) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"]["epoch_checkpoints"] == straight["outputs"]["epoch_checkpoints"]   # no planted one
    assert [h["epoch"] for h in manifest["history"]] == [0, 1, 2]
    assert manifest["history"] == straight["history"]
    a, b = final_weights(tmp_path / "straight"), final_weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_completed_run_restarts_fresh(tmp_path, smoke_shards):
    cfg = train_config(tmp_path)
    out = tmp_path / "run"
    assert run_pretrain(smoke_shards, out, cfg) == 0
    first = final_weights(out)
    assert run_pretrain(smoke_shards, out, cfg) == 0  # e.g. `snakemake -R pretrain`
    again = final_weights(out)
    assert all(torch.equal(first[k], again[k]) for k in first)  # same seed, same result
    lines = (out / "log.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)) and json.loads(lines[0])["step"] == 1


def test_text_only_baseline_runs_without_video(tmp_path, smoke_shards):
    cfg = train_config(tmp_path)
    assert run_pretrain(smoke_shards, tmp_path / "txt", cfg, "--text-only") == 0
    manifest = json.loads((tmp_path / "txt/manifest.json").read_text())
    assert manifest["stage"] == "text_only_baseline" and manifest["config"]["text_only"] is True
    last = manifest["history"][-1]
    assert "sort_exact" in last and "v2t_r1" not in last


def test_two_process_torchrun_trains_end_to_end(tmp_path, smoke_shards):
    """The real trainer under torchrun with 2 gloo ranks: spec broadcast, DDP, gathered
    validation, rank-0 checkpoints and manifest, the same number of steps on both ranks."""
    cfg = train_config(tmp_path)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "ddp"
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "tvts.cli", "pretrain",
                           "--shards", str(smoke_shards), "--out", str(out), "--config", str(cfg), "--cpu",
                           "--exp", "t"], capture_output=True, text=True, timeout=600,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    manifest = json.loads((out / "manifest.json").read_text())
    single = yaml.safe_load(cfg.read_text())["pretrain"]["data"]["batch_size"]
    n_train = manifest["counts"]["train_windows"]
    assert manifest["counts"]["world_size"] == 2
    assert manifest["counts"]["steps_per_epoch"] == n_train // (2 * single)
    assert len(manifest["outputs"]["epoch_checkpoints"]) == 3
    assert manifest["history"][-1]["n"] == manifest["counts"]["val_windows"]  # every val window, once
    state = checkpoint.load(out / manifest["outputs"]["epoch_checkpoints"][-1])
    assert state["complete"] and not any(k.startswith("module.") for k in state["model"])
    r0, r1 = (r["torch"] for r in state["rng_ranks"])  # each rank's own dropout stream, saved for resume
    assert not torch.equal(r0, r1)
