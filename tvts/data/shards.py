"""WebDataset tar shards of windows: stored JPEG frames + K transcripts + their times.

One sample per window, key `<video_id>_wNNN` (WebDataset keys may not contain dots):
    <key>.json        video id, source, window/clip times, transcripts, frame times
    <key>.fNNN.jpg    the stored frames, in time order
Shards are byte-reproducible: fixed tar metadata (mtime 0, fixed owner) and deterministic
JPEG encoding, written in a fixed sample order.

Beside each split's shards, `<split>-index.json` holds every sample's member offsets and sizes
(written by `shard_clips` as it writes the shards), so a trainer's ranks read it instead of
scanning every tar header at start-up. A missing or stale index (shards added, removed or of
another size) is rebuilt from the headers with a warning.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from tvts.io import atomic_write_json, disk_errors

SPLITS = ("train", "val")
INDEX_VERSION = 1
log = logging.getLogger("tvts.data.shards")
Members = dict[str, tuple[int, int]]  # field -> (offset, size) of its data inside the tar


# Why a sample could not be read, as counted when training skips it (tvts.train.data), by the
# start of the message.
BAD_SAMPLE_REASONS = {"not a readable JPEG": "unreadable_jpeg", "invalid JSON": "bad_json",
                      "not a window sample": "bad_json", "not a pair sample": "bad_json",
                      "missing member": "missing_member", "no ": "missing_member"}
REASONS = ("unreadable_jpeg", "bad_json", "missing_member", "bad_sample")


class ShardError(ValueError):
    """A malformed sample in a shard: the message names the shard and the member; `reason` is
    one of `REASONS`."""

    def __init__(self, shard: str | Path, member: str, msg: str):
        super().__init__(f"{shard}: {member}: {msg}")
        self.reason = next((r for start, r in BAD_SAMPLE_REASONS.items() if msg.startswith(start)), "bad_sample")


def parse_meta(data: bytes | None, shard: str | Path, key: str) -> dict:
    """A sample's `json` member as a dict.

    Raises:
        ShardError: the member is absent, not JSON, or holds no `clips` list.
    """
    if data is None:
        raise ShardError(shard, f"{key}.json", "missing member (the sample has no json)")
    try:
        meta = json.loads(data)
    except ValueError as err:  # JSONDecodeError, or bytes that are not UTF-8
        raise ShardError(shard, f"{key}.json", f"invalid JSON ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("clips"), list):
        raise ShardError(shard, f"{key}.json", "not a window sample (no 'clips' list)")
    return meta


def open_jpeg(data: bytes, shard: str | Path, member: str) -> Image.Image:
    """One stored frame as an RGB image.

    Raises:
        ShardError: naming the member when it does not decode.
    """
    try:
        return Image.open(io.BytesIO(data)).convert("RGB")
    except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise ShardError(shard, member, f"not a readable JPEG ({err})") from None


def decode_rgb(data: bytes, shard: str | Path, member: str, decoder: str = "simplejpeg") -> np.ndarray:
    """One stored frame as (H, W, 3) uint8, by libjpeg-turbo through simplejpeg (about 1.5x
    faster than PIL, no Image object) or through PIL. Both run libjpeg-turbo's default (exact)
    IDCT and fancy upsampling, so they give the same pixels (tests/test_loader.py checks it).
    `simplejpeg-fast` replicates the chroma instead of interpolating it (libjpeg's fast
    upsampling): ~1.6x faster again, other pixels (a few grey levels at colour edges).

    Raises:
        ShardError: naming the member when it does not decode.
    """
    if decoder == "pil":
        return np.asarray(open_jpeg(data, shard, member))
    import simplejpeg

    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", fastupsample=decoder == "simplejpeg-fast")
    except (ValueError, TypeError) as err:
        raise ShardError(shard, member, f"not a readable JPEG ({err})") from None


def split_of(video_id: str, val_fraction: float) -> str:
    """Train/val split by a hash of the video id: stable, and never splits one video."""
    h = int.from_bytes(hashlib.md5(video_id.encode("utf-8")).digest()[:8], "little") / 2**64
    return "val" if h < val_fraction else "train"


def key_stem(video_id: str) -> str:
    """The video's part of its sample keys: WebDataset keys may not hold dots, so ids that
    differ only in such characters (`a.b`, `a_b`) share a stem."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in video_id)


def sample_key(video_id: str, window_index: int) -> str:
    return f"{key_stem(video_id)}_w{window_index:03d}"


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality, subsampling=2, optimize=False)
    return buf.getvalue()


def make_sample(key: str, meta: dict, frames: np.ndarray, quality: int) -> dict[str, bytes]:
    """A WebDataset sample dict: `__key__`, `json`, and one `fNNN.jpg` per frame."""
    sample = {"__key__": key, "json": json.dumps(meta, sort_keys=True).encode("utf-8")}
    for i, frame in enumerate(frames):
        sample[f"f{i:03d}.jpg"] = encode_jpeg(frame, quality)
    return sample


class TarStream:
    """One shard being written, a sample at a time (never a whole shard in memory).

    The members are those WebDataset's `TarWriter` writes (PAX stream, sorted fields, mode 0444,
    fixed owner and mtime 0), without importing webdataset (and torch with it) in every decoding
    job. A full disk raises `No space left on device: <path>` (tvts.io.disk_errors).
    """

    def __init__(self, path: Path):
        self.path = path
        with disk_errors(path):
            self.file = open(path, "wb")
        self.tar = tarfile.open(fileobj=self.file, mode="w|")

    def write(self, sample: dict[str, bytes]) -> None:
        key = sample["__key__"]
        with disk_errors(self.path):
            try:
                for field in sorted(k for k in sample if not k.startswith("_")):
                    info = tarfile.TarInfo(f"{key}.{field}")
                    info.size, info.mtime, info.mode = len(sample[field]), 0, 0o444
                    info.uname = info.gname = "tvts"
                    self.tar.addfile(info, io.BytesIO(sample[field]))
            except BaseException:
                self.abort()
                raise

    def close(self) -> int:
        """Finish the tar. Returns its size in bytes."""
        with disk_errors(self.path):
            try:
                self.tar.close()
                self.file.close()
            except BaseException:
                self.abort()
                raise
        return self.path.stat().st_size

    def abort(self) -> None:
        _abandon(self.tar, self.file)
        self.file.close()


def _write_tar(path: Path, samples: list[dict[str, bytes]]) -> int:
    """Write one shard; a full disk raises `No space left on device: <path>` (tvts.io.disk_errors)."""
    tar = TarStream(path)
    for s in samples:
        tar.write(s)
    return tar.close()


def _abandon(tar: tarfile.TarFile, f) -> None:
    """Drop a tar stream that failed mid-write without finishing it: left alone, it writes its
    end blocks at garbage collection into the file already closed, and 'ValueError: write to
    closed file' is the last line a user sees instead of the real error."""
    tar.closed = True
    if tar.fileobj is not f:  # stream mode wraps f in a tarfile._Stream, which closes itself on __del__
        tar.fileobj.closed = True


class ShardSink:
    """Writes samples of one split into `<split>-NNNNNN.tar` as they come (one sample in memory),
    never an empty shard, and keeps each written shard's index entry (`write_index` saves them)."""

    def __init__(self, out_dir: Path, split: str, samples_per_shard: int):
        self.out_dir, self.split, self.per_shard = out_dir, split, samples_per_shard
        self.open: TarStream | None = None
        self.in_open = 0
        self.shards: list[str] = []
        self.index: list[dict] = []
        self.n_samples = 0
        self.n_bytes = 0

    def add(self, sample: dict[str, bytes]) -> None:
        if self.open is None:
            self.open = TarStream(self.out_dir / f"{self.split}-{len(self.shards):06d}.tar")
        self.open.write(sample)
        self.in_open += 1
        self.n_samples += 1
        if self.in_open >= self.per_shard:
            self.flush()

    def flush(self) -> None:
        """Finish the shard being written, if any."""
        if self.open is None:
            return
        tar, self.open, self.in_open = self.open, None, 0
        self.n_bytes += tar.close()
        self.shards.append(tar.path.name)
        self.index.append(index_entry(tar.path))

    def write_index(self) -> None:
        atomic_write_json(index_path(self.out_dir, self.split), {"version": INDEX_VERSION, "split": self.split,
                                                                  "shards": self.index})


def iter_tar_members(tar: tarfile.TarFile, shard: str | Path | None = None
                     ) -> Iterator[tuple[str, list[tarfile.TarInfo]]]:
    """Group an open shard's members into samples: (key, members), consecutive members sharing a key.

    Raises:
        ShardError: naming the shard (`shard`, else the tar's name), the member and the cause: a
            link member, a path outside the shard, or a truncated tar.
    """
    shard = shard or tar.name
    key, members = None, []
    for member in _checked_members(tar, shard):
        k = member.name.partition(".")[0]
        if members and k != key:
            yield key, members
            members = []
        key = k
        members.append(member)
    if members:
        yield key, members


def _checked_members(tar: tarfile.TarFile, shard: str | Path) -> Iterator[tarfile.TarInfo]:
    """The tar's members, each a regular file inside the shard (what `ShardSink` writes)."""
    members, last = iter(tar), None
    while True:
        try:
            member = next(members)
        except StopIteration:
            return
        except tarfile.TarError as err:  # e.g. "unexpected end of data": the file was cut short
            raise ShardError(shard, last.name if last else "<first member>", f"truncated tar ({err})") from None
        name = member.name
        if member.issym() or member.islnk():
            kind = "symlink" if member.issym() else "hardlink"
            raise ShardError(shard, name, f"link member ({kind} to {member.linkname!r}); a shard holds files only")
        if name.startswith("/") or ".." in name.split("/"):
            raise ShardError(shard, name, "path outside the shard (absolute or ../)")
        if not member.isfile():
            raise ShardError(shard, name, "not a regular file member")
        last = member
        yield member


def open_tar(path: str | Path) -> tarfile.TarFile:
    """Raises:
        ShardError: naming the shard when it is not a readable tar (empty, cut in its first header).
    """
    try:
        return tarfile.open(path, "r")
    except tarfile.TarError as err:
        raise ShardError(path, "<first member>", f"not a readable tar ({err})") from None


def iter_tar_samples(path: str | Path) -> Iterator[dict[str, bytes]]:
    """A shard's samples as WebDataset dicts: `__key__` plus one entry per field.

    Raises:
        ShardError: naming the shard, the member and the cause (iter_tar_members).
    """
    with open_tar(path) as tar:
        for key, members in iter_tar_members(tar, path):
            sample = {"__key__": key}
            for m in members:
                try:
                    sample[m.name.partition(".")[2]] = tar.extractfile(m).read()
                except tarfile.TarError as err:
                    raise ShardError(path, m.name, f"truncated tar ({err})") from None
            yield sample


def tsn_indices(n_stored: int, n_frames: int, rng: np.random.Generator | None) -> np.ndarray:
    """One index per equal segment of the stored frames: random (train) or centre (eval)."""
    edges = np.linspace(0, n_stored, n_frames + 1)
    if rng is None:
        pos = (edges[:-1] + edges[1:]) / 2
    else:
        pos = rng.uniform(edges[:-1], edges[1:])
    return np.clip(np.floor(pos).astype(np.int64), 0, n_stored - 1)


def decode_sample(sample: dict[str, bytes], n_frames: int, rng: np.random.Generator | None = None,
                  where: str | Path = "<shard>") -> tuple[np.ndarray, dict]:
    """Decode a window sample into (n_frames, H, W, 3) uint8 frames sampled TSN-style, and its meta.

    Args:
        where: the shard the sample came from, for error messages.
    Raises:
        ShardError: a missing or malformed member, named.
    """
    key = str(sample.get("__key__"))
    meta = parse_meta(sample.get("json"), where, key)
    names = sorted(k for k in sample if k.endswith(".jpg"))
    if not names:
        raise ShardError(where, key, "no .jpg frame members")
    idx = tsn_indices(len(names), n_frames, rng)
    frames = np.stack([decode_rgb(sample[names[i]], where, f"{key}.{names[i]}") for i in idx])
    return frames, meta


def list_shards(shard_dir: str | Path, split: str) -> list[Path]:
    return sorted(Path(shard_dir).glob(f"{split}-*.tar"))


def index_path(shard_dir: str | Path, split: str) -> Path:
    return Path(shard_dir) / f"{split}-index.json"


def tar_members(path: str | Path) -> list[tuple[str, Members]]:
    """Scan one tar's headers (not its data): (key, members) per sample, in order."""
    with open_tar(path) as tar:
        return [(key, {m.name.partition(".")[2]: (m.offset_data, m.size) for m in members})
                for key, members in iter_tar_members(tar, path)]


def index_entry(path: Path) -> dict:
    return {"name": path.name, "size": path.stat().st_size,
            "samples": [[key, members] for key, members in tar_members(path)]}


def read_index(shard_dir: str | Path, split: str) -> list[tuple[Path, str, Members]]:
    """(shard, key, members) of every sample of a split, in shard order, from `<split>-index.json`;
    rebuilt from the tar headers (with a warning) when the index is missing or stale."""
    paths = list_shards(shard_dir, split)
    where = index_path(shard_dir, split)
    entries, why = _load_index(where, paths)
    if why:
        log.warning("shard index %s %s; rebuilding it from the tar headers", where, why)
        entries = [index_entry(p) for p in paths]
        try:
            atomic_write_json(where, {"version": INDEX_VERSION, "split": split, "shards": entries})
        except OSError:  # a read-only shard folder: use the rebuilt index without saving it
            pass
    return [(path, key, {f: (int(o), int(n)) for f, (o, n) in members.items()})
            for path, entry in zip(paths, entries) for key, members in entry["samples"]]


def _load_index(where: Path, paths: list[Path]) -> tuple[list[dict], str]:
    """The index's entries, or [] and why it cannot be used."""
    if not where.is_file():
        return [], "is missing"
    try:
        index = json.loads(where.read_text(encoding="utf-8"))
        entries = index["shards"]
        if index.get("version") != INDEX_VERSION:
            return [], f"has version {index.get('version')!r}, not {INDEX_VERSION}"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [], f"is unreadable ({err})"
    listed = [(e["name"], e["size"]) for e in entries]
    found = [(p.name, p.stat().st_size) for p in paths]
    if listed != found:
        return [], f"is stale (it lists {len(listed)} shards, the folder holds {len(found)}, or their sizes differ)"
    return entries, ""

