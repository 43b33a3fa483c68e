"""Build the model a pretraining config describes, and load one from a checkpoint.

This is what every evaluation calls to get its model: it needs the config dataclasses and
the checkpoint file format, never the training loop or its data pipeline.
"""
from __future__ import annotations

from pathlib import Path

import torch

from tvts.config import from_dict
from tvts.models.text import TextSpec
from tvts.models.tvts import TVTS
from tvts.train import checkpoint
from tvts.train.config import PretrainConfig


def build_model(cfg: PretrainConfig, spec: TextSpec, load_pretrained_text: bool = True) -> TVTS:
    """The TVTS model (with the VideoMAE decoder for `method: videomae`). Pretrained text weights
    load from `model.text.model` only for a new run that starts from them (not for `scratch`, a
    `tvts:` init, or a checkpoint about to be loaded)."""
    pretrained = (cfg.model.text.model if load_pretrained_text and cfg.model.text.model != "scratch"
                  and not cfg.init.startswith("tvts:") else None)
    videomae = cfg.videomae if cfg.method == "videomae" else None
    model = TVTS(cfg.model, spec, cfg.loss, pretrained_text=pretrained, videomae=videomae)
    model.video.grad_checkpointing = cfg.runtime.grad_checkpointing
    return model


def model_from_state(state: dict, device: torch.device | str = "cpu", where: str = "checkpoint"
                     ) -> tuple[TVTS, PretrainConfig]:
    """Rebuild the model a checkpoint (or best.pt) describes and load its weights.

    A VideoMAE decoder comes back too (it is in the weights) but frozen: no evaluation uses it,
    and a fine-tuning evaluation under DDP would otherwise wait for its gradients forever.

    Raises:
        NonFiniteWeights (a CheckpointError): a weight is NaN or inf (a diverged run), naming `where`.
    """
    checkpoint.require_finite(state["model"], str(where))
    cfg = from_dict(PretrainConfig, state["config"], "checkpoint.config")
    model = build_model(cfg, TextSpec(**state["text_spec"]), load_pretrained_text=False)
    model.load_state_dict(state["model"])
    if model.decoder is not None:
        model.decoder.requires_grad_(False)
    return model.to(device).eval(), cfg


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[TVTS, PretrainConfig]:
    """A TVTS model from any tvts-workflow checkpoint (`weights_only=True`): what evaluation calls."""
    return model_from_state(checkpoint.load(path), device, path)
