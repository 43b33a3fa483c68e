"""The ImageMAE stand-in: a masked autoencoder on single frames of the pretraining shards.

The paper's video encoder starts from ImageMAE weights (He et al. 2022), its text encoder from
a pretrained DistilBERT; the demo has neither. This module trains the miniature of the first:
the video config's ViT run on one frame (2-D patches, `tubelet = num_frames = 1`), random
masking of 75 % of the patches, a light decoder (VideoMAE's, on one frame) and the MSE on the
masked patches against per-patch normalised pixels, as MAE. It writes the encoder in the
ImageMAE checkpoint format that `pretrain.init: mae:<path>` loads (tvts.models.init):
`{"model": state}` with a 2-D patch kernel `(C, 3, P, P)`, no temporal embedding, and the
decoder under `decoder.` (which that loader drops).

Both init stages (this one and tvts.train.text_mlm) train for a number of steps through the one
training core (tvts.train.trainer): `train_steps` below is what they share (their config
sections: tvts.train.init_config).
A batch is a pure function of (seed, step), so a killed run resumes bit-exactly from its newest
step checkpoint, as pretraining does.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from tvts import io
from tvts.data.shards import ShardError, open_jpeg
from tvts.models.config import VideoConfig
from tvts.models.video_vit import MEAN, STD, VideoViT, tube_keep_indices
from tvts.models.videomae import VideoMAEDecoder, patchify, unnormalise
from tvts.train import checkpoint, schedule
from tvts.train import distributed as dist
from tvts.train.data import load_refs, resize_short
from tvts.train.init_config import ImageMAEConfig, StepsConfig
from tvts.train.trainer import Budget, TrainState, run_epochs

log = logging.getLogger("tvts.init")


# ---- what both init stages share: a run of `steps` optimiser steps --------------------------------

class StepStream:
    """The batches of one run, `make_batch(step)` for each step: the sampler and loader that
    `run_epochs` positions (`set_epoch`) and iterates. The run is one epoch of `steps` steps."""

    def __init__(self, make_batch: Callable[[int], Any], steps: int):
        self.make_batch, self.steps, self.start = make_batch, steps, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.start = epoch * self.steps + start_step

    def __iter__(self) -> Iterator[Any]:
        return (self.make_batch(s) for s in range(self.start, self.steps))


def open_train_split(spec: str | Path) -> tuple[list, str, Callable[[Any, str], bytes]]:
    """The train split of the shards `spec`: (sample refs, a fingerprint of the data, a member reader).

    Through a shard set (tvts.data.shardset: a set file, a part folder or URL) where the package
    reads sets; otherwise `spec` is one local shard folder.
    """
    try:
        from tvts.data.shardset import MemberReader, open_shard_set
    except ImportError:
        fingerprint = hashlib.sha256((Path(spec) / "manifest.json").read_bytes()).hexdigest()
        return load_refs(spec, "train"), fingerprint, read_member
    shards, reader = open_shard_set(str(spec)), MemberReader()
    return shards.refs("train"), shards.fingerprint(), lambda ref, name: reader.read(ref.shard, *ref.members[name])


def run_key(config: Any, fingerprint: str) -> str:
    """A run's identity: its config and its input data (only matching checkpoints are resumed)."""
    h = hashlib.sha256(io.dumps(config).encode())
    h.update(fingerprint.encode())
    return h.hexdigest()[:16]


def train_steps(model: nn.Module, loss_of: Callable[[Any], torch.Tensor], make_batch: Callable[[int], Any],
                cfg: StepsConfig, ckpt_dir: Path, key: str, env: dist.DistEnv) -> list[dict]:
    """Train `model` for `cfg.steps` steps of `loss_of(make_batch(step))`, resuming from `ckpt_dir`.

    Args:
        key: the run key (`run_key`): checkpoints of another key are deleted, not resumed.
    Returns:
        The logged records, at step 1 and every `log_every` steps: {"step", "loss", "lr"} (mean loss
        since the last record).
    Raises:
        Preempted: after a step checkpoint, on SIGTERM/SIGUSR1.
    """
    torch.manual_seed(cfg.seed)
    model.to(env.device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    sched = schedule.build_scheduler(
        opt, lambda s: schedule.warmup_cosine(s, cfg.steps, cfg.warmup_steps, cfg.lr_floor))
    state = TrainState(model, model, opt, sched, cfg.steps)
    ckpts = checkpoint.CheckpointManager(ckpt_dir, key, env, cfg.ckpt_every, keep_last=1, keep_epochs=1)
    found = ckpts.find(resume_complete=True)
    if found:
        ckpts.restore(state, found[1])
        log.info("resuming from %s (step %d)", found[0].name, state.step)
    running: list[float] = []

    def micro_step(batch: Any, accum: int) -> dict[str, float]:
        loss = loss_of(batch)
        (loss / accum).backward()
        running.append(loss.item())
        return {"loss": running[-1]}  # the divergence guard checks it

    def after_step() -> None:
        # Step 1 too: the loss of the initial model is where "first" in the manifest starts.
        if state.step % cfg.log_every == 0 or state.step in (1, cfg.steps):
            record = {"step": state.step, "loss": float(np.mean(running)), "lr": sched.get_last_lr()[0]}
            state.history.append(record)
            running.clear()
            log.info("step %d loss=%.4f lr=%.3g", record["step"], record["loss"], record["lr"])

    stream = StepStream(make_batch, cfg.steps)
    run_epochs(state, stream, lambda: stream, micro_step, Budget(1, 1, cfg.clip_grad), env, ckpts, after_step)
    return state.history


# ---- the image MAE ---------------------------------------------------------------------------------

def frame_config(video: VideoConfig) -> VideoConfig:
    """The video encoder's config on one frame: the same ViT, with 2-D patches."""
    return replace(video, num_frames=1, tubelet=1, temporal_init_std=0.0, drop_path=0.0)


class ImageMAE(nn.Module):
    """Encoder (`VideoViT` on one frame) + decoder; `forward` is the per-sample reconstruction loss."""

    def __init__(self, video: VideoConfig, cfg: ImageMAEConfig):
        super().__init__()
        self.frame_cfg = frame_config(video)
        self.encoder = VideoViT(self.frame_cfg)
        # An image has no time: the one-tube temporal embedding stays zero, as the export drops it.
        self.encoder.temporal_embed.requires_grad_(False)
        self.decoder = VideoMAEDecoder(self.frame_cfg, cfg.decoder())
        self.norm_eps = cfg.norm_pix_eps if cfg.norm_pix_loss else None

    def forward(self, frames: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, 3, 1, S, S) normalised frames, (B, 1, n_keep) kept patches -> (B,) masked-patch MSE."""
        tokens = self.encoder.forward_features(frames, keep)[:, 1:]   # (B, n_keep, C), CLS dropped
        pred, hidden = self.decoder(tokens, keep)                       # (B, M, P*P*3), (B, M)
        with torch.no_grad():
            target = pixel_targets(frames, self.frame_cfg, self.norm_eps)
            target = torch.gather(target, 1, hidden[..., None].expand(-1, -1, target.shape[-1]))
        return (pred - target).pow(2).mean(dim=(1, 2))


def pixel_targets(frames: torch.Tensor, video: VideoConfig, norm_eps: float | None) -> torch.Tensor:
    """(B, 3, 1, S, S) -> (B, N, P*P*3) pixels in [0, 1] per patch; with `norm_eps`, each patch's
    channels normalised as MAE does, `(x - mean) / sqrt(var + norm_eps)`.

    Why an eps of its own: the demo's frames are mostly flat colour, where a patch's variance is
    JPEG noise; MAE's 1e-6 then asks the decoder to predict amplified noise (measured on the smoke
    frames: 0.96 -> 0.94 in 60 steps), while a larger eps leaves flat patches near zero.
    """
    x = patchify(unnormalise(frames), video)                             # (B, N, P*P, 3)
    if norm_eps is not None:
        x = (x - x.mean(dim=2, keepdim=True)) / (x.var(dim=2, unbiased=True, keepdim=True) + norm_eps).sqrt()
    return x.flatten(2)


def export_state(model: ImageMAE) -> dict[str, torch.Tensor]:
    """The ImageMAE checkpoint's `model`: 2-D patch kernel, no temporal embedding, `decoder.*` kept."""
    out = {}
    for k, v in model.encoder.state_dict().items():
        if k == "temporal_embed":
            continue
        out[k] = v.squeeze(2).clone() if k == "patch_embed.proj.weight" else v.clone()  # (C, 3, 1, P, P) -> (C, 3, P, P)
    return out | {f"decoder.{k}": v.clone() for k, v in model.decoder.state_dict().items()}


def read_member(ref: Any, name: str) -> bytes:
    offset, size = ref.members[name]
    fd = os.open(ref.shard, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def frame_pool(refs: list, read: Callable[[Any, str], bytes], cfg: ImageMAEConfig, min_side: int,
               rejects: io.Rejects) -> list[np.ndarray]:
    """`cfg.frames` stored frames as uint8 (H, W, 3) arrays: windows in a seeded order, one frame
    each, round-robin, each a seeded random frame of its window. A frame that does not decode, or
    is smaller than the crop, is skipped and counted in `rejects`."""
    rng = np.random.default_rng([cfg.seed, 7])
    order = rng.permutation(len(refs))
    pool: list[np.ndarray] = []
    for i in range(cfg.frames):
        ref = refs[order[i % len(refs)]]
        names = sorted(k for k in ref.members if k.endswith(".jpg"))
        if not names:
            rejects.add(ref.key, "no_frames")
            continue
        name = names[int(rng.integers(len(names)))]
        try:
            im = open_jpeg(read(ref, name), ref.shard, f"{ref.key}.{name}")
        except ShardError as err:
            rejects.add(f"{ref.key}.{name}", "bad_jpeg", str(err))
            continue
        im = resize_short(im, cfg.short_side) if cfg.short_side else im
        if min(im.size) < min_side:
            rejects.add(f"{ref.key}.{name}", "too_small", f"{im.size} < crop {min_side}")
            continue
        pool.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
    return pool


def frame_batch(pool: list[np.ndarray], step: int, cfg: ImageMAEConfig, video: VideoConfig) -> dict[str, torch.Tensor]:
    """Step `step`'s batch: random frames, random crops of `img_size`, random flips, ImageNet
    normalisation, and each frame's random kept patches. A pure function of (seed, step)."""
    rng = np.random.default_rng([cfg.seed, step])
    s, crops = video.img_size, []
    for i in rng.integers(0, len(pool), cfg.batch_size):
        h, w, _ = pool[i].shape
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        crop = pool[i][y:y + s, x:x + s]
        crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    arr = (np.stack(crops).astype(np.float32) / 255.0 - MEAN) / STD          # (B, S, S, 3)
    frames = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))[:, :, None]  # (B, 3, 1, S, S)
    patches = (s // video.patch_size) ** 2
    keep = np.stack([tube_keep_indices(rng, 1, patches, cfg.mask_ratio) for _ in range(cfg.batch_size)])
    return {"frames": frames, "keep": torch.from_numpy(keep)}


def train_image_mae(shards: str | Path, video: VideoConfig, cfg: ImageMAEConfig, out: Path,
                    env: dist.DistEnv) -> dict:
    """Train the image MAE on frames of the train split and write `out` (the ImageMAE checkpoint).

    Step checkpoints go to `<out's folder>/ckpt/` (a rerun resumes from them).

    Returns:
        The manifest's body: counts, losses, history and rejects.
    Raises:
        ValueError: when no train frame is usable.
    """
    refs, fingerprint, read = open_train_split(shards)
    rejects = io.Rejects("init_image_mae")
    pool = frame_pool(refs, read, cfg, video.img_size, rejects)
    if not pool:
        raise ValueError(f"init_image_mae: no usable train frame in {shards} ({rejects.counts()})")
    torch.manual_seed(cfg.seed)
    model = ImageMAE(video, cfg)
    key = run_key({"init_image_mae": cfg, "video": video}, fingerprint)

    def loss_of(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(batch["frames"].to(env.device), batch["keep"].to(env.device)).mean()

    history = train_steps(model, loss_of, lambda step: frame_batch(pool, step, cfg, video), cfg,
                          out.parent / "ckpt", key, env)
    checkpoint.save(out, {"model": {k: v.cpu() for k, v in export_state(model).items()},
                          "config": json.loads(io.dumps({"init_image_mae": cfg, "video": video})),
                          "step": cfg.steps, "run_key": key})
    return {"counts": {"train_windows": len(refs), "frames": len(pool), "steps": cfg.steps},
            "losses": {"first": history[0]["loss"], "final": history[-1]["loss"]}, "history": history,
            "rejects": rejects}
