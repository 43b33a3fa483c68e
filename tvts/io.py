"""Atomic file output, manifests and rejects: how every stage writes to disk.

Every output goes to a temporary sibling first and is renamed into place, so a job
killed mid-write never leaves a partial file that Snakemake would take as complete.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger("tvts.io")

_VERSIONED = ("tvts", "torch", "torchvision", "timm", "transformers", "decord", "av",
              "webdataset", "numpy", "rapidfuzz", "ftfy", "mlflow", "snakemake", "dvc")


def _tmp_sibling(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def disk_errors(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a full disk (ENOSPC) as one OSError that says so and names `path`.

    Python's own error names no file, and a writer torn down after it (a tar stream, a buffered
    file) can bury it under a later error such as 'write to closed file'.
    """
    try:
        yield
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise OSError(errno.ENOSPC, f"No space left on device: {path}") from err


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    Args:
        path: the final file name.
    Yields:
        A temporary file path to write to (it exists and is empty).
    Raises:
        OSError: `No space left on device: <path>` when the disk fills (the temporary file removed).
    """
    final = Path(path)
    with disk_errors(final):
        tmp = _tmp_sibling(final)
        try:
            yield tmp
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; it replaces `path` on success."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temp_dirs(out: str | os.PathLike) -> list[Path]:
    """Delete the temp folders that killed runs of this stage left beside `out` (`io.atomic_dir`
    names them `.<name>.XXXXXXXX.tmp`) before a stage writes `out` again. Returns them.

    Any such folder is a dead writer's: Snakemake locks an output, so one job at a time writes
    `out` (the same holds across Snakemake processes on one working directory). Other outputs'
    temp files and folders, e.g. those of align_asr parts running beside this job, do not match.
    """
    out = Path(out)
    name = re.compile(rf"^\.{re.escape(out.name)}\.[a-z0-9_]{{8}}\.tmp$")
    stale = [p for p in out.parent.glob(f".{out.name}.*.tmp") if name.match(p.name) and p.is_dir()]
    for path in stale:
        log.warning("removing %s, left by a killed run", path)
        shutil.rmtree(path, ignore_errors=True)
    return stale


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's content, read in blocks (a checkpoint's or a download's identity)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(obj, indent=indent, sort_keys=True, default=to_jsonable, ensure_ascii=False)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps(obj) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Write one compact JSON object per line; returns the number of rows."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(dumps(row, indent=None) + "\n")
            n += 1
    return n


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded safely; the message names the file."""


def load_weights(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """`torch.load(weights_only=True)`: the one place any checkpoint is unpickled.

    No pickled code ever runs. PyTorch's own error for a file that needs more than weights
    advises `weights_only=False`, which is exactly what must not be done with a file of unknown
    origin, so both failures get our message and PyTorch's is kept only as the cause.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a pickle that is not weights-only, or a truncated or corrupt file.
    """
    import pickle

    import torch  # deferred: most stages never load a checkpoint

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        detail = next((ln.strip() for ln in str(err).splitlines() if "Unsupported" in ln), "")
        raise CheckpointError(f"{path}: not a tvts checkpoint, or not a weights-only file; refusing to unpickle"
                              + (f" ({detail})" if detail else "")) from None
    except Exception as err:  # noqa: BLE001 - a damaged zip raises RuntimeError, random bytes KeyError, ...
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated or corrupt: {first})") from err


class RejectError(Exception):
    """A sample that is skipped and counted in rejects.jsonl, never fatal for the stage."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InputUnavailable(OSError):
    """A remote input that stayed unreachable past its retries. A command line exits 75
    (EX_TEMPFAIL, as for preemption): the scheduler retries the job later instead of failing it."""


@dataclass
class Rejects:
    """Samples skipped by a stage, each with a reason; written to rejects.jsonl."""

    stage: str
    rows: list[dict] = field(default_factory=list)

    def add(self, item: str, reason: str, detail: str = "") -> None:
        self.rows.append({"stage": self.stage, "item": item, "reason": reason, "detail": detail[:500]})

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r["reason"] for r in self.rows).items()))

    def __len__(self) -> int:
        return len(self.rows)

    def write(self, path: str | os.PathLike) -> None:
        atomic_write_jsonl(path, self.rows)


def write_manifest(path: str | os.PathLike, *, stage: str, inputs: dict, config: Any,
                   counts: dict, rejects: Rejects, timings: dict | None = None,
                   outputs: dict | None = None) -> dict:
    """Write the small JSON that says what produced an output directory.

    Returns:
        The manifest as a dict (what was written).
    """
    manifest = {
        "stage": stage,
        "inputs": inputs,
        "outputs": outputs or {},
        "config": config,
        "counts": counts,
        "rejects": rejects.counts(),
        "timings": timings or {},
        "versions": library_versions(),
    }
    atomic_write_json(path, manifest)
    return manifest


def sidecars(out: str | Path) -> tuple[Path, Path]:
    """The manifest and rejects paths written beside a `.jsonl` output."""
    out = Path(out)
    stem = out.name.removesuffix(".jsonl")
    return out.with_name(f"{stem}.manifest.json"), out.with_name(f"{stem}.rejects.jsonl")


@contextlib.contextmanager
def timer(timings: dict, name: str) -> Iterator[None]:
    """Accumulate wall-clock seconds under `timings[name]`."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
