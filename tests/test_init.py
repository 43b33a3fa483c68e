"""Initialisation from ImageMAE and from an official TVTS release checkpoint (built here, right key names)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from tvts.config import ConfigError, from_dict
from tvts.models.config import VideoConfig
from tvts.models.init import InitError, init_from_mae, initialise, parse_init
from tvts.models.tvts import TVTS
from tvts.models.video_vit import VideoViT

from test_models import TINY_VIDEO, tiny_model


def mae_state(dim: int = 32, depth: int = 1, patch: int = 8, patches: int = 16) -> dict:
    """An ImageMAE-style ViT state dict (2D patch kernel, decoder keys) for the tiny config."""
    torch.manual_seed(3)
    s = {"cls_token": torch.randn(1, 1, dim), "pos_embed": torch.randn(1, 1 + patches, dim),
         "patch_embed.proj.weight": torch.randn(dim, 3, patch, patch), "patch_embed.proj.bias": torch.randn(dim),
         "norm.weight": torch.randn(dim), "norm.bias": torch.randn(dim),
         "mask_token": torch.randn(1, 1, dim), "decoder_embed.weight": torch.randn(16, dim)}
    for i in range(depth):
        p = f"blocks.{i}."
        s |= {p + "norm1.weight": torch.randn(dim), p + "norm1.bias": torch.randn(dim),
              p + "attn.qkv.weight": torch.randn(3 * dim, dim), p + "attn.qkv.bias": torch.randn(3 * dim),
              p + "attn.proj.weight": torch.randn(dim, dim), p + "attn.proj.bias": torch.randn(dim),
              p + "norm2.weight": torch.randn(dim), p + "norm2.bias": torch.randn(dim),
              p + "mlp.fc1.weight": torch.randn(4 * dim, dim), p + "mlp.fc1.bias": torch.randn(4 * dim),
              p + "mlp.fc2.weight": torch.randn(dim, 4 * dim), p + "mlp.fc2.bias": torch.randn(dim)}
    return s


def release_state(model: TVTS, prefix: str = "module.") -> dict:
    """Our weights renamed to the official release layout (what `tvts:` must read back)."""
    out = {}
    for k, v in model.state_dict().items():
        head, _, rest = k.partition(".")
        if head == "video":
            out[f"video_model.{rest}"] = v.clone()
        elif head == "text":
            out[f"text_model.{rest.removeprefix('model.')}"] = v.clone()
        elif head == "sort_head":
            out[f"pred_model.{rest}"] = v.clone().unsqueeze(0) if rest == "type_embed" else v.clone()
        elif head == "vid_proj":
            out[f"vid_proj.0.{rest}"] = v.clone()
        else:
            out[k] = v.clone()
    return {prefix + k: v for k, v in out.items()}


def test_mae_init_inflates_the_kernel_by_repeating(tmp_path):
    path = tmp_path / "mae.pth"
    state = mae_state()
    torch.save({"model": state}, path)
    model = tiny_model()
    initialise(model, f"mae:{path}")
    w = model.video.patch_embed.proj.weight
    assert w.shape == (32, 3, 2, 8, 8)
    for t in range(2):  # repeated, not divided
        assert torch.equal(w[:, :, t], state["patch_embed.proj.weight"])
    assert torch.equal(model.video.pos_embed, state["pos_embed"])
    assert torch.equal(model.video.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])
    assert torch.count_nonzero(model.video.temporal_embed) == 0  # the one missing key stays zero


def test_mae_wrong_shape_fails_naming_the_key(tmp_path):
    path = tmp_path / "mae.pth"
    torch.save({"model": mae_state(patches=64)}, path)  # a 64-patch (other resolution) checkpoint
    with pytest.raises(InitError, match=r"pos_embed has shape \(1, 65, 32\).*\(1, 17, 32\)"):
        initialise(tiny_model(), f"mae:{path}")


def test_mae_missing_key_fails(tmp_path):
    state = mae_state()
    del state["blocks.0.mlp.fc1.weight"]
    torch.save({"model": state}, tmp_path / "mae.pth")
    with pytest.raises(InitError, match="missing.*blocks.0.mlp.fc1.weight"):
        initialise(tiny_model(), f"mae:{tmp_path / 'mae.pth'}")
    torch.save({"weights": mae_state()}, tmp_path / "nokey.pth")
    with pytest.raises(InitError, match="no 'model' key"):
        initialise(tiny_model(), f"mae:{tmp_path / 'nokey.pth'}")


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_official_release_converts_to_ours(tmp_path, prefix):
    source = tiny_model()
    torch.manual_seed(7)
    for p in source.parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / "tvts_release.pth"
    torch.save({"state_dict": release_state(source, prefix), "epoch": 20}, path)
    target = tiny_model()
    initialise(target, f"tvts:{path}")
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k


def test_official_release_wrong_shape_or_foreign_key_fails(tmp_path):
    state = release_state(tiny_model())
    state["module.video_model.temporal_embed"] = torch.zeros(1, 8, 32)  # 16 frames, we have 8
    torch.save({"state_dict": state}, tmp_path / "a.pth")
    with pytest.raises(InitError, match="video.temporal_embed has shape"):
        initialise(tiny_model(), f"tvts:{tmp_path / 'a.pth'}")
    state = release_state(tiny_model()) | {"module.logit_scale": torch.ones(())}
    torch.save({"state_dict": state}, tmp_path / "b.pth")
    with pytest.raises(InitError, match="unexpected key 'logit_scale'"):
        initialise(tiny_model(), f"tvts:{tmp_path / 'b.pth'}")


def test_init_spec_errors(tmp_path):
    assert parse_init("random") == ("random", None)
    for bad in ("mae", "imagenet:x.pth", "random:x"):
        with pytest.raises(InitError, match="expected random, mae:<path> or tvts:<path>"):
            parse_init(bad)
    with pytest.raises(InitError, match="not found"):
        initialise(tiny_model(), f"mae:{tmp_path / 'nope.pth'}")


@pytest.mark.parametrize("inflate,scale", [("repeat", 2.0), ("mean", 1.0)])
def test_mae_inflation_sets_a_static_clips_tokens_to_the_images_times_scale(tmp_path, inflate, scale):
    """`video.inflate`: "mean" gives a static clip exactly the image MAE's patch tokens; "repeat"
    (the paper's) gives them `tubelet` (2) times over, so a config can pick either."""
    path = tmp_path / "mae.pth"
    state = mae_state()
    torch.save({"model": state}, path)
    video = VideoViT(replace(TINY_VIDEO, inflate=inflate))
    init_from_mae(video, path)
    frame = torch.randn(1, 3, 1, TINY_VIDEO.img_size, TINY_VIDEO.img_size)
    clip = frame.expand(-1, -1, TINY_VIDEO.num_frames, -1, -1)
    image = F.conv2d(frame[:, :, 0], state["patch_embed.proj.weight"], stride=8).flatten(2).transpose(1, 2)
    tokens = video.patch_embed(clip) - state["patch_embed.proj.bias"]       # (1, T', N, C)
    for t in range(tokens.shape[1]):
        torch.testing.assert_close(tokens[0, t], scale * image[0], rtol=1e-4, atol=1e-4)


def test_an_unknown_inflation_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"video\.inflate: must be one of repeat, mean"):
        from_dict(VideoConfig, {"inflate": "sum"}, "pretrain.model.video")
