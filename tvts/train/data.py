"""Window samples from the WebDataset shards, ready for the model.

The shards are read through a small tar index (member offsets), so a sample is one seek
and one read: this gives a map-style dataset whose order is a pure function of
(seed, epoch, step). That is what makes a resumed run bit-identical to an uninterrupted
one, and gives every rank the same number of steps however few shards there are. Ranks
take contiguous slices of each global batch (`ResumableBatchSampler`), DataLoader workers
take whole batches. Everything random about a sample (TSN frames, crop, transcript
shuffle, tube mask) is drawn in the worker from an RNG seeded by (seed, epoch, index).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from tvts.data.shards import ShardError, open_jpeg, parse_meta, read_index, tar_members, tsn_indices
from tvts.models.config import VideoConfig
from tvts.models.text import load_tokenizer, tokenize, TextSpec
from tvts.models.video_vit import MEAN, STD, all_patches, tube_keep_indices

EVAL_EPOCH = 2**31 - 1  # RNG stream of the deterministic evaluation views


@dataclass(frozen=True)
class SampleRef:
    shard: str
    key: str                              # `<video>_wNNN` (tvts.data.shards.sample_key)
    members: dict[str, tuple[int, int]]  # field -> (offset, size) inside the tar

    @property
    def video(self) -> str:
        return self.key.rpartition("_w")[0]


def index_shards(paths: list[Path]) -> list[SampleRef]:
    """Scan tar headers (not data) into one SampleRef per sample, in shard order."""
    return [SampleRef(str(path), key, members) for path in paths for key, members in tar_members(path)]


def load_refs(shard_dir: str | Path, split: str) -> list[SampleRef]:
    """One SampleRef per sample of a split, from the shard index `shard_clips` wrote."""
    return [SampleRef(str(path), key, members) for path, key, members in read_index(shard_dir, split)]


@dataclass(frozen=True)
class ViewConfig:
    """How a window becomes model input (all from the stage config)."""

    video: VideoConfig
    k: int
    mask_ratio: float
    max_length: int
    short_side: int = 0      # resize stored frames to this short side first; 0 = as stored
    eval_mask: bool = True   # validation keeps the tube mask (the task as trained), with fixed seeds
    frames: bool = True      # False: skip decoding (the text-only baseline never looks at them)
    mask_kind: str = "per_tube"  # per_tube (TVTS) | shared (VideoMAE: one mask for every tube)


class WindowDataset(Dataset):
    """Map-style dataset over one split's shards. Items are `(epoch, index)`; epoch = EVAL_EPOCH for eval views."""

    def __init__(self, shard_dir: str | Path, split: str, view: ViewConfig, text_spec: TextSpec, seed: int):
        self.refs = load_refs(shard_dir, split)
        if not self.refs:
            raise FileNotFoundError(f"no {split} shards in {shard_dir}")
        self.view, self.spec, self.seed = view, text_spec, seed
        self._tok = None
        self._files: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.refs)

    def _fd(self, shard: str) -> int:
        fd = self._files.get(shard)
        if fd is None:
            fd = self._files[shard] = os.open(shard, os.O_RDONLY)
        return fd

    def read_field(self, index: int, name: str) -> bytes:
        """One member's bytes. `pread` has no shared file offset, so forked workers that
        inherited this process's descriptors can read concurrently.

        Raises:
            ShardError: the sample has no such member (naming the shard and the sample).
        """
        ref = self.refs[index]
        if name not in ref.members:
            raise ShardError(ref.shard, ref.key, f"no {name} member")
        offset, size = ref.members[name]
        return os.pread(self._fd(ref.shard), size, offset)

    def __getstate__(self) -> dict:  # spawned workers open their own descriptors
        return self.__dict__ | {"_files": {}, "_tok": None}

    def read(self, index: int) -> dict[str, bytes]:
        """Every member of sample `index` (json + frames), by seek + read."""
        return {name: self.read_field(index, name) for name in self.refs[index].members}

    def meta(self, index: int) -> dict:
        return parse_meta(self.read_field(index, "json"), self.refs[index].shard, self.refs[index].key)

    def videos(self) -> list[list[int]]:
        """The sample indices of each video, videos in first-seen (shard) order."""
        groups: dict[str, list[int]] = {}
        for i, ref in enumerate(self.refs):
            groups.setdefault(ref.video, []).append(i)
        return list(groups.values())

    def texts(self) -> Iterator[str]:
        for i in range(len(self)):
            for clip in self.meta(i)["clips"]:
                yield clip["text"]

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = item
        if self._tok is None:
            self._tok = load_tokenizer(self.spec, self.view.max_length)
        train = epoch != EVAL_EPOCH
        rng = np.random.default_rng([self.seed, epoch, index])
        sample, ref = self.read(index), self.refs[index]
        meta = parse_meta(sample.get("json"), ref.shard, ref.key)
        order = rng.permutation(self.view.k)  # input slot i holds the transcript at time order[i]
        frames = (load_frames(sample, self.view, rng if train else None, ref.shard, ref.key) if self.view.frames
                  else torch.zeros(0))
        ids, mask = tokenize(self._tok, [meta["clips"][j]["text"] for j in order])
        v = self.view.video
        if self.view.mask_ratio > 0 and (train or self.view.eval_mask):
            keep = tube_keep_indices(rng, v.tubes, v.patches, self.view.mask_ratio, self.view.mask_kind)
        else:
            keep = all_patches(v.tubes, v.patches)
        return {"frames": frames, "keep": torch.from_numpy(keep), "input_ids": ids.view(self.view.k, -1),
                "attention_mask": mask.view(self.view.k, -1), "order": torch.from_numpy(order.astype(np.int64)),
                "index": torch.tensor(index)}


def load_frames(sample: dict[str, bytes], view: ViewConfig, rng: np.random.Generator | None,
                shard: str = "<shard>", key: str = "<sample>") -> torch.Tensor:
    """TSN frames, short-side resize, crop (random if `rng`, else centre), ImageNet normalisation.

    Args:
        shard, key: where the sample is, for the message of a member that does not decode.
    Returns:
        (3, T, S, S) float32.
    """
    names = sorted(k for k in sample if k.endswith(".jpg"))
    if not names:
        raise ShardError(shard, key, "no .jpg frame members")
    idx = tsn_indices(len(names), view.video.num_frames, rng)
    imgs = [open_jpeg(sample[names[i]], shard, f"{key}.{names[i]}") for i in idx]
    if view.short_side:
        imgs = [resize_short(im, view.short_side) for im in imgs]
    w, h = imgs[0].size
    s = view.video.img_size
    if min(w, h) < s:
        raise ValueError(f"stored frames are {w}x{h}, smaller than the crop {s}: raise shard_clips.short_side")
    if rng is None:
        x0, y0 = (w - s) // 2, (h - s) // 2
    else:
        x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
    arr = np.stack([np.asarray(im.crop((x0, y0, x0 + s, y0 + s)), dtype=np.float32) for im in imgs])
    arr = (arr / 255.0 - MEAN) / STD                                   # (T, S, S, 3)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(3, 0, 1, 2)))


def resize_short(im: Image.Image, short: int) -> Image.Image:
    w, h = im.size
    if min(w, h) == short:
        return im
    scale = short / min(w, h)
    return im.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)


class ResumableBatchSampler(Sampler):
    """Per-rank batches of `(epoch, index)` whose order depends only on (seed, epoch).

    Each global batch (batch_size * world items of one permutation) is cut into contiguous
    rank slices, so W ranks see exactly the combined batch of one process. Training drops the
    incomplete last global batch (every rank runs the same number of steps); `start_step`
    skips batches already trained on, for resuming mid-epoch. With `groups` (the item indices
    of each video), an epoch is one item per group, drawn afresh from (seed, epoch). `limit` > 0
    caps an epoch at that many items (groups), a fresh random subset each epoch.
    """

    def __init__(self, n: int, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True, groups: list[list[int]] | None = None,
                 limit: int = 0):
        self.groups = groups
        self.total = len(groups) if groups is not None else n
        self.n = min(self.total, limit) if limit > 0 else self.total
        self.batch, self.rank, self.world = batch_size, rank, world
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def steps_per_epoch(self) -> int:
        g = self.batch * self.world
        return self.n // g if self.drop_last else -(-self.n // g)

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch() - self.start_step)

    def epoch_items(self) -> np.ndarray:
        """This epoch's items in order: a permutation of the items, or of one item per group."""
        if not self.shuffle:
            return np.arange(self.n) if self.groups is None else np.array([g[0] for g in self.groups[:self.n]])
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.total)[:self.n]
        if self.groups is None:
            return perm
        pick = np.random.default_rng([self.seed, self.epoch, 1]).integers(0, [len(g) for g in self.groups])
        return np.array([self.groups[v][pick[v]] for v in perm])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        items = self.epoch_items()
        g = self.batch * self.world
        epoch = self.epoch if self.shuffle else EVAL_EPOCH
        for step in range(self.start_step, self.steps_per_epoch()):
            chunk = items[step * g:(step + 1) * g]
            mine = chunk[self.rank * self.batch:(self.rank + 1) * self.batch]
            if len(mine):
                yield [(epoch, int(i)) for i in mine]
