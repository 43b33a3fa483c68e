"""A look at shard samples: a text summary of a window, and a contact sheet of frames."""
from __future__ import annotations

import numpy as np
from PIL import Image


def describe(meta: dict) -> str:
    """A window's video, times and K transcripts, one line each."""
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
