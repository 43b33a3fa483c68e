"""A look at shard samples: which shards a folder or set file holds, a text summary of a sample,
and a contact sheet of frames."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tvts.data import shards

SET_FILE = "set.json"


def shard_parts(spec: str | Path) -> list[Path]:
    """The shard folders behind `spec`: a set file, a folder holding `set.json`, or one part.

    A set file is `{"version": 1, "parts": ["part-0", ...], ...}`, its parts relative to its
    folder (or absolute).

    Raises:
        ValueError: a set file that is not JSON or lists no parts, naming it.
    """
    spec = Path(spec)
    set_file = spec / SET_FILE if spec.is_dir() else spec
    if not set_file.is_file() or set_file.suffix != ".json":
        return [spec]
    try:
        parts = json.loads(set_file.read_text(encoding="utf-8-sig"))["parts"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{set_file}: not a shard set file ({err})") from None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        raise ValueError(f"{set_file}: 'parts' must be a non-empty list of folders")
    return [set_file.parent / p for p in parts]


def sample_frames(sample: dict[str, bytes], n_frames: int, where: str | Path) -> tuple[np.ndarray, dict]:
    """(frames, meta) of a window sample (n_frames, TSN-centred) or of a pair sample (at most
    n_frames of its stored ones; shards.decode_sample reads window samples only).

    Raises:
        tvts.data.shards.ShardError: a missing or malformed member, named.
    """
    key = str(sample.get("__key__"))
    try:
        meta = json.loads(sample.get("json") or b"null")
    except ValueError as err:
        raise shards.ShardError(where, f"{key}.json", f"invalid JSON ({err})") from None
    if not isinstance(meta, dict) or "clips" in meta:
        return shards.decode_sample(sample, n_frames, where=where)
    names = sorted(k for k in sample if k.endswith(".jpg"))
    if not names:
        raise shards.ShardError(where, key, "no .jpg frame members")
    idx = shards.tsn_indices(len(names), min(n_frames, len(names)), None)
    return np.stack([np.asarray(shards.open_jpeg(sample[names[i]], where, f"{key}.{names[i]}")) for i in idx]), meta


def describe(meta: dict) -> str:
    """A sample in a few lines: a window's video, times and K transcripts, or a pair's caption."""
    if "clips" not in meta:  # a captioned image or clip of shard_pairs
        return f"{meta.get('id', '?')} ({meta.get('kind', '?')}): {meta.get('caption', '')}"
    lines = [f"{meta['video_id']} window {meta['window']}: {meta['start']:.1f}-{meta['end']:.1f}s"
             f" ({len(meta['frame_times'])} frames)"]
    lines += [f"  [{c['start']:6.1f}-{c['end']:6.1f}s] {c['text']}" for c in meta["clips"]]
    return "\n".join(lines)


def contact_sheet(rows: list[np.ndarray], height: int | None = None) -> Image.Image:
    """Samples (each (T, H, W, 3) uint8) as rows of frames side by side.

    Videos differ in aspect ratio, so every frame is scaled to one height (the first sample's,
    unless given) and shorter rows are padded with black on the right.
    """
    h = height or rows[0].shape[1]
    strips = [np.concatenate([_to_height(f, h) for f in r], axis=1) for r in rows]
    width = max(s.shape[1] for s in strips)
    padded = [np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0))) for s in strips]
    return Image.fromarray(np.concatenate(padded, axis=0))


def _to_height(frame: np.ndarray, h: int) -> np.ndarray:
    if frame.shape[0] == h:
        return frame
    w = max(1, round(frame.shape[1] * h / frame.shape[0]))
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))
