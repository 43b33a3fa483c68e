"""Throughput telemetry: what the core measures per step, and the perf/* metrics it reports."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tvts.train import telemetry
from tvts.train.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from train_step import WORDS, paper_config, synthetic_batch  # noqa: E402


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


# --- The FLOP count against a hand-derived one ---------------------------------------------
#
# Per sample, 2·m·n·k per matmul (m x k times k x n). A pre-norm block over n tokens of width d
# with MLP width h runs 6 matmuls forward:
#     qkv 2·n·d·3d, Q·Kᵀ 2·n·n·d, P·V 2·n·n·d (all heads), proj 2·n·d·d, fc1 2·n·d·h, fc2 2·n·h·d.
# Backward is 2x forward for every matmul (the gradient of each operand), except the tubelet
# Conv3d, whose input (the frames) needs none: 1x. The model, per sample:
#     tubelet conv over all T'·N tubelets: 2·T'·N·(3·t·p²)·d
#     video encoder: depth blocks over n_v = 1 + T'·n_keep tokens (mask 0.75: n_keep = N/4)
#     text encoder: K transcripts x depth blocks over L tokens
#     sort head: depth blocks over n_v + K tokens, text_in (a Linear when widths differ), head 2·K·d·K
#     projections: vid_proj 2·d·E, txt_proj 2·K·dt·E; InfoNCE: 2 directions x 2·B·E (per sample)
# The telemetry's count (torch's FlopCounterMode, fused attention backward as its 4 matmuls)
# must lie within 5 % of this. Norms, softmax, GELU and adds are not matmuls and not counted.

def block_flops(n: int, d: int, h: int) -> int:
    return 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * h


def analytic_step_flops(cfg, batch: int) -> tuple[float, float]:
    """(forward, forward + backward) model FLOPs per sample of one TVTS training step."""
    m, v, t = cfg.model, cfg.model.video, cfg.model.text
    n_keep = max(1, int(round(v.patches * (1 - m.mask_ratio))))
    n_v = 1 + v.tubes * n_keep
    conv = 2 * v.tubes * v.patches * (3 * v.tubelet * v.patch_size ** 2) * v.dim
    video = v.depth * block_flops(n_v, v.dim, int(v.dim * v.mlp_ratio))
    text = m.k * t.depth * block_flops(t.max_length, t.dim, t.hidden_dim)
    text_in = 0 if t.dim == v.dim else 2 * m.k * t.dim * v.dim
    sort = m.sort.depth * block_flops(n_v + m.k, v.dim, int(v.dim * m.sort.mlp_ratio)) + 2 * m.k * v.dim * m.k
    proj = 2 * v.dim * m.embed_dim + 2 * m.k * t.dim * m.embed_dim + 2 * 2 * batch * m.embed_dim
    matmuls = video + text + text_in + sort + proj
    return conv + matmuls, 2 * conv + 3 * matmuls


def counted_step_flops(cfg, batch: int) -> tuple[float, float]:
    """(the eager count of one TVTS train step, the compiled engines' 3 x forward), per sample, on
    the CPU (through the fused attention kernels, whose backward the telemetry recounts)."""
    from tvts.train import distributed as dist
    from tvts.train.pretext import losses, run_model

    model, spec = build(cfg, "cpu")
    data = synthetic_batch(cfg, spec, batch, cfg.model.mask_ratio, "cpu")
    env = dist.DistEnv(0, 1, 0, torch.device("cpu"))
    tel = Telemetry()
    with tel.counting(data):
        losses(run_model(model, data), data["order"], cfg, env)["loss"].backward()
    compiled = Telemetry(compiled=True)
    compiled.count_forward(lambda: run_model(model, data), batch)
    return tel.flops_per_sample, compiled.flops_per_sample


def counted_video_sort_flops(cfg, batch: int) -> float:
    """The eager count of a step of the video encoder, sort head and vid_proj alone (transcript
    vectors as inputs), per sample, on the meta device: shapes only, so ViT-B costs no CPU
    minute (its attention is the unfused math path there)."""
    model, spec = build(cfg, "meta")
    data = synthetic_batch(cfg, spec, batch, cfg.model.mask_ratio, "meta")
    text = torch.randn(batch, cfg.model.k, model.text.dim, device="meta")
    tel = Telemetry()
    with tel.counting(data):
        tokens = model.video.forward_features(data["frames"], data["keep"])
        (model.sort_head(tokens, text).sum() + model.vid_proj(tokens[:, 0]).sum()).backward()
    return tel.flops_per_sample


def build(cfg, device: str):
    from tvts.models.load import build_model
    from tvts.models.text import build_spec

    spec = build_spec(cfg.model.text, [" ".join(WORDS)] * 4)
    torch.manual_seed(0)
    with torch.device(device):
        return build_model(cfg, spec).train(), spec


def paper_vit_b():
    return paper_config()   # ViT-B/16 at 16x224², tubelet 2, mask 0.75, + a DistilBERT-base shape


def demo_model():
    from tvts.config import load_sections
    from tvts.train.config import PretrainConfig

    return load_sections({"pretrain": PretrainConfig}, str(ROOT / "config/demo.yaml"))["pretrain"]


def test_flop_count_of_the_papers_vit_b_and_sort_head_matches_the_analytic_count_within_5_percent():
    cfg = paper_vit_b()
    m, v = cfg.model, cfg.model.video
    assert (v.img_size, v.patch_size, v.tubelet, v.num_frames, v.dim, v.depth, m.mask_ratio) == \
        (224, 16, 2, 16, 768, 12, 0.75)
    n_v = 1 + v.tubes * v.patches // 4                       # 1 + 8 x 49 visible tokens
    conv = 2 * v.tubes * v.patches * (3 * v.tubelet * v.patch_size ** 2) * v.dim
    video = v.depth * block_flops(n_v, v.dim, 4 * v.dim)
    sort = m.sort.depth * block_flops(n_v + m.k, v.dim, 4 * v.dim) + 2 * m.k * v.dim * m.k
    analytic = 2 * conv + 3 * (video + sort + 2 * v.dim * m.embed_dim)
    # per sample: 2 x 3.70 (conv) + 3 x (12 x 6.038 (video blocks) + 2 x 6.101 (sort blocks)) GFLOP
    assert analytic == pytest.approx(261.4e9, rel=0.001)
    assert counted_video_sort_flops(cfg, 2) == pytest.approx(analytic, rel=0.05)


def test_flop_count_of_a_whole_demo_step_matches_the_analytic_count_within_5_percent():
    """The demo model (config/demo.yaml), a whole TVTS step: video, text, sort head, projections
    and losses. (The paper's whole step matches too, to the FLOP, but takes a CPU minute.)"""
    cfg = demo_model()
    forward, step = analytic_step_flops(cfg, 2)
    counted, three_forwards = counted_step_flops(cfg, 2)
    assert counted == pytest.approx(step, rel=0.05)
    # Compiled engines count 3 x forward: the conv's input gradient, which no step computes, is
    # its only excess (1.2 % for the paper's model, 3.6 % for the demo's)
    infonce = 2 * 2 * 2 * cfg.model.embed_dim                  # the loss, which a forward does not run
    assert three_forwards == 3 * (forward - infonce)
    assert three_forwards == pytest.approx(step, rel=0.05)
