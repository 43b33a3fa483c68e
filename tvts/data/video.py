"""Video decoding with decord, and where in a window the stored frames are taken."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tvts.io import RejectError


@dataclass(frozen=True)
class VideoMeta:
    fps: float
    n_frames: int

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps


def open_video(path: str | Path):
    """Open a video with decord (one decoding thread: we parallelise over videos instead).

    Raises:
        RejectError: missing_video or video_unreadable.
    """
    import decord

    if not Path(path).exists():
        raise RejectError("missing_video", str(path))
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        if len(vr) == 0 or not vr.get_avg_fps() > 0:
            raise RejectError("video_unreadable", f"{path}: no frames")
        return vr
    except RejectError:
        raise
    except Exception as err:  # decord raises DECORDError / RuntimeError on corrupt input
        raise RejectError("video_unreadable", f"{path}: {err}") from err


def probe_duration(path: str | Path) -> float | None:
    """A video's length in seconds from its container header (PyAV; nothing is decoded).

    Returns:
        The duration, or None when the container cannot be opened or gives none (a corrupt
        file is shard_clips' reject, `video_unreadable`, as before).
    """
    import av

    try:
        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / av.time_base
            stream = container.streams.video[0]
            return float(stream.duration * stream.time_base) if stream.duration else None
    except Exception:  # noqa: BLE001 - FFmpeg's errors, a file without a video stream, ...
        return None


def video_meta(vr) -> VideoMeta:
    return VideoMeta(fps=float(vr.get_avg_fps()), n_frames=len(vr))


def segment_times(start: float, end: float, n: int) -> np.ndarray:
    """Centres of n equal segments of [start, end): evenly spread stored frames."""
    edges = np.linspace(start, end, n + 1)
    return (edges[:-1] + edges[1:]) / 2


def frame_indices(times: np.ndarray, meta: VideoMeta) -> np.ndarray:
    """The frame shown at each time (floor), clipped to the video."""
    return np.clip(np.floor(times * meta.fps).astype(np.int64), 0, meta.n_frames - 1)


def decode_frames(vr, indices: np.ndarray, path: str | Path = "") -> np.ndarray:
    """Decode the given frame indices as (N, H, W, 3) uint8.

    Raises:
        RejectError: video_unreadable when decoding fails part-way (e.g. a truncated file).
    """
    try:
        return vr.get_batch([int(i) for i in indices]).asnumpy()
    except Exception as err:
        raise RejectError("video_unreadable", f"{path}: decoding failed: {err}") from err


def resize_short_side(frame: np.ndarray, short_side: int) -> np.ndarray:
    """Bilinear resize so that min(H, W) == short_side (docs/method.md, 'Short-side resize and crops')."""
    h, w = frame.shape[:2]
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return frame
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))
