"""The VideoMAE baseline: shared tube masks, pixel targets in token order, masked-only loss,
training, checkpoints, config errors and a tiny end-to-end run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from tvts.config import ConfigError, from_dict, load_yaml
from tvts.io import dumps
from tvts.models.sort_head import SortConfig
from tvts.models.text import TextConfig, build_spec
from tvts.models.tvts import TVTS, ModelConfig
from tvts.models.video_vit import PIXEL_MEAN, PIXEL_STD, VideoConfig, VideoViT, tube_keep_indices
from tvts.models.videomae import VideoMAEConfig, masked_indices, recon_targets, sincos_3d
from tvts.models.load import build_model, model_from_state
from tvts.select import SelectConfig, pick, score
from tvts.stages import pretrain
from tvts.train import checkpoint
from tvts.train import distributed as dist
from tvts.train import pretext
from tvts.train.pretrain import text_only_variant
from tvts.train.config import OptimConfig, PretrainConfig
from tvts.train.data import WindowDataset

from conftest import SMOKE

TINY = VideoConfig(img_size=32, patch_size=8, tubelet=2, num_frames=8, dim=32, depth=1, heads=2)  # 4 tubes x 16
MAE = VideoMAEConfig(decoder_dim=24, decoder_depth=1, decoder_heads=2)
TEXTS = ["the red circle moves left", "a blue square appears", "the green bar shrinks", "um so the purple ring"]
CPU = dist.DistEnv(0, 1, 0, torch.device("cpu"))


def tiny_cfg(**model) -> PretrainConfig:
    text = TextConfig(model="scratch", max_length=12, vocab_size=300, dim=32, depth=1, heads=2, hidden_dim=64,
                      dropout=0.0)
    m = ModelConfig(video=TINY, text=text, sort=SortConfig(depth=1, heads=2), embed_dim=16, **model)
    return PretrainConfig(method="videomae", model=m, videomae=MAE, optim=OptimConfig(lr=3e-3))


def tiny_model(cfg: PretrainConfig) -> TVTS:
    torch.manual_seed(0)
    return build_model(cfg, build_spec(cfg.model.text, TEXTS * 5), load_pretrained_text=False)


def keeps(b: int, ratio: float, kind: str, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.stack([torch.from_numpy(tube_keep_indices(rng, TINY.tubes, TINY.patches, ratio, kind))
                        for _ in range(b)])


def text_inputs(b: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(b, 4, 12, dtype=torch.long), torch.ones(b, 4, 12, dtype=torch.long)


# ---- masks --------------------------------------------------------------------------------------

def test_shared_mask_is_one_spatial_mask_for_every_tube():
    rng = np.random.default_rng(0)
    samples = [tube_keep_indices(rng, 8, 196, 0.9, "shared") for _ in range(5)]
    for keep in samples:
        assert keep.shape == (8, round(196 * 0.1)) and keep.dtype == np.int64
        assert (keep == keep[:1]).all()                      # the same patches in every tube
        assert len(set(keep[0].tolist())) == keep.shape[1] and (np.diff(keep[0]) > 0).all()
    assert len({tuple(k[0].tolist()) for k in samples}) == 5  # but a new mask per sample


def test_per_tube_mask_is_unchanged():
    """The default draws exactly what it drew before `kind` existed: old runs' masks stay the same."""
    got = tube_keep_indices(np.random.default_rng(7), 8, 196, 0.75)
    ref = np.sort(np.argsort(np.random.default_rng(7).random((8, 196)), axis=1)[:, :49], axis=1)
    assert np.array_equal(got, ref) and len({tuple(t) for t in got.tolist()}) == 8
    with pytest.raises(ValueError, match="mask kind"):
        tube_keep_indices(np.random.default_rng(0), 8, 196, 0.75, "random")


def test_masked_indices_are_the_complement():
    keep = keeps(3, 0.75, "per_tube")
    hidden = masked_indices(keep, TINY.patches)
    assert hidden.shape == (3, 4, 12)
    for b, t in np.ndindex(3, 4):
        assert sorted(keep[b, t].tolist() + hidden[b, t].tolist()) == list(range(16))
        assert hidden[b, t].tolist() == sorted(hidden[b, t].tolist())


def test_dataset_draws_the_configured_mask_kind(smoke_shards):
    view = pretext.view_config(tiny_cfg(mask_kind="shared", mask_ratio=0.5))
    assert view.mask_kind == "shared" and view.frames
    ds = WindowDataset(smoke_shards, "train", view, build_spec(TextConfig(model="scratch"), TEXTS * 5), seed=0)
    keep = ds[(0, 0)]["keep"]
    assert keep.shape == (4, 8) and (keep == keep[:1]).all()
    per_tube = WindowDataset(smoke_shards, "train", replace(view, mask_kind="per_tube"), ds.spec, seed=0)
    assert len({tuple(t.tolist()) for t in per_tube[(0, 0)]["keep"]}) > 1


# ---- targets ------------------------------------------------------------------------------------

def region(pixels: torch.Tensor, t: int, n: int) -> torch.Tensor:
    """Tubelet (t, n) of (3, T, H, W) pixels, cut by hand: (3, tubelet, P, P)."""
    r, c, p = n // 4, n % 4, TINY.patch_size
    return pixels[:, 2 * t:2 * t + 2, r * p:(r + 1) * p, c * p:(c + 1) * p]


def test_target_rows_are_the_tubelets_in_encoder_token_order():
    torch.manual_seed(0)
    frames = torch.randn(2, 3, 8, 32, 32)
    mean, std = torch.tensor(PIXEL_MEAN).view(3, 1, 1, 1), torch.tensor(PIXEL_STD).view(3, 1, 1, 1)
    raw, normed = recon_targets(frames, TINY, norm_pix=False), recon_targets(frames, TINY, norm_pix=True)
    assert raw.shape == normed.shape == (2, 64, 2 * 8 * 8 * 3)
    vit = VideoViT(TINY).eval()
    tokens = vit.patch_embed(frames)                                      # (B, T', N, C)
    conv = vit.patch_embed.proj
    for b, t, n in [(0, 0, 0), (0, 1, 5), (1, 3, 15), (1, 2, 6)]:
        pix = region(frames[b] * std + mean, t, n).permute(1, 2, 3, 0)   # (tubelet, P, P, 3)
        torch.testing.assert_close(raw[b, t * 16 + n], pix.flatten())
        want = (pix - pix.mean(dim=(0, 1, 2))) / (pix.std(dim=(0, 1, 2)) + 1e-6)
        torch.testing.assert_close(normed[b, t * 16 + n], want.flatten(), rtol=1e-5, atol=1e-5)
        token = F.conv3d(region(frames[b], t, n)[None], conv.weight, conv.bias).flatten()
        torch.testing.assert_close(tokens[b, t, n], token, rtol=1e-5, atol=1e-5)  # the encoder's token (t, n)


def test_decoder_position_embedding_is_fixed_and_distinct():
    pos = sincos_3d(4, 4, 24)
    assert pos.shape == (64, 24) and len({tuple(r.tolist()) for r in pos}) == 64
    model = tiny_model(tiny_cfg())
    assert "decoder.pos_embed" not in model.state_dict()                  # a buffer rebuilt, not learned
    assert not any(n.endswith("pos_embed") for n, _ in model.decoder.named_parameters())


# ---- the loss -----------------------------------------------------------------------------------

def test_loss_counts_masked_tubelets_only():
    model = tiny_model(tiny_cfg())
    torch.manual_seed(1)
    frames, keep = torch.randn(2, 3, 8, 32, 32), keeps(2, 0.75, "shared", seed=3)
    vis_n, hid_n = int(keep[0, 0, 0]), int(masked_indices(keep, 16)[0, 0, 0])
    with torch.no_grad():
        tokens = model.video.forward_features(frames, keep)[:, 1:]
        base = model.decoder.loss(frames, tokens, keep)
        changed_vis, changed_hid = frames.clone(), frames.clone()
        region(changed_vis[0], 1, vis_n).add_(3.0 * torch.randn(3, 2, 8, 8))
        region(changed_hid[0], 1, hid_n).add_(3.0 * torch.randn(3, 2, 8, 8))
        # the target ignores visible tubelets ...
        assert torch.equal(model.decoder.loss(changed_vis, tokens, keep), base)
        # ... the encoder ignores hidden ones, so they reach the loss through the target alone
        assert torch.equal(model.video.forward_features(changed_hid, keep)[:, 1:], tokens)
        moved = model.decoder.loss(changed_hid, tokens, keep)
        assert moved[0] != base[0] and moved[1] == base[1]
        # and it is the plain MSE over exactly the hidden positions
        pred, hid_pos = model.decoder(tokens, keep)
        hidden = torch.ones(2, 64, dtype=torch.bool)
        hidden[torch.arange(2)[:, None], (keep + 16 * torch.arange(4)[:, None]).flatten(1)] = False
        target = recon_targets(frames, TINY, True)[hidden].view(2, 48, -1)
        torch.testing.assert_close(base, (pred - target).pow(2).mean(dim=(1, 2)))


def test_training_steps_reduce_the_reconstruction_loss():
    cfg = tiny_cfg(mask_ratio=0.75, mask_kind="shared")
    model = tiny_model(cfg).train()
    pretext.freeze_unused(model, cfg)
    opt = pretext.build_optimizer(model, cfg)
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert {n.split(".")[0] for n, p in model.named_parameters() if id(p) in trained} == {"video", "decoder"}
    torch.manual_seed(2)
    # every tubelet holds a ramp of its own contrast plus noise: learnable by a tiny decoder in steps
    ramp = torch.arange(8.0).repeat(4)[None, None, None, :, None] + torch.arange(8.0).repeat(4)
    frames = torch.rand(2, 3, 8, 1, 1) * ramp / 4 + 0.1 * torch.randn(2, 3, 8, 32, 32)
    batch = {"frames": frames, "keep": keeps(2, 0.75, "shared"),
             "order": torch.arange(4).repeat(2, 1)}
    batch["input_ids"], batch["attention_mask"] = text_inputs(2)
    text_before = model.text.state_dict()
    seen = []
    for _ in range(25):
        opt.zero_grad()
        parts = pretext.losses(pretext.run_model(model, batch), batch["order"], cfg, CPU)
        assert parts.keys() == {"loss", "loss_recon"}
        parts["loss"].backward()
        opt.step()
        seen.append(parts["loss"].item())
    assert seen[-1] < 0.6 * seen[0], seen
    assert all(torch.equal(v, model.text.state_dict()[k]) for k, v in text_before.items())


# ---- checkpoints, validation, config ------------------------------------------------------------

def test_checkpoint_round_trips_through_model_from_state():
    cfg = tiny_cfg()
    model = tiny_model(cfg)
    spec = model.text_spec
    state = {"model": model.state_dict(), "config": json.loads(dumps(cfg)), "text_spec": spec.as_dict(), "step": 0}
    again, cfg2 = model_from_state(state)
    assert cfg2 == cfg and again.decoder is not None
    assert any(k.startswith("decoder.blocks.") for k in again.state_dict())
    # evaluations may fine-tune the text side; the decoder is frozen so DDP never waits on it
    assert all(p.requires_grad != n.startswith("decoder.") for n, p in again.named_parameters())
    frames, keep = torch.randn(1, 3, 8, 32, 32), keeps(1, 0.75, "per_tube")
    with torch.no_grad():
        assert torch.equal(again(frames, keep, *text_inputs(1)).recon_loss,
                           model(frames, keep, *text_inputs(1)).recon_loss)


def test_validation_reports_the_mean_reconstruction_loss():
    cfg = tiny_cfg()
    model = tiny_model(cfg)
    torch.manual_seed(4)
    batches = []
    for i, b in enumerate((3, 2)):
        batches.append({"frames": torch.randn(b, 3, 8, 32, 32), "keep": keeps(b, 0.75, "per_tube", seed=i),
                        "order": torch.arange(4).repeat(b, 1), "index": torch.arange(b)})
        batches[-1]["input_ids"], batches[-1]["attention_mask"] = text_inputs(b)
    metrics = pretext.evaluate(model, batches, cfg, CPU)
    model.eval()
    with torch.no_grad(), dist.autocast(CPU.device, cfg.runtime.amp):  # the precision evaluate runs in
        per_sample = torch.cat([pretext.run_model(model, b).recon_loss for b in batches])
    assert metrics.keys() == {"loss_recon", "n"} and metrics["n"] == 5
    assert metrics["loss_recon"] == pytest.approx(per_sample.mean().item(), rel=1e-6)
    assert SelectConfig(metric="loss_recon").higher_is_better is False


@pytest.mark.parametrize("section,key", [
    ({"method": "foo"}, "pretrain.method"),
    ({"model": {"mask_kind": "foo"}}, "pretrain.model.mask_kind"),
    ({"videomae": {"decoder_dim": 30, "decoder_heads": 4}}, "pretrain.videomae.decoder_dim"),
    ({"videomae": {"decoder_depth": 0}}, "pretrain.videomae.decoder_depth"),
    ({"method": "videomae", "model": {"mask_ratio": 0.0}}, "pretrain.model.mask_ratio"),
    ({"method": "videomae", "data": {"eval_mask": False}}, "pretrain.data.eval_mask"),
    ({"method": "videomae", "init": "tvts:x.pt"}, "pretrain.init"),
])
def test_bad_config_names_the_key(section, key):
    with pytest.raises(ConfigError, match=re.escape(key) + ":"):
        from_dict(PretrainConfig, section, "pretrain")


def test_defaults_are_tvts_and_videomae_vit_b_decoder():
    cfg = from_dict(PretrainConfig, {"method": "videomae", "model": {"mask_kind": "shared", "mask_ratio": 0.9}},
                    "pretrain")
    assert PretrainConfig().method == "tvts" and ModelConfig().mask_kind == "per_tube"
    assert cfg.videomae == VideoMAEConfig(384, 4, 6, 4.0, True) and cfg.model.mask_kind == "shared"
    assert text_only_variant(cfg).method == "tvts"  # the text-only baseline stays a sort baseline


# ---- end to end ---------------------------------------------------------------------------------

def videomae_config(tmp_path: Path) -> Path:
    cfg = load_yaml(SMOKE)
    cfg["pretrain"] |= {"method": "videomae", "videomae": {"decoder_dim": 24, "decoder_depth": 1, "decoder_heads": 2}}
    cfg["pretrain"]["model"] |= {"mask_kind": "shared", "mask_ratio": 0.5}
    cfg["pretrain"]["data"] |= {"batch_size": 2, "eval_batch_size": 4}
    path = tmp_path / "videomae.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_pretrain_stage_trains_videomae_end_to_end(tmp_path, smoke_shards):
    out = tmp_path / "run"
    assert pretrain.main(["--shards", str(smoke_shards), "--out", str(out), "--config", str(videomae_config(tmp_path)),
                          "--exp", "t", "--cpu"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    last = manifest["history"][-1]
    assert "loss_recon" in last and "sort_exact" not in last and np.isfinite(last["loss_recon"])
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("train/loss_recon" in r for r in logged) and not any("train/sort_acc" in r for r in logged)
    path = out / manifest["outputs"]["epoch_checkpoints"][-1]
    assert any(k.startswith("decoder.") for k in checkpoint.load(path)["model"])
    scores = score(path, smoke_shards, CPU, workers=0)   # what select_ckpt does: the same fixed val masks
    assert scores["loss_recon"] == pytest.approx(last["loss_recon"], rel=1e-5)
    assert pick({path.name: scores}, SelectConfig(metric="loss_recon")) == path.name
    with pytest.raises(ValueError, match="select.metric"):
        pick({path.name: scores}, SelectConfig(metric="sort_exact"))


def test_two_process_torchrun_trains_videomae(tmp_path, smoke_shards):
    """DDP with the text side frozen: no rank waits for a gradient that never comes."""
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "ddp"
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "tvts.cli", "pretrain",
                           "--shards", str(smoke_shards), "--out", str(out), "--config", str(videomae_config(tmp_path)),
                           "--cpu", "--exp", "t"], capture_output=True, text=True, timeout=600,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["world_size"] == 2 and manifest["history"][-1]["n"] == manifest["counts"]["val_windows"]
