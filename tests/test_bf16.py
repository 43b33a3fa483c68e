"""`amp: bf16` on the CPU: every training stage trains in bf16 autocast, tracks its float32 run,
and keeps float32 weights, optimiser states and losses; evaluation features match float32.

Tolerances (measured on the smoke configs, with room):
  * a training stage's per-step (fine-tuning: per-epoch) train loss within 3 % of the float32
    run's (measured: < 0.5 %);
  * evaluation CLS features within 3 % of float32 in relative L2 norm, cosine > 0.999 per clip
    (bf16 keeps 8 mantissa bits: ~0.4 % per rounding, not compounding much over a few blocks).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from tvts.eval.features import encode_views
from tvts.models.tvts import contrastive_loss, sort_loss
from tvts.stages import eval_finetune, post_pretrain
from tvts.train import checkpoint, precision
from tvts.train import distributed as dist

from conftest import SMOKE
from test_eval_finetune import corpus, eval_section, run_stage, tiny_checkpoint  # noqa: F401 (fixtures)
from test_models import tiny_model
from test_post_pretrain import pairs  # noqa: F401 (fixture)
from test_train import run_pretrain, train_config

TRACK = 0.03   # relative: a bf16 loss against the float32 run's at the same step


def train_losses(out: Path, key: str = "train/loss") -> list[float]:
    return [r[key] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if key in r]


def assert_tracks(bf16: list[float], fp32: list[float]) -> None:
    assert len(bf16) == len(fp32) >= 2
    assert all(torch.isfinite(torch.tensor(bf16)))
    assert bf16[-1] < bf16[0]                                      # it learns
    for b, f in zip(bf16, fp32):
        assert b == pytest.approx(f, rel=TRACK)


def assert_float32(state: dict) -> None:
    """Every floating tensor of a checkpoint's weights and optimiser state is float32."""
    floats = [v for v in state["model"].values() if v.is_floating_point()]
    floats += [v for s in state["optimizer"]["state"].values() for v in s.values()
               if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() > 0]
    assert floats and {v.dtype for v in floats} == {torch.float32}


def test_bf16_autocasts_on_this_cpu_and_an_unsupported_device_says_so_once_and_uses_float32(caplog):
    caplog.set_level(logging.WARNING)
    assert precision.autocast_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with dist.autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert precision.autocast_dtype(torch.device("cpu"), "off") is None
    meta = torch.device("meta")          # no autocast for this device type in torch
    assert precision.autocast_dtype(meta, "bf16") is None and precision.autocast_dtype(meta, "bf16") is None
    said = [r.getMessage() for r in caplog.records if "autocast does not support" in r.getMessage()]
    assert said == ["amp bf16: this torch's autocast does not support torch.bfloat16 on meta; training in float32"]


def test_losses_run_in_float32_under_autocast():
    torch.manual_seed(0)
    v, t = (torch.nn.functional.normalize(torch.randn(8, 16), dim=-1) for _ in range(2))
    logits, order = torch.randn(8, 4, 4), torch.stack([torch.randperm(4) for _ in range(8)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = contrastive_loss(v, t, v, t, 0, 0.05), sort_loss(logits, order)
    outside = contrastive_loss(v, t, v, t, 0, 0.05), sort_loss(logits, order)
    for a, b in zip(inside, outside):
        assert a.dtype == torch.float32 and torch.equal(a, b)       # not one bf16 matmul in them


def test_pretraining_in_bf16_tracks_float32_and_keeps_float32_state(tmp_path, smoke_shards):
    runs = {}
    for amp in ("off", "bf16"):
        out = tmp_path / amp
        assert run_pretrain(smoke_shards, out, train_config(tmp_path, amp=amp)) == 0
        runs[amp] = out
    assert_tracks(train_losses(runs["bf16"]), train_losses(runs["off"]))
    manifest = json.loads((runs["bf16"] / "manifest.json").read_text())
    assert_float32(checkpoint.load(runs["bf16"] / manifest["outputs"]["epoch_checkpoints"][-1]))


def test_post_pretraining_in_bf16_tracks_float32_and_keeps_float32_state(tmp_path, pairs):  # noqa: F811
    parts, init = pairs
    runs = {}
    for amp in ("off", "bf16"):
        raw = yaml.safe_load(SMOKE.read_text())
        raw["post_pretrain"]["runtime"]["amp"] = amp
        cfg = tmp_path / f"{amp}.yaml"
        cfg.write_text(yaml.safe_dump(raw))
        out = tmp_path / amp
        assert post_pretrain.main(["--init", str(init), "--pairs", *map(str, parts), "--out", str(out / "post"),
                                   "--select", str(out / "select"), "--config", str(cfg), "--exp", "t-post",
                                   "--cpu"]) == 0
        runs[amp] = out / "post"
    assert_tracks(train_losses(runs["bf16"], "train/loss_align"), train_losses(runs["off"], "train/loss_align"))
    last = sorted((runs["bf16"] / "ckpt").glob("epoch-*.pt"))[-1]
    assert_float32(checkpoint.load(last))


def test_finetuning_in_bf16_tracks_float32_and_keeps_float32_state(tmp_path, corpus, tiny_checkpoint):  # noqa: F811
    history = {}
    for amp in ("off", "bf16"):
        section = eval_section(corpus, {"amp": amp, "epochs": 3, "warmup_epochs": 0, "lr": 0.02})
        out = tmp_path / amp / "ssv2.json"
        assert run_stage(eval_finetune, tiny_checkpoint, "ssv2", out, tmp_path / amp / "work", section,
                         exp=f"bf16-{amp}") == 0    # its own experiment: fttest's run counts stay fttest's
        res = json.loads(out.read_text())
        history[amp] = [h["train/loss"] for h in res["history"]]
        assert res["recipe"]["amp"] == ("torch.bfloat16" if amp == "bf16" else "off")
    assert_tracks(history["bf16"], history["off"])
    assert_float32(checkpoint.load(checkpoint.epoch_checkpoints(tmp_path / "bf16" / "work" / "ckpt")[-1]))


def test_evaluation_features_in_bf16_match_float32():
    torch.manual_seed(0)
    model = tiny_model().eval()
    v = model.cfg.video
    frames = torch.randn(6, 2, 3, v.num_frames, v.img_size, v.img_size)      # (B, V, 3, T, S, S)
    fp32, bf16 = encode_views(model.video, frames, "off"), encode_views(model.video, frames, "bf16")
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)      # bf16 did run
    assert (bf16 - fp32).norm() / fp32.norm() < 0.03
    assert torch.nn.functional.cosine_similarity(bf16, fp32, dim=-1).min() > 0.999
