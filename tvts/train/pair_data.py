"""Captioned images and clips from the pair shards (`shard_pairs`), alternating per optimiser step.

`PairDataset` is map-style over one kind's shards (every part's folder): items are
`(epoch, index)`, and everything random about a sample (the frames drawn, the crop, the flip)
comes from an RNG seeded by (seed, epoch, index), as for the window shards. An image becomes
its frame repeated to one tubelet, a clip its `clip_frames` frames, one drawn from each equal
segment of the stored ones (random in training, the centre in validation: the official loader's
`rand` and `uniform`).

`AlternatingSampler` yields, for every batch index of an epoch, one batch of each source in
turn (each a whole optimiser step, `grad_accum` micro-batches). A source runs through its own
passes over its data (pass p = its p-th permutation), continuing across epochs; the shorter one
thus restarts while the longer one finishes its pass. The stream is a pure function of
(seed, epoch, step), so a resumed run sees the batches an uninterrupted one would have seen.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from tvts.data.shards import ShardError, open_jpeg, read_index, tsn_indices
from tvts.models.text import TextSpec, load_tokenizer, tokenize
from tvts.models.video_vit import MEAN, STD
from tvts.train.data import EVAL_EPOCH, ResumableBatchSampler, SampleRef, replace_bad

KINDS = ("image", "video")


@dataclass(frozen=True)
class PairView:
    """How a pair becomes model input."""

    img_size: int
    tubelet: int
    clip_frames: int = 4                 # WebVid frames per clip (the official 4)
    max_length: int = 32
    crop_scale: tuple[float, float] = (0.5, 1.0)  # RandomResizedCrop's area range in training
    flip: bool = True                    # random horizontal flip in training


def pair_refs(dirs: list[Path], kind: str, split: str) -> list[SampleRef]:
    """Every sample of one kind and split over the part folders, in part then shard order."""
    return [SampleRef(str(path), key, members) for d in dirs
            for path, key, members in read_index(Path(d) / kind, split)]


class PairDataset(Dataset):
    """One kind's pairs of one split. Items are `(epoch, index)`; EVAL_EPOCH = deterministic views."""

    def __init__(self, dirs: list[Path], kind: str, split: str, view: PairView, spec: TextSpec, seed: int):
        self.refs = pair_refs(dirs, kind, split)
        self.kind, self.view, self.spec, self.seed = kind, view, spec, seed
        self._tok, self._files = None, {}

    def __len__(self) -> int:
        return len(self.refs)

    def __getstate__(self) -> dict:  # workers open their own descriptors and tokenizer
        return self.__dict__ | {"_files": {}, "_tok": None}

    def read(self, index: int) -> dict[str, bytes]:
        ref = self.refs[index]
        if ref.shard not in self._files:
            self._files[ref.shard] = os.open(ref.shard, os.O_RDONLY)
        fd = self._files[ref.shard]
        return {name: os.pread(fd, size, offset) for name, (offset, size) in ref.members.items()}

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Pair `index`, or in training, when it cannot be read, the next readable one (replace_bad)."""
        epoch, index = item
        if epoch == EVAL_EPOCH:
            return self.item(epoch, index)
        return replace_bad(lambda i: self.item(epoch, i), index, len(self))

    def item(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        if self._tok is None:
            self._tok = load_tokenizer(self.spec, self.view.max_length)
        rng = None if epoch == EVAL_EPOCH else np.random.default_rng([self.seed, epoch, index])
        sample, ref = self.read(index), self.refs[index]
        meta = parse_meta_pair(sample.get("json"), ref.shard, ref.key)
        ids, mask = tokenize(self._tok, [meta["caption"]])
        return {"frames": pair_frames(sample, self.kind, self.view, rng, ref.shard, ref.key),
                "input_ids": ids, "attention_mask": mask, "index": torch.tensor(index)}


def parse_meta_pair(data: bytes | None, shard: str, key: str) -> dict:
    """A pair sample's json member (id, caption, kind, ...).

    Raises:
        ShardError: absent, not JSON, or without a caption.
    """
    if data is None:
        raise ShardError(shard, f"{key}.json", "missing member (the sample has no json)")
    try:
        meta = json.loads(data)
    except ValueError as err:
        raise ShardError(shard, f"{key}.json", f"invalid JSON ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("caption"), str):
        raise ShardError(shard, f"{key}.json", "not a pair sample (no 'caption')")
    return meta


def pair_frames(sample: dict[str, bytes], kind: str, view: PairView, rng: np.random.Generator | None,
                shard: str = "<shard>", key: str = "<sample>") -> torch.Tensor:
    """(3, T, S, S) float32: T = tubelet for an image (its frame repeated), clip_frames for a clip."""
    names = sorted(k for k in sample if k.endswith(".jpg"))
    if not names:
        raise ShardError(shard, key, "no .jpg frame members")
    idx = [0] * view.tubelet if kind == "image" else tsn_indices(len(names), view.clip_frames, rng).tolist()
    imgs = [open_jpeg(sample[names[i]], shard, f"{key}.{names[i]}") for i in sorted(set(idx))]
    imgs = dict(zip(sorted(set(idx)), crop_views(imgs, view, rng)))
    arr = np.stack([imgs[i] for i in idx]).astype(np.float32)           # (T, S, S, 3)
    arr = (arr / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(3, 0, 1, 2)))


def crop_views(imgs: list[Image.Image], view: PairView, rng: np.random.Generator | None) -> list[np.ndarray]:
    """The same crop of every frame: a random resized crop (area `crop_scale`, aspect 3/4-4/3) and
    flip in training, the centre square in validation; resized to `img_size`."""
    w, h = imgs[0].size
    box = centre_square(w, h) if rng is None else random_box(w, h, view.crop_scale, rng)
    flip = rng is not None and view.flip and rng.random() < 0.5
    out = []
    for im in imgs:
        im = im.resize((view.img_size, view.img_size), Image.BILINEAR, box=box)
        out.append(np.asarray(im.transpose(Image.FLIP_LEFT_RIGHT) if flip else im))
    return out


def centre_square(w: int, h: int) -> tuple[float, float, float, float]:
    s = min(w, h)
    x0, y0 = (w - s) / 2, (h - s) / 2
    return (x0, y0, x0 + s, y0 + s)


def random_box(w: int, h: int, scale: tuple[float, float], rng: np.random.Generator
               ) -> tuple[float, float, float, float]:
    """torchvision's RandomResizedCrop box: 10 tries at an area and log-uniform aspect, else the centre square."""
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = np.sqrt(area * ratio), np.sqrt(area / ratio)
        if cw <= w and ch <= h:
            x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            return (x0, y0, x0 + cw, y0 + ch)
    return centre_square(w, h)


class PairSources(Dataset):
    """Both kinds behind one DataLoader: items are `(source, epoch, index)`."""

    def __init__(self, sets: list[PairDataset]):
        self.sets = sets

    def __len__(self) -> int:
        return sum(len(s) for s in self.sets)

    def __getitem__(self, item: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        source, epoch, index = item
        return self.sets[source][(epoch, index)] | {"source": torch.tensor(source)}


class AlternatingSampler(Sampler):
    """Per-rank batches `[(source, pass, index), ...]`: for each batch index, `accum` micro-batches
    of source 0, then `accum` of source 1 (one optimiser step each).

    Args:
        sizes: items per source.
        batch_sizes: per-rank batch size of each source.
        limit: at most this many samples (both sources together) per epoch; 0 = no limit.
    """

    def __init__(self, sizes: list[int], batch_sizes: list[int], rank: int = 0, world: int = 1, seed: int = 0,
                 accum: int = 1, limit: int = 0):
        self.samplers = [ResumableBatchSampler(n, b, rank, world, seed + 7919 * s)
                         for s, (n, b) in enumerate(zip(sizes, batch_sizes))]
        self.passes = [s.steps_per_epoch() for s in self.samplers]  # micro-batches per pass of each source
        self.accum, self.world = accum, world
        longest = max(self.passes) // accum if min(self.passes) >= 1 else 0
        per_index = sum(batch_sizes) * world * accum
        self.indices = min(longest, limit // per_index) if limit > 0 else longest  # batch indices per epoch
        self.epoch, self.start = 0, 0
        self._items: dict[tuple[int, int], np.ndarray] = {}

    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch: one per source and batch index."""
        return self.indices * len(self.samplers)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Position at micro-batch `start_step` of `epoch` (what the trainer core calls)."""
        self.epoch, self.start = epoch, start_step

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch() * self.accum - self.start)

    def micro_batch(self, m: int) -> tuple[int, int]:
        """(source, global micro-batch of that source) of micro-batch `m` of this epoch."""
        n = len(self.samplers)
        i, within = divmod(m, n * self.accum)
        source, micro = divmod(within, self.accum)
        return source, (self.epoch * self.indices + i) * self.accum + micro

    def batch(self, source: int, g: int) -> list[tuple[int, int, int]]:
        sampler = self.samplers[source]
        p, step = divmod(g, self.passes[source])
        if (source, p) not in self._items:
            sampler.set_epoch(p)
            self._items = {k: v for k, v in self._items.items() if k[0] != source} | {(source, p): sampler.epoch_items()}
        items = self._items[source, p]
        gsize = sampler.batch * sampler.world
        mine = items[step * gsize:(step + 1) * gsize][sampler.rank * sampler.batch:(sampler.rank + 1) * sampler.batch]
        return [(source, p, int(i)) for i in mine]

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for m in range(self.start, self.steps_per_epoch() * self.accum):
            yield self.batch(*self.micro_batch(m))


class EvalSampler(Sampler):
    """Every val item of one source once, in order, in per-rank slices of `batch` (eval views)."""

    def __init__(self, source: int, n: int, batch: int, rank: int = 0, world: int = 1):
        self.inner = ResumableBatchSampler(n, batch, rank, world, shuffle=False, drop_last=False)
        self.source = source

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for chunk in self.inner:
            yield [(self.source, e, i) for e, i in chunk]
