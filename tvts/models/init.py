"""Initialisation from outside checkpoints: ImageMAE ViT weights, or an official TVTS release.

Both loaders convert keys to this package's names and then insist on an exact match:
a missing key, an unexpected key or a wrong shape raises `InitError` naming the key, so
a mismatched checkpoint can never load half-way.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from tvts.io import load_weights
from tvts.models.pixels import PixelVideo


class InitError(ValueError):
    """A checkpoint that does not fit the configured model; the message names the key."""


def parse_init(spec: str) -> tuple[str, Path | None]:
    """`random` | `mae:<path>` | `tvts:<path>` -> (kind, path)."""
    kind, _, path = spec.partition(":")
    if kind == "random" and not path:
        return "random", None
    if kind in ("mae", "tvts") and path:
        return kind, Path(path)
    raise InitError(f"init: expected random, mae:<path> or tvts:<path>, got {spec!r}")


def _load(path: Path) -> dict:
    """Raises InitError when the file is absent, CheckpointError (tvts.io) when it is unsafe or damaged."""
    if not path.is_file():
        raise InitError(f"init: checkpoint {path} not found")
    return load_weights(path)


def _strip_module(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_exact(module: nn.Module, state: dict[str, torch.Tensor], source: str,
               allowed_missing: tuple[str, ...] = ()) -> None:
    """Copy `state` into `module`, failing loudly on any missing/unexpected key or shape mismatch."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and k not in allowed_missing]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = f"missing {missing[:5]}" if missing else f"unexpected {unexpected[:5]}"
        raise InitError(f"{source}: keys do not match the configured model ({what})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise InitError(f"{source}: {k} has shape {tuple(v.shape)}, the configured model needs "
                            f"{tuple(own[k].shape)} (check pretrain.model sizes)")
    module.load_state_dict(state, strict=not allowed_missing)


def mae_to_video(state: dict[str, torch.Tensor], tubelet: int, inflate: str = "repeat") -> dict[str, torch.Tensor]:
    """ImageMAE ViT -> our video encoder: inflate the patch kernel to 3D by repeating it along time.

    `inflate` "repeat" copies the kernel unchanged (as the paper's code does); "mean" divides the
    copies by `tubelet` (VideoConfig.inflate). MAE's decoder and mask token, if present, are
    dropped; `temporal_embed` is the only key left missing.
    """
    out = {}
    for k, v in _strip_module(state).items():
        if k.startswith(("decoder", "mask_token")) or k in ("head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"):
            continue
        if k == "patch_embed.proj.weight" and v.dim() == 4:
            v = v.unsqueeze(2).repeat(1, 1, tubelet, 1, 1)  # (C, 3, P, P) -> (C, 3, t, P, P)
            v = v / tubelet if inflate == "mean" else v
        out[k] = v
    return out


def init_from_mae(video: nn.Module, path: Path) -> None:
    ckpt = _load(path)
    if "model" not in ckpt:
        raise InitError(f"init: {path} has no 'model' key (an ImageMAE checkpoint has one)")
    load_exact(video, mae_to_video(ckpt["model"], video.cfg.tubelet, video.cfg.inflate), f"mae:{path}",
               allowed_missing=("temporal_embed",))


def tvts_release_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official TVTS release keys (`video_model.`, `text_model.`, `pred_model.`, `txt_proj.`, `vid_proj.`) -> ours."""
    out = {}
    for k, v in _strip_module(state).items():
        head, _, rest = k.partition(".")
        if head == "video_model":
            if rest.startswith(("head.", "pre_logits.")):
                continue  # identity / unused classifier in the release
            out[f"video.{rest}"] = v
        elif head == "text_model":
            out[f"text.model.{rest}"] = v
        elif head == "pred_model":
            out[f"sort_head.{rest}"] = v.reshape(v.shape[-2:]) if rest == "type_embed" else v
        elif head == "vid_proj":
            out[f"vid_proj.{rest.removeprefix('0.')}"] = v
        elif head == "txt_proj":
            out[f"txt_proj.{rest}"] = v
        else:
            raise InitError(f"tvts release: unexpected key {k!r}")
    return out


def init_from_tvts(model: nn.Module, path: Path) -> None:
    ckpt = _load(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise InitError(f"init: {path} has no state_dict")
    load_exact(model, tvts_release_to_ours(state), f"tvts:{path}")


def initialise(model: nn.Module, spec: str) -> str:
    """Apply `pretrain.init` to a fresh TVTS model. Returns the kind applied."""
    kind, path = parse_init(spec)
    if kind == "mae" and not isinstance(model.video, PixelVideo):  # a pixel feature has no weights to start from
        init_from_mae(model.video, path)
    elif kind == "tvts":
        init_from_tvts(model, path)
    return kind
