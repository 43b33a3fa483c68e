"""Video decoding, and where in a window the stored frames are taken.

`shard_clips` cuts all windows of a video from one PyAV pass (`frame_table`, `decode_runs`,
`iter_frames`); the evaluations and the former per-window path read frames with decord
(`open_video`, `decode_frames`).
"""
from __future__ import annotations

import os
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


# ----------------------------------------------------------------------------- one decode per video
# What a seek costs beyond decoding the keyframe it lands on, in decoded frames. Measured by
# bench/load_paper.py on 720p H.264 with a 5 s GOP, one thread: a seek plus its keyframe costs
# what one average frame does (FFmpeg's mp4 seek is an index lookup and a decoder flush; the
# I-frame costs more than the P-frames it is averaged with), i.e. ~0-1 frames. 2 keeps a margin:
# the decoder then seeks across a keyframe whenever it would otherwise decode > 2 unwanted frames.
SEEK_COST_FRAMES = 2.0


@dataclass(frozen=True)
class FrameTable:
    """Every frame's presentation time stamp in display order and whether it is a keyframe,
    read from the packets (demuxed, not decoded), as decord indexes frames."""

    pts: np.ndarray       # (n_frames,) int64, increasing
    keyframe: np.ndarray  # (n_frames,) bool
    fps: float

    @property
    def meta(self) -> VideoMeta:
        return VideoMeta(fps=self.fps, n_frames=len(self.pts))

    def keyframe_before(self) -> np.ndarray:
        """For every frame, the index of the last keyframe at or before it (0 when none)."""
        idx = np.where(self.keyframe, np.arange(len(self.pts)), 0)
        return np.maximum.accumulate(idx)


def open_container(path: str | Path):
    """Open a video with PyAV for one-thread decoding. Returns (container, its video stream).

    Raises:
        RejectError: missing_video or video_unreadable.
    """
    import av

    if not Path(path).exists():
        raise RejectError("missing_video", str(path))
    try:
        container = av.open(str(path))
        stream = container.streams.video[0]
    except Exception as err:  # noqa: BLE001 - FFmpeg's errors, a file without a video stream
        raise RejectError("video_unreadable", f"{path}: {err}") from err
    stream.thread_count = 1  # we parallelise over videos instead
    return container, stream


def frame_table(container, stream, path: str | Path = "") -> FrameTable:
    """Demux every packet of the video stream (no decoding) into a FrameTable.

    Raises:
        RejectError: video_unreadable when the stream has no frames or no frame rate.
    """
    pts, key = [], []
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                pts.append(packet.pts)
                key.append(packet.is_keyframe)
    except Exception as err:  # noqa: BLE001 - a truncated or corrupt container
        raise RejectError("video_unreadable", f"{path}: demuxing failed: {err}") from err
    rate = stream.average_rate or stream.guessed_rate
    if not pts or not rate or not float(rate) > 0:
        raise RejectError("video_unreadable", f"{path}: no frames")
    order = np.argsort(np.asarray(pts, np.int64), kind="stable")
    keyframe = np.asarray(key, bool)[order]
    keyframe[0] = True  # decoding starts at the stream's first packet, keyframe or not
    return FrameTable(pts=np.asarray(pts, np.int64)[order], keyframe=keyframe, fps=float(rate))


def decode_runs(table: FrameTable, wanted: np.ndarray, seek_cost: float) -> list[tuple[int, int]]:
    """Plan one decoder pass over `wanted` (sorted unique frame indices) as runs (start, stop):
    seek to keyframe `start`, decode on to `stop`.

    Between two wanted frames the decoder either decodes on (the frames in between) or seeks to
    the next one's keyframe (`seek_cost` plus the frames from that keyframe); the cheaper wins.
    seek_cost=inf decodes sequentially from the first wanted frame's keyframe; seek_cost=0 seeks
    whenever the next wanted frame lies beyond a keyframe.
    """
    kf = table.keyframe_before()
    runs: list[list[int]] = []
    for t in (int(i) for i in wanted):
        if runs and (kf[t] <= runs[-1][1] or t - runs[-1][1] <= seek_cost + t - kf[t]):
            runs[-1][1] = t
        else:
            runs.append([int(kf[t]), t])
    return [(a, b) for a, b in runs]


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with min(width, height) == short_side, as `resize_short_side` computes it."""
    scale = short_side / min(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def iter_frames(container, stream, table: FrameTable, wanted: np.ndarray, size: tuple[int, int],
                seek_cost: float = SEEK_COST_FRAMES, path: str | Path = ""):
    """Yield (index, (H, W, 3) uint8 frame) for every wanted frame, in index order, from one
    decoder pass planned by `decode_runs`. Frames are scaled to `size` (width, height) by
    swscale (bilinear) as they leave the decoder, so no full-size RGB frame is made.

    Raises:
        RejectError: video_unreadable when decoding fails or a wanted frame never comes out.
    """
    index = {int(p): i for i, p in enumerate(table.pts)}
    want = set(int(i) for i in wanted)
    done, n_out = -1, 0
    try:
        for start, stop in decode_runs(table, wanted, seek_cost):
            container.seek(int(table.pts[start]), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                i = index.get(frame.pts, -1) if frame.pts is not None else -1
                if i > done and i in want:
                    done, n_out = i, n_out + 1
                    yield i, frame.to_ndarray(width=size[0], height=size[1], format="rgb24",
                                              interpolation="BILINEAR")
                if i >= stop:
                    break
    except RejectError:
        raise
    except Exception as err:  # noqa: BLE001 - FFmpeg's errors on a corrupt or truncated stream
        raise RejectError("video_unreadable", f"{path}: decoding failed: {err}") from err
    if n_out != len(want):
        raise RejectError("video_unreadable", f"{path}: decoding gave {n_out} of the {len(want)} frames wanted")


# ----------------------------------------------------------------------------- GPU decoding
def check_gpu_decoder() -> None:
    """Raise ConfigError with one line saying what is missing for `shard_clips.decoder: gpu`."""
    from tvts.config import ConfigError

    try:
        import torch
        import torchcodec  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"shard_clips.decoder: gpu needs torchcodec (pip install torchcodec) and a CUDA "
                         f"build of torch ({err}); set shard_clips.decoder: cpu") from None
    # NVML's device count, not the CUDA runtime's: the decoding workers are forked after this
    # check, and a CUDA runtime initialised in their parent cannot be used in them.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    if not torch.cuda.is_available():
        raise ConfigError("shard_clips.decoder: gpu needs a CUDA device, and torch sees none; "
                         "set shard_clips.decoder: cpu")


def iter_frames_gpu(path: str | Path, wanted: np.ndarray, size: tuple[int, int], batch: int = 64):
    """Like `iter_frames`, decoding with NVDEC through torchcodec and scaling on the GPU
    (bilinear, antialiased). The frames differ from the CPU path's by rounding: shards made
    with one decoder are reproducible, not equal to the other's.

    Raises:
        RejectError: video_unreadable when torchcodec cannot decode the file.
    """
    import torch
    import torch.nn.functional as F
    from torchcodec.decoders import VideoDecoder

    try:
        decoder = VideoDecoder(str(path), device="cuda", seek_mode="exact")
        for start in range(0, len(wanted), batch):
            chunk = [int(i) for i in wanted[start:start + batch]]
            data = decoder.get_frames_at(indices=chunk).data                     # (B, 3, H, W) uint8, cuda
            scaled = F.interpolate(data.float(), size=(size[1], size[0]), mode="bilinear", antialias=True,
                                   align_corners=False)
            out = scaled.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            yield from zip(chunk, out)
    except RuntimeError as err:  # torchcodec's decoding errors
        raise RejectError("video_unreadable", f"{path}: GPU decoding failed: {err}") from err
