"""Shard sets: the training data as the union of shard *parts*, local or behind a URL.

A part is a folder (or URL prefix) that `shard_clips` wrote: `{train,val}-NNNNNN.tar`,
`<split>-index.json` (every sample's member offsets), `manifest.json`, `rejects.jsonl`.
A set file (`set.json`, written by the `shard_union` rule) lists the parts:

    {"version": 1, "parts": ["part-0", ...], "counts": {...}, "rejects": {...}, "parts_md5": {...}}

with part entries relative to the set file's folder, absolute paths, or URLs. A spec is a set
file (path or URL ending in `.json`), a folder holding `set.json`, or one part (a plain shard
folder, or a URL prefix). Specs stay strings: `Path` would collapse the `//` of a URL.

Local members are read with `os.pread` (no shared file offset, so forked workers read
concurrently); remote ones by ranged GETs (fsspec: one per sample, the span of its members, or
one per member read alone), a failed request retried twice. A remote part's index is fetched
once per split; when it has none, the tar headers are streamed to rebuild it, with a warning.
A remote index is trusted as it is (a listing of the tars would cost a request per shard).
`pipe:` URLs (WebDataset's sequential streams) cannot serve a member by offset and are refused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from tvts.data.shards import INDEX_VERSION, Members, iter_tar_members, read_index
from tvts.io import InputUnavailable

log = logging.getLogger("tvts.data.shardset")
SET_VERSION = 1
SET_FILE = "set.json"
RETRY_PAUSES_S = (1.0, 4.0)  # between the attempts of a remote read that failed other than by a 404


class ShardSetError(OSError):
    """A shard set that cannot be read: the message names the file or URL."""


class Unavailable(ShardSetError, InputUnavailable):
    """A remote shard or index unreachable past the retries (exit 75: retry the job later)."""


class StaleIndex(ShardSetError):
    """A shard changed after its index was read: its members are no longer where the index says."""


def is_url(spec: str) -> bool:
    return "://" in spec or spec.startswith("pipe:")


def local_path(spec: str) -> str | None:
    """The filesystem path of a plain path or `file://` URL; None for any other URL.

    Raises:
        ShardSetError: for `pipe:` URLs, which only stream a tar from its start.
    """
    if spec.startswith("pipe:"):
        raise ShardSetError(f"{spec}: the pipe: scheme is not supported (a map-style loader reads each "
                            "member by its offset); serve the shards over http(s):// or s3://, or a path")
    if not is_url(spec):
        return spec
    url = urlparse(spec)
    return unquote(url.path) if url.scheme == "file" else None


def join(base: str, name: str) -> str:
    """`base/name` for a path or URL prefix; an absolute path or a URL `name` stands alone."""
    if is_url(name) or os.path.isabs(name):
        return name
    return base.rstrip("/") + "/" + name


class Remote:
    """Whole-file and ranged reads of URLs through fsspec, one filesystem per scheme and process
    (fsspec's HTTP client runs an event loop that a forked worker must not share)."""

    def __init__(self):
        self._fs: dict[str, object] = {}
        self._pid = os.getpid()
        self._warned: set[str] = set()

    def fs(self, url: str):
        if os.getpid() != self._pid:
            self._fs, self._pid = {}, os.getpid()
        scheme = urlparse(url).scheme
        if scheme not in self._fs:
            import fsspec

            try:
                self._fs[scheme] = fsspec.filesystem(scheme)
            except (ImportError, ValueError) as err:  # e.g. s3:// without s3fs installed
                raise ShardSetError(f"{url}: cannot open the {scheme}:// scheme ({err})") from None
        return self._fs[scheme]

    def read(self, url: str, start: int | None = None, size: int | None = None) -> bytes:
        """The file, or `size` bytes from `start` (one ranged request).

        Raises:
            ShardSetError: naming the URL (missing or short); `Unavailable` when unreachable
                past the retries.
        """
        end = None if start is None else start + size
        fs = self.fs(url)
        for attempt, pause in enumerate((*RETRY_PAUSES_S, None)):
            try:
                data = fs.cat_file(url, start=start, end=end)
                break
            except FileNotFoundError as err:  # a 404 is not transient
                raise ShardSetError(f"{url}: cannot read ({type(err).__name__}: {err})") from None
            except Exception as err:  # aiohttp's, botocore's ...: a long run outlives a network blip
                if pause is None:  # an outage: the job exits 75 (tvts.stages.common), to be retried later
                    raise Unavailable(f"{url}: cannot read after {attempt + 1} attempts "
                                      f"({type(err).__name__}: {err})") from None
                log.warning("%s: %s (%s); retrying in %.1f s", url, type(err).__name__, err, pause)
                time.sleep(pause)
        if size is not None and len(data) != size:
            return self._whole_file_reply(url, data, start, size)
        return data

    def _whole_file_reply(self, url: str, data: bytes, start: int, size: int) -> bytes:
        """A server that ignores `Range` (Python's `http.server`) sends the whole file: slice it,
        and say once per host that every member read downloads its whole shard."""
        if len(data) < start + size:
            raise ShardSetError(f"{url}: read {len(data)} bytes at {start}, expected {size} (truncated?)")
        host = urlparse(url).netloc
        if host not in self._warned:
            self._warned.add(host)
            log.warning("%s ignores HTTP Range requests: every member read downloads its whole shard "
                        "(serve the shards with a server that supports ranges: nginx, S3, ...)", host)
        return data[start:start + size]

    def open_stream(self, url: str):
        """A file read once from its start (no `Range` needed: HTTP gets a streaming file)."""
        extra = {"block_size": 0} if urlparse(url).scheme in ("http", "https") else {}
        return self.fs(url).open(url, "rb", **extra)

    def __getstate__(self) -> dict:
        return {"_fs": {}, "_pid": -1, "_warned": set()}


class MemberReader:
    """Reads a byte range of a shard (a member, or a sample's span): pread of a local path,
    a ranged GET of a URL."""

    def __init__(self):
        self._fds: dict[str, int] = {}
        self.remote = Remote()

    def read(self, shard: str, offset: int, size: int) -> bytes:
        path = local_path(shard)
        if path is None:
            return self.remote.read(shard, offset, size)
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        return os.pread(fd, size, offset)

    def __getstate__(self) -> dict:  # spawned workers open their own descriptors
        return {"_fds": {}, "remote": Remote()}


@dataclass(frozen=True)
class SampleRef:
    shard: str                            # a path or URL
    key: str                              # `<video>_wNNN` (tvts.data.shards.sample_key)
    members: Members                      # field -> (offset, size) inside the tar

    @property
    def video(self) -> str:
        return self.key.rpartition("_w")[0]


class ShardSet:
    """The parts of a shard set, in order, and what identifies their data."""

    def __init__(self, spec: str, parts: tuple[str, ...], identity: bytes | None = None):
        """Args:
            identity: the set file's bytes; None for one part, whose manifest.json is read when needed.
        """
        self.spec, self.parts, self._identity = spec, parts, identity
        self._refs: dict[str, list[SampleRef]] = {}  # per split: a remote index is fetched once

    def __getstate__(self) -> dict:  # workers get the refs from their dataset, not a second copy
        return self.__dict__ | {"_refs": {}}

    def __repr__(self) -> str:
        return f"ShardSet({self.spec!r}, parts={self.parts!r})"

    def fingerprint(self) -> str:
        """A stable hash of what is trained on: the set file, or the one part's manifest.json.

        Raises:
            ShardSetError: the manifest cannot be read (naming it).
        """
        if self._identity is None:
            self._identity = read_bytes(join(self.parts[0], "manifest.json"))
        return hashlib.sha256(self._identity).hexdigest()

    def refs(self, split: str) -> list[SampleRef]:
        """One SampleRef per sample of `split`, the parts' samples in part order (read once per set)."""
        if split not in self._refs:
            self._refs[split] = [SampleRef(shard, key, members) for part in self.parts
                                 for shard, key, members in part_index(part, split)]
        return self._refs[split]


def open_shard_set(spec: str | Path) -> ShardSet:
    """The shard set named by `spec` (see the module docstring).

    Raises:
        ShardSetError: naming what could not be read or parsed.
    """
    spec = str(spec)
    path = local_path(spec)
    if path is not None and os.path.isdir(path) and os.path.isfile(os.path.join(path, SET_FILE)):
        return _open_set_file(join(spec, SET_FILE))
    if spec.endswith(".json"):
        return _open_set_file(spec)
    return ShardSet(spec, (spec,))


def _open_set_file(spec: str) -> ShardSet:
    data = read_bytes(spec)
    try:
        doc = json.loads(data)
        parts, version = doc["parts"], doc.get("version")
    except (ValueError, KeyError, TypeError) as err:
        raise ShardSetError(f"{spec}: not a shard set file ({err})") from None
    if version != SET_VERSION:
        raise ShardSetError(f"{spec}: set version {version!r}, not {SET_VERSION}")
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        raise ShardSetError(f"{spec}: 'parts' must be a non-empty list of paths or URLs")
    base = spec.rpartition("/")[0] if "/" in spec else "."
    return ShardSet(spec, tuple(join(base, p) for p in parts), data)


_REMOTE = Remote()


def read_bytes(spec: str) -> bytes:
    """A whole small file (set file, manifest, index) from a path or URL.

    Raises:
        ShardSetError: naming it when it is missing or unreadable.
    """
    path = local_path(spec)
    if path is None:
        return _REMOTE.read(spec)
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ShardSetError(f"{spec}: cannot read ({err.strerror or err})") from None


def part_index(part: str, split: str) -> list[tuple[str, str, Members]]:
    """(shard, key, members) of every sample of one part's split. A local part is checked
    against its folder (tvts.data.shards.read_index); a remote one trusts its index."""
    path = local_path(part)
    if path is not None:
        if not os.path.isdir(path):
            raise ShardSetError(f"{part}: no such shard folder")
        return [(str(p), key, members) for p, key, members in read_index(path, split)]
    return remote_index(part, split)


def remote_index(part: str, split: str) -> list[tuple[str, str, Members]]:
    """A remote part's `<split>-index.json`, fetched once; without one, its tar headers are
    streamed (the shards named by its manifest) to rebuild it, with a warning."""
    where = join(part, f"{split}-index.json")
    try:
        index = json.loads(_REMOTE.read(where))
        if index.get("version") != INDEX_VERSION:
            raise ValueError(f"version {index.get('version')!r}")
        entries = index["shards"]
    except ShardSetError as err:
        log.warning("%s; rebuilding the index from the tar headers", err)
        entries = [_remote_entry(join(part, name)) for name in _manifest_shards(part, split)]
    except (ValueError, KeyError, TypeError) as err:
        raise ShardSetError(f"{where}: not a shard index ({err})") from None
    return [(join(part, e["name"]), key, {f: (int(o), int(n)) for f, (o, n) in members.items()})
            for e in entries for key, members in e["samples"]]


def _manifest_shards(part: str, split: str) -> list[str]:
    where = join(part, "manifest.json")
    try:
        return list(json.loads(read_bytes(where))["outputs"][split])
    except (ValueError, KeyError, TypeError) as err:
        raise ShardSetError(f"{where}: lists no {split} shards ({err})") from None


def _remote_entry(url: str) -> dict:
    """One shard's index entry from its headers, the tar streamed once from its start (tarfile's
    stream mode keeps every member's data offset)."""
    try:
        with _REMOTE.open_stream(url) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            samples = [[key, {m.name.partition(".")[2]: (m.offset_data, m.size) for m in members}]
                       for key, members in iter_tar_members(tar, url)]
    except ShardSetError:
        raise
    except Exception as err:
        raise ShardSetError(f"{url}: cannot read the tar headers ({type(err).__name__}: {err})") from None
    return {"name": url.rpartition("/")[2], "samples": samples}
