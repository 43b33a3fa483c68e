"""Window samples from the WebDataset shards, ready for the model.

The shards are read through a small tar index (member offsets), so a sample is one seek
and one read: this gives a map-style dataset whose order is a pure function of
(seed, epoch, step). That is what makes a resumed run bit-identical to an uninterrupted
one, and gives every rank the same number of steps however few shards there are. Ranks
take contiguous slices of each global batch (`ResumableBatchSampler`), DataLoader workers
take whole batches. Everything random about a sample (TSN frames, crop, transcript
shuffle, tube mask) is drawn in the worker from an RNG seeded by (seed, epoch, index).

The shards are a shard set (tvts.data.shardset): local parts read by `pread`, remote ones by
one ranged GET per member. Workers decode only the drawn frames and cut the crop in uint8;
the float work can wait for the device (`RawFrames`), and so can the decoding itself
(`JpegFrames`, nvJPEG): such an item's `frames` turns into the frames tensor when the batch is
moved with `.to(device)`, so the trainer never needs to know which it got.
"""
from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from tvts.data.shards import (REASONS, ShardError, decode_rgb, parse_meta, read_index, tar_members,
                              tsn_indices)
from tvts.data.shardset import MemberReader, SampleRef, ShardSet, StaleIndex, open_shard_set
from tvts.models.config import VideoConfig
from tvts.models.text import load_tokenizer, tokenize, TextSpec
from tvts.models.video_vit import MEAN, STD, all_patches, tube_keep_indices

log = logging.getLogger("tvts.data")

EVAL_EPOCH = 2**31 - 1  # RNG stream of the deterministic evaluation views


def index_shards(paths: list[Path]) -> list[SampleRef]:
    """Scan tar headers (not data) into one SampleRef per sample, in shard order."""
    return [SampleRef(str(path), key, members) for path in paths for key, members in tar_members(path)]


def load_refs(shard_dir: str | Path, split: str) -> list[SampleRef]:
    """One SampleRef per sample of a split of one local shard folder, from the index `shard_clips` wrote."""
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
    jpeg_decoder: str = "simplejpeg"  # simplejpeg | pil (the same pixels) | simplejpeg-fast (tvts.data.shards.decode_rgb)
    normalise_on: str = "worker"  # worker: float frames; device: uint8 frames, normalised by `to_device`
    decode_device: str = "cpu"   # cpu: items hold frames; else the JPEG bytes, decoded by `decode_batch`


class WindowDataset(Dataset):
    """Map-style dataset over one split's shards. Items are `(epoch, index)`; epoch = EVAL_EPOCH for eval views."""

    def __init__(self, shards: str | Path | ShardSet, split: str, view: ViewConfig, text_spec: TextSpec, seed: int):
        """Args:
            shards: a shard set spec (tvts.data.shardset: a set file, a part folder or URL), or an opened set.
        """
        self.shards = shards if isinstance(shards, ShardSet) else open_shard_set(shards)
        self.refs = self.shards.refs(split)
        if not self.refs:
            raise FileNotFoundError(f"no {split} shards in {self.shards.spec}")
        self.view, self.spec, self.seed = view, text_spec, seed
        self._tok = None
        self._reader = MemberReader()

    def __len__(self) -> int:
        return len(self.refs)

    def read_field(self, index: int, name: str) -> bytes:
        """One member's bytes: `pread` of a local shard (no shared file offset, so forked workers
        that inherited this process's descriptors read concurrently), one ranged GET of a URL.

        Raises:
            ShardError: the sample has no such member (naming the shard and the sample).
            ShardSetError: a remote shard that cannot be read (naming its URL).
        """
        ref = self.refs[index]
        if name not in ref.members:
            raise ShardError(ref.shard, f"{ref.key}.{name}", f"missing member (the sample has no {name})")
        if "_reader" not in self.__dict__:  # a dataset made without __init__ (a reader over bare refs)
            self._reader = MemberReader()
        offset, size = ref.members[name]
        return self._reader.read(ref.shard, offset, size)

    def __getstate__(self) -> dict:  # spawned workers open their own descriptors and connections
        return self.__dict__ | {"_reader": MemberReader(), "_tok": None}

    def read(self, index: int) -> dict[str, bytes]:
        """Every member of sample `index` (json + frames), by one read of the span they lie in
        (a sample's members are consecutive in its tar): one ranged GET of a URL, not one per member.

        Raises:
            StaleIndex: the first member's tar header is not where the index says (the shard was
                replaced after its index was read).
        """
        ref = self.refs[index]
        if "_reader" not in self.__dict__:
            self._reader = MemberReader()
        first = min(ref.members, key=lambda name: ref.members[name][0])
        start = ref.members[first][0] - tarfile.BLOCKSIZE  # from the first member's header on
        span = self._reader.read(ref.shard, start, max(o + n for o, n in ref.members.values()) - start)
        check_header(span[:tarfile.BLOCKSIZE], ref, first)
        return {name: span[o - start:o - start + n] for name, (o, n) in ref.members.items()}

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
        """Sample `index` of `epoch`, or in training, when it cannot be read, the next readable one
        (`replace_bad`); `skipped` counts the samples passed over, by reason (shards.REASONS)."""
        epoch, index = item
        if epoch == EVAL_EPOCH:  # validation scores the set as it is, and says which sample is bad
            return self.item(epoch, index)
        return replace_bad(lambda i: self.item(epoch, i), index, len(self))

    def item(self, epoch: int, index: int) -> dict[str, torch.Tensor]:
        if self._tok is None:
            self._tok = load_tokenizer(self.spec, self.view.max_length)
        train = epoch != EVAL_EPOCH
        rng = np.random.default_rng([self.seed, epoch, index])
        sample, ref = self.read(index), self.refs[index]
        meta = parse_meta(sample.get("json"), ref.shard, ref.key)
        order = rng.permutation(self.view.k)  # input slot i holds the transcript at time order[i]
        frames = self.frames(sample, rng if train else None, ref)
        ids, mask = tokenize(self._tok, [meta["clips"][j]["text"] for j in order])
        v = self.view.video
        if self.view.mask_ratio > 0 and (train or self.view.eval_mask):
            keep = tube_keep_indices(rng, v.tubes, v.patches, self.view.mask_ratio, self.view.mask_kind)
        else:
            keep = all_patches(v.tubes, v.patches)
        return frames | {"keep": torch.from_numpy(keep), "input_ids": ids.view(self.view.k, -1),
                         "attention_mask": mask.view(self.view.k, -1),
                         "order": torch.from_numpy(order.astype(np.int64)), "index": torch.tensor(index)}

    def frames(self, sample: dict[str, bytes], rng: np.random.Generator | None, ref: SampleRef) -> dict:
        """`frames` (3, T, S, S), or with decode_device other than cpu the drawn frames' JPEG bytes
        and crop origin (`JpegFrames`, decoded when the batch moves to the device): the same draws."""
        if not self.view.frames:
            return {"frames": torch.zeros(0)}
        if self.view.decode_device == "cpu":
            return {"frames": load_frames(sample, self.view, rng, ref.shard, ref.key)}
        jpegs, crop = pick_jpegs(sample, self.view, rng, ref.shard, ref.key)
        return {"frames": JpegFrames(jpegs, torch.tensor(crop), self.view.video.img_size)}


def replace_bad(item: Callable[[int], dict], index: int, n: int) -> dict:
    """`item(index)`, or when it raises ShardError, the next index's (wrapping around): the batch keeps
    its size, and as the substitute is a pure function of the index, a resumed run sees the same.

    Returns:
        The item, with `skipped`: the samples passed over, per reason of `shards.REASONS`.
    Raises:
        ShardError: when no sample at all can be read.
    """
    skipped = torch.zeros(len(REASONS), dtype=torch.int64)
    for k in range(n):
        try:
            return item((index + k) % n) | {"skipped": skipped}
        except ShardError as err:
            skipped[REASONS.index(err.reason)] += 1
            log.warning("skipped a bad sample (the next one takes its place): %s", err)
    raise ShardError("<every shard>", "<every sample>", f"no readable sample among {n}")


def check_header(block: bytes, ref: SampleRef, field: str) -> None:
    """The tar header before a sample's first member names that member with its indexed size.

    Raises:
        StaleIndex: naming the shard and the member, when it does not.
    """
    want, (offset, size) = f"{ref.key}.{field}", ref.members[field]
    try:
        info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.TarError:
        info = None
    # a name over 100 bytes lives in a pax header before this one, which holds its start
    if info is None or info.size != size or not info.name or not want.startswith(info.name):
        found = f"{info.name!r} of {info.size} bytes" if info else "no tar header"
        raise StaleIndex(f"{ref.shard}: stale index: {want} ({size} bytes at offset {offset}) is not there any more "
                         f"({found}): the shard changed after its index was read; run again to read it anew")


def load_frames(sample: dict[str, bytes], view: ViewConfig, rng: np.random.Generator | None,
                shard: str = "<shard>", key: str = "<sample>") -> torch.Tensor | RawFrames:
    """TSN frames, short-side resize, crop (random if `rng`, else centre), ImageNet normalisation
    (or, with normalise_on device, the uint8 crop for `to_device` to normalise).

    Only the drawn frames are decoded, the crop is cut from the uint8 frames, and the one float
    copy is normalised in place: the same values as normalising every pixel in float first.

    Args:
        shard, key: where the sample is, for the message of a member that does not decode.
    Returns:
        (3, T, S, S) float32.
    """
    names = frame_names(sample, shard, key)
    idx = tsn_indices(len(names), view.video.num_frames, rng)
    imgs = [decode_frame(sample[names[i]], view, shard, f"{key}.{names[i]}") for i in idx]
    h, w = imgs[0].shape[:2]
    x0, y0 = crop_origin(w, h, view.video.img_size, rng)
    s = view.video.img_size
    crops = torch.from_numpy(np.stack([im[y0:y0 + s, x0:x0 + s] for im in imgs]))  # (T, S, S, 3) uint8
    if view.normalise_on == "device":
        return RawFrames(crops.permute(3, 0, 1, 2).contiguous())
    return normalise(crops.permute(3, 0, 1, 2), channel_dim=0)


def frame_names(sample: dict[str, bytes], shard: str, key: str) -> list[str]:
    names = sorted(k for k in sample if k.endswith(".jpg"))
    if not names:
        raise ShardError(shard, key, "no .jpg frame members")
    return names


def decode_frame(data: bytes, view: ViewConfig, shard: str, member: str) -> np.ndarray:
    """One frame as (H, W, 3) uint8, resized to the view's short side when it has one."""
    rgb = decode_rgb(data, shard, member, view.jpeg_decoder)
    if view.short_side and min(rgb.shape[:2]) != view.short_side:
        rgb = np.asarray(resize_short(Image.fromarray(rgb), view.short_side))
    return rgb


def crop_origin(w: int, h: int, s: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """(x0, y0) of the S x S crop: random if `rng` (x drawn first, then y), else the centre."""
    if min(w, h) < s:
        raise ValueError(f"stored frames are {w}x{h}, smaller than the crop {s}: raise shard_clips.short_side")
    if rng is None:
        return (w - s) // 2, (h - s) // 2
    return int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))


def normalise(frames: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """uint8 RGB -> ImageNet-normalised float32 (contiguous), one float copy normalised in place.
    Bit-identical to `(x / 255 - MEAN) / STD` on float32 (the same IEEE operations, in order; 255
    is a tensor, as CUDA turns division by a CPU scalar into multiplication by its reciprocal)."""
    shape = [1] * frames.dim()
    shape[channel_dim] = 3
    mean = torch.from_numpy(MEAN).to(frames.device).view(shape)
    std = torch.from_numpy(STD).to(frames.device).view(shape)
    scale = torch.full([1] * frames.dim(), 255.0, device=frames.device)
    x = frames.contiguous().to(torch.float32)
    return x.div_(scale).sub_(mean).div_(std)


class RawFrames(NamedTuple):
    """A crop's uint8 frames (normalise_on device), as an item's `frames`: collated, `.to(device)`
    moves the (B, 3, T, S, S) uint8 batch (4x fewer bytes than float32) and normalises it there,
    so the trainer's `to_device(batch)` yields the same float frames as normalising in the worker."""

    frames: torch.Tensor   # (3, T, S, S) uint8; collated (B, 3, T, S, S)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> torch.Tensor:
        return normalise(self.frames.to(device, non_blocking=non_blocking), channel_dim=1)


def pick_jpegs(sample: dict[str, bytes], view: ViewConfig, rng: np.random.Generator | None,
               shard: str = "<shard>", key: str = "<sample>") -> tuple[list[bytes], tuple[int, int]]:
    """What `load_frames` draws, without decoding: the TSN frames' JPEG bytes and the crop origin
    (the frame size comes from the JPEG header). The same RNG calls in the same order."""
    import simplejpeg

    names = frame_names(sample, shard, key)
    idx = tsn_indices(len(names), view.video.num_frames, rng)
    jpegs = [sample[names[i]] for i in idx]
    try:
        h, w = simplejpeg.decode_jpeg_header(jpegs[0])[:2]
    except ValueError as err:
        raise ShardError(shard, f"{key}.{names[idx[0]]}", f"not a readable JPEG ({err})") from None
    return jpegs, crop_origin(w, h, view.video.img_size, rng)


class JpegFrames(NamedTuple):
    """The drawn frames still JPEG-encoded (decode_device other than cpu), as an item's `frames`.

    The default collate keeps the named tuple (its fields collated: `jpegs` becomes T lists of B
    bytes, `crop` (B, 2), `size` (B,)), and `.to(device)` decodes the batch there, so the
    trainer's `to_device(batch)` yields the frames tensor: no other code knows about it.
    """

    jpegs: list            # T frames' bytes; collated: T lists of B
    crop: torch.Tensor     # (x0, y0); collated: (B, 2)
    size: int              # the crop's side S; collated: (B,)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> torch.Tensor:
        return decode_batch(self, device)


def decode_batch(frames: JpegFrames, device: torch.device | str) -> torch.Tensor:
    """A collated batch of JPEG frames decoded on `device` in one call (nvJPEG on cuda, libjpeg
    on cpu), cropped and normalised there.

    Returns:
        (B, 3, T, S, S) float32 on `device`, as the collated cpu path gives.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    crop, t, s = frames.crop.tolist(), len(frames.jpegs), int(torch.as_tensor(frames.size).flatten()[0])
    b = len(crop)
    data = [torch.frombuffer(bytearray(frames.jpegs[i][j]), dtype=torch.uint8) for j in range(b) for i in range(t)]
    imgs = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)       # B*T of (3, H, W) uint8
    crops = torch.stack([im[:, y0:y0 + s, x0:x0 + s] for k, im in enumerate(imgs)
                         for x0, y0 in [crop[k // t]]])                     # (B*T, 3, S, S)
    return normalise(crops.view(b, t, 3, s, s).permute(0, 2, 1, 3, 4), channel_dim=1)


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
