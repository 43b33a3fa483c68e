"""The science grid's positive controls: the video-order upper bound (`loss.sort_by: video`) and the
weightless pixel encoder (`model.video.encoder: pixels`)."""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from tvts.config import ConfigError, from_dict
from tvts.io import dumps
from tvts.eval.config import FinetuneConfig
from tvts.eval.finetune import build_classifier
from tvts.eval.health import feature_health
from tvts.models.config import LossConfig, ModelConfig, SortConfig, TextConfig, VideoConfig
from tvts.models.init import initialise
from tvts.models.load import build_model, model_from_state
from tvts.models.text import build_spec
from tvts.models.tvts import arrow_target, shuffle_segments, sort_accuracy
from tvts.train import distributed as dist
from tvts.train.config import OptimConfig, PretrainConfig
from tvts.train.pretext import freeze_unused, losses, run_model

VIDEO = VideoConfig(img_size=32, patch_size=8, tubelet=2, num_frames=8, dim=32, depth=1, heads=2,
                    temporal_init_std=1.0)  # 4 tubes x 16 patches; slots told apart from the start
TEXT = TextConfig(model="scratch", max_length=6, vocab_size=300, dim=16, depth=1, heads=2, hidden_dim=32, dropout=0.0)
CPU = dist.DistEnv(0, 1, 0, torch.device("cpu"))


def cfg_of(video: VideoConfig = VIDEO, **loss) -> PretrainConfig:
    model = ModelConfig(video=video, text=TEXT, sort=SortConfig(depth=1, heads=2), embed_dim=16)
    return PretrainConfig(model=model, loss=LossConfig(**loss), optim=OptimConfig(lr=3e-3))


def model_of(cfg: PretrainConfig):
    torch.manual_seed(0)
    return build_model(cfg, build_spec(cfg.model.text, ["a b c d e"] * 20), load_pretrained_text=False)


def moving_square_batch(b: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Clips of 8 frames whose square steps 8 px right every 2 frames (one segment), at a random
    height and colour; the K = 4 segments are shuffled by `order`."""
    frames = torch.zeros(b, 3, 8, 32, 32)
    for i in range(b):
        y, colour = rng.integers(0, 24), torch.from_numpy(rng.uniform(0.5, 2.0, 3)).float()
        for t in range(8):
            frames[i, :, t, y:y + 8, 8 * (t // 2):8 * (t // 2) + 8] = colour[:, None, None]
    order = torch.stack([torch.from_numpy(rng.permutation(4)) for _ in range(b)])
    ids = torch.zeros(b, 4, 6, dtype=torch.long)
    return {"frames": frames, "keep": None, "input_ids": ids, "attention_mask": torch.ones_like(ids), "order": order}


def train_on(model, cfg: PretrainConfig, steps: int, next_batch) -> float:
    """`steps` AdamW steps (lr 3e-3) of the control's loss on `next_batch()`; the last loss."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(steps):
        batch = next_batch()
        loss = losses(run_model(model, batch), batch["order"], cfg, CPU)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


# ---- the video-order control ---------------------------------------------------------------------

def test_shuffle_segments_puts_segment_order_i_in_slot_i():
    frames = torch.arange(2 * 8, dtype=torch.float32).view(2, 1, 8, 1, 1).expand(2, 3, 8, 4, 4).contiguous()
    order = torch.tensor([[2, 0, 3, 1], [0, 1, 2, 3]])
    out = shuffle_segments(frames, order)
    assert out[0, 0, :, 0, 0].tolist() == [4, 5, 0, 1, 6, 7, 2, 3]
    assert torch.equal(out[1], frames[1])


def test_video_order_control_reads_the_shuffled_clip_through_its_cls():
    """Slot i holds segment order[i], and the order head reads the final-norm CLS of that clip."""
    cfg = cfg_of(sort_by="video", align_weight=0.0)
    model = model_of(cfg).eval()
    batch = moving_square_batch(4, np.random.default_rng(0))
    with torch.no_grad():
        out = run_model(model, batch)
        cls = model.video.forward_features(shuffle_segments(batch["frames"], batch["order"]))[:, 0]
        unshuffled = model.video.forward_features(batch["frames"])[:, 0]
    assert torch.allclose(out.sort_logits, model.order_head(cls).view(4, 4, 4))
    assert not torch.allclose(cls, unshuffled)
    assert (out.text_emb == 0).all()                              # no contrastive term: the text never ran


def test_video_order_control_trains_video_and_order_head_only():
    """Text-free and transcript-free: only the video and its order head train, and they fit a
    fixed batch (80 steps) far below the loss of a uniform guess (2 x ln 4 = 2.77 at weight 2)."""
    cfg = cfg_of(sort_by="video", align_weight=0.0)
    model = model_of(cfg)
    freeze_unused(model, cfg)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"video", "order_head"}
    batch = moving_square_batch(8, np.random.default_rng(0))
    loss = train_on(model, cfg, 80, lambda: batch)
    assert loss < 0.5, loss


def test_segment_readout_scores_each_slots_own_tokens():
    cfg = cfg_of(sort_by="video", align_weight=0.0, order_readout="segments")
    model = model_of(cfg).eval()
    batch = moving_square_batch(3, np.random.default_rng(0))
    with torch.no_grad():
        out = run_model(model, batch)
        tokens = model.video.forward_features(shuffle_segments(batch["frames"], batch["order"]))[:, 1:]
    slot2 = tokens[:, 2 * 16:3 * 16].mean(1)                       # one tube of 16 patches per slot here
    assert out.sort_logits.shape == (3, 4, 4)
    assert torch.allclose(out.sort_logits[:, 2], model.order_head(slot2), atol=1e-6)


def test_segment_readout_learns_what_the_cls_readout_is_slow_to():
    """On shuffled moving-square clips (each segment's square position tells its time), reading each
    slot's tokens sorts them within 250 steps; the CLS readout, which must bind content to slots in
    one vector, is still near chance (0.25) then: the reason the grid's upper bound reads segments."""
    rng, accs = np.random.default_rng(0), {}
    for readout in ("segments", "cls"):
        cfg = cfg_of(sort_by="video", align_weight=0.0, order_readout=readout)
        model = model_of(cfg)
        freeze_unused(model, cfg)
        train_on(model, cfg, 250, lambda: moving_square_batch(16, rng))
        test = moving_square_batch(64, np.random.default_rng(1))
        with torch.no_grad():
            accs[readout] = sort_accuracy(run_model(model.eval(), test).sort_logits, test["order"])["sort_acc"]
    assert accs["segments"] > 0.9 and accs["cls"] < 0.5, accs


# ---- the arrow-of-time control -------------------------------------------------------------------

def test_arrow_target_reverses_half_of_all_permutations_by_their_first_two_slots():
    perms = torch.tensor(list(itertools.permutations(range(4))))
    target = arrow_target(perms)
    assert target.sum(1).eq(1).all() and target[:, 0].sum().item() == 12     # 12 of the 24 play backwards
    assert arrow_target(torch.tensor([[1, 0, 2, 3], [0, 3, 1, 2]])).tolist() == [[1, 0], [0, 1]]


def test_arrow_control_reverses_the_marked_clips_and_reads_their_cls():
    cfg = cfg_of(sort_by="arrow", align_weight=0.0)
    model = model_of(cfg).eval()
    batch = moving_square_batch(6, np.random.default_rng(0))
    with torch.no_grad():
        out = run_model(model, batch)
        target = arrow_target(batch["order"])
        played = torch.stack([f.flip(1) if r else f for f, r in zip(batch["frames"], target[:, 0])])
        cls = model.video.forward_features(played)[:, 0]
    assert 0 < target[:, 0].sum() < 6                              # this draw has both directions
    assert torch.equal(out.sort_target, target)
    assert torch.allclose(out.sort_logits, model.order_head(cls).view(6, 2, 2), atol=1e-6)
    assert (out.text_emb == 0).all()


def test_arrow_control_learns_direction_once_position_is_on_the_scale_of_time():
    """A square that moves right forwards moves left backwards. Only video and the arrow head
    train. With the spatial position embedding on the temporal one's scale, 150 steps tell held-out
    clips' direction; at timm's 0.02 beside a temporal std of 1, the first norm leaves each token
    mostly "which tube", and the same run stays at chance (docs/results.md)."""
    accs = {}
    for pos_std in (1.0, 0.02):
        cfg = cfg_of(replace(VIDEO, depth=2, pos_init_std=pos_std), sort_by="arrow", align_weight=0.0)
        model = model_of(cfg)
        freeze_unused(model, cfg)
        assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"video", "order_head"}
        rng = np.random.default_rng(0)
        train_on(model, cfg, 150, lambda: moving_square_batch(16, rng))
        test = moving_square_batch(128, np.random.default_rng(1))
        with torch.no_grad():
            out = run_model(model.eval(), test)
        accs[pos_std] = sort_accuracy(out.sort_logits, out.sort_target)["sort_exact"]
    assert accs[1.0] > 0.9 and accs[0.02] < 0.65, accs


def test_video_order_control_round_trips_through_a_checkpoint():
    cfg = cfg_of(sort_by="video", align_weight=0.0)
    model = model_of(cfg)
    state = {"model": model.state_dict(), "config": json.loads(dumps(cfg)), "text_spec": model.text_spec.as_dict()}
    again, again_cfg = model_from_state(state)
    assert again_cfg.loss.sort_by == "video" and again.order_head is not None
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("section,key", [
    ({"loss": {"sort_by": "frames"}}, "pretrain.loss.sort_by"),
    ({"loss": {"sort_by": "video", "sort_video": False}}, "pretrain.loss.sort_by"),
    ({"loss": {"sort_by": "arrow", "sort_video": False}}, "pretrain.loss.sort_by"),
    ({"loss": {"sort_by": "video"}, "model": {"video": {"num_frames": 12}}}, "pretrain.loss.sort_by"),
    ({"model": {"video": {"encoder": "cnn"}}}, "pretrain.model.video.encoder"),
    ({"loss": {"sort_by": "video", "order_readout": "mean"}}, "pretrain.loss.order_readout"),
])
def test_bad_control_config_names_the_key(section, key):
    with pytest.raises(ConfigError, match=re.escape(key) + ":"):
        from_dict(PretrainConfig, section, "pretrain")


# ---- the pixel encoder ---------------------------------------------------------------------------

def test_pixel_encoder_has_no_weights_and_gives_the_pixel_probe_feature():
    cfg = cfg_of(replace(VIDEO, encoder="pixels"))
    model = model_of(cfg)
    assert not list(model.video.parameters()) and model.video.dim == 4 * 64          # the CLS: 4 tubes x 8 x 8
    frames = torch.randn(3, 3, 8, 32, 32)
    out = model.video.forward_features(frames)
    assert out.shape == (3, 1 + 4 * 16, 256)
    x = frames.numpy()
    cells = x.reshape(3, 3, 4, 2, 8, 4, 8, 4).mean((3, 5, 7))                         # (B, C, T', 8, 8)
    expected = np.abs(cells - np.median(cells, axis=2, keepdims=True)).sum(1).reshape(3, -1)
    np.testing.assert_allclose(out[:, 0, :4 * 64].numpy(), expected, rtol=1e-5, atol=1e-6)  # 4 tubes x 8 x 8 cells
    assert (out[:, 0, 4 * 64:] == 0).all()                                                 # zero-padded to dim
    motion = np.abs(x[1] - np.median(x[1], axis=1, keepdims=True)).sum(0)             # (T, H, W)
    patch = motion[2:4, 8:16, 16:24].reshape(-1)
    token = out[1, 1 + 1 * 16 + 1 * 4 + 2].numpy()                                       # tube 1, patch row 1, col 2
    np.testing.assert_allclose(token[:128], patch, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(token[128:], patch * (-1 / 3), rtol=1e-5, atol=1e-5)    # tau of tube 1 of 4
    assert (out[:, 1:, 256:] == 0).all()


def test_pixel_tokens_mean_pool_tells_a_clip_from_its_reverse():
    """The tau copy: a mean over position-free tokens could not see order; this one does. A square
    that grows forwards shrinks backwards: the same patches, in the opposite order."""
    model = model_of(cfg_of(replace(VIDEO, encoder="pixels")))
    frames = torch.zeros(1, 3, 8, 32, 32)
    for t in range(8):
        frames[:, :, t, 8:9 + t, 8:9 + t] = 1.0
    forward, backward = (model.video.forward_features(f)[:, 1:].mean(1) for f in (frames, frames.flip(2)))
    assert not torch.allclose(forward[:, 128:], backward[:, 128:], atol=1e-3)


def test_pixel_encoder_keeps_the_masked_tokens_like_the_vit():
    model = model_of(cfg_of(replace(VIDEO, encoder="pixels")))
    frames = torch.randn(2, 3, 8, 32, 32)
    keep = torch.tensor([[0, 5, 9], [1, 2, 3], [4, 8, 15], [6, 7, 14]]).expand(2, 4, 3)
    full, kept = model.video.forward_features(frames), model.video.forward_features(frames, keep)
    assert kept.shape == (2, 1 + 12, 256) and torch.equal(kept[:, 0], full[:, 0])
    assert torch.equal(kept[:, 1 + 2 * 3 + 2], full[:, 1 + 2 * 16 + 15])                # tube 2, kept patch 15


def test_pixel_encoder_ignores_a_mae_init_and_refuses_fine_tuning(tmp_path):
    model = model_of(cfg_of(replace(VIDEO, encoder="pixels")))
    assert initialise(model, f"mae:{tmp_path / 'never-read.pt'}") == "mae"
    with pytest.raises(ValueError, match="pixels encoder has no weights to fine-tune"):
        build_classifier(model.video, 4, FinetuneConfig())


def test_pixel_cls_of_moving_squares_is_not_collapsed():
    """The control's feature spreads over many directions where the untrained ViT's CLS collapses."""
    batch = moving_square_batch(96, np.random.default_rng(2))
    frames = shuffle_segments(batch["frames"], batch["order"])
    pixels = model_of(cfg_of(replace(VIDEO, encoder="pixels"))).video.forward_features(frames)[:, 0]
    vit = model_of(cfg_of()).video.eval()
    with torch.no_grad():
        cls = vit.forward_features(frames)[:, 0]
    health_px, health_vit = feature_health(pixels.numpy()), feature_health(cls.numpy())
    assert health_px["effective_rank"] > 3 * health_vit["effective_rank"], (health_px, health_vit)
