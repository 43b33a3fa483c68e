"""WebDataset shards of captioned images (CC3M) and clips (WebVid): the post-pretraining data.

One sample per pair, key = the pair id's key stem (`tvts.data.shards.key_stem`):
    <key>.json        id, caption, kind ("image" | "video"), source file, stored frame times
    <key>.fNNN.jpg    one frame for an image; `frames_per_clip` evenly spread frames for a clip
A clip stores more frames than the trainer uses (2 per segment of its 4 by default), so the
trainer can draw one frame per segment at random in training and take the centre one in
validation, as the official loader samples WebVid (`sample_frames`, rand / uniform).
Images and clips go to separate folders, `<out>/image/` and `<out>/video/`, each split into
`{train,val}-NNNNNN.tar` by a hash of the pair id, with the shard index beside them. A part
(`--part i --parts n`) keeps the pairs whose key stem hashes to it, so duplicates meet in one
part. Output is byte-reproducible: items in input order, fixed tar metadata and JPEG encoding.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from tvts.config import require
from tvts.data import shards, video
from tvts.io import RejectError, Rejects

KINDS = ("image", "video")


@dataclass(frozen=True)
class PairShardConfig:
    """`shard_pairs:`: how captioned images and clips are stored."""

    frames_per_clip: int = 8      # stored per clip; the trainer samples 4 among them (one per segment)
    short_side: int = 256         # the official eval resize is 256; training crops from it
    jpeg_quality: int = 90
    val_fraction: float = 0.01    # held-out pairs: post-pretraining's checkpoint selection
    samples_per_shard: int = 1000
    max_caption_chars: int = 1000  # longer captions are cut here (counted): the tokenizer keeps far fewer

    def check(self, where: str) -> None:
        require(self.frames_per_clip >= 1, where, "frames_per_clip", "must be >= 1")
        require(self.short_side >= 8, where, "short_side", "must be >= 8")
        require(1 <= self.jpeg_quality <= 100, where, "jpeg_quality", "must be in [1, 100]")
        require(0 < self.val_fraction < 1, where, "val_fraction", "must be in (0, 1): the val split selects")
        require(self.samples_per_shard >= 1, where, "samples_per_shard", "must be >= 1")
        require(self.max_caption_chars >= 1, where, "max_caption_chars", "must be >= 1")


def part_of(pair_id: str, parts: int) -> int:
    """The part a pair belongs to, by a hash of its key stem (its duplicates land in the same part)."""
    stem = shards.key_stem(pair_id)
    return int.from_bytes(hashlib.sha1(stem.encode("utf-8")).digest()[:8], "little") % parts


def read_image(item) -> np.ndarray:
    """An image pair's pixels as (H, W, 3) uint8, from its bytes or its file.

    Raises:
        RejectError: missing_image, or image_unreadable (not an image, truncated).
    """
    if not item.data and not Path(item.path).is_file():
        raise RejectError("missing_image", str(item.path))
    try:
        with Image.open(io.BytesIO(item.data) if item.data else item.path) as im:
            im.load()  # decode now: a truncated file fails here, not half-read later
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise RejectError("image_unreadable", f"{item.path or item.id}: {err}") from None


def read_clip(item, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A clip's `n_frames` frames at the centres of equal segments, and their times.

    Raises:
        RejectError: missing_video or video_unreadable (tvts.data.video).
    """
    vr = video.open_video(item.path)
    meta = video.video_meta(vr)
    times = video.segment_times(0.0, meta.duration, n_frames)
    return video.decode_frames(vr, video.frame_indices(times, meta), item.path), times


def pair_sample(item, cfg: PairShardConfig) -> tuple[dict[str, bytes], bool]:
    """The shard sample of one pair, and whether its caption was cut.

    Raises:
        RejectError: empty_caption, unknown_kind, or the media's own reasons.
    """
    caption = " ".join(item.caption.split())
    if not caption:
        raise RejectError("empty_caption", item.id)
    if item.kind not in KINDS:
        raise RejectError("unknown_kind", f"{item.id}: {item.kind!r}")
    if item.kind == "image":
        frames, times = read_image(item)[None], np.zeros(1)
    else:
        frames, times = read_clip(item, cfg.frames_per_clip)
    frames = [video.resize_short_side(f, cfg.short_side) for f in frames]
    meta = {"id": item.id, "caption": caption[:cfg.max_caption_chars], "kind": item.kind,
            "source": str(item.path), "frame_times": [round(float(t), 3) for t in times]}
    return shards.make_sample(shards.key_stem(item.id), meta, frames, cfg.jpeg_quality), \
        len(caption) > cfg.max_caption_chars


@dataclass
class PairSinks:
    """The four shard writers of one part: (kind, split) -> ShardSink, and what they counted."""

    out_dir: Path
    cfg: PairShardConfig

    def __post_init__(self):
        self.sinks: dict[tuple[str, str], shards.ShardSink] = {}
        for kind in KINDS:
            (self.out_dir / kind).mkdir(parents=True, exist_ok=True)
            for split in shards.SPLITS:
                self.sinks[kind, split] = shards.ShardSink(self.out_dir / kind, split, self.cfg.samples_per_shard)
        self.truncated = 0

    def add(self, kind: str, pair_id: str, sample: dict[str, bytes]) -> None:
        self.sinks[kind, shards.split_of(pair_id, self.cfg.val_fraction)].add(sample)

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.flush()
            sink.write_index()

    def counts(self) -> dict[str, int]:
        out = {f"{kind}_{split}": sink.n_samples for (kind, split), sink in self.sinks.items()}
        out |= {f"{kind}_{split}_shards": len(sink.shards) for (kind, split), sink in self.sinks.items()}
        return out | {"pairs": sum(s.n_samples for s in self.sinks.values()), "captions_truncated": self.truncated,
                      "bytes": sum(s.n_bytes for s in self.sinks.values())}


def write_pair_shards(items: Iterable, out_dir: Path, cfg: PairShardConfig, rejects: Rejects,
                      part: int = 0, parts: int = 1) -> PairSinks:
    """Stream `items` (PairItem, in input order) of part `part` of `parts` into shards under `out_dir`.

    A bad pair is skipped and counted in `rejects` (its reason), never fatal; a repeated key
    stem of one kind keeps its first pair.

    Returns:
        The closed sinks (their counts and shard names).
    """
    sinks, seen = PairSinks(Path(out_dir), cfg), {}
    for item in items:
        if part_of(item.id, parts) != part:
            continue
        stem = (item.kind, shards.key_stem(item.id))  # per source: a CC3M key may equal a WebVid id
        if stem in seen:
            rejects.add(item.id, "duplicate_id", f"{item.path}: its key is that of {seen[stem]}")
            continue
        try:
            sample, cut = pair_sample(item, cfg)
        except RejectError as err:
            rejects.add(item.id, err.reason, err.detail)
            continue
        seen[stem] = item.id
        sinks.truncated += cut
        sinks.add(item.kind, item.id, sample)
    sinks.close()
    return sinks
