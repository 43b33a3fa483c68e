"""Bit-exact video encoding: numpy RGB->YUV, then single-threaded H.264 / VP8 / VP9 through PyAV.

Both halves exist so that the corpus bytes depend on nothing but the config: not on the
number of worker processes, not on the CPU's SIMD extensions, not on the clock.
"""
from __future__ import annotations

import platform
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from tvts.data.demo.config import DemoConfig


def rgb_to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV 4:2:0, packed as PyAV's yuv420p arrays.

    Done in numpy rather than swscale so the bytes do not depend on CPU-specific
    SIMD code paths.

    Args:
        frames: (T, H, W, 3) uint8 RGB, H and W multiples of 4.
    Returns:
        (T, H * 3 // 2, W) uint8: the Y plane, then U and V planes.
    """
    rgb = frames.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    t, h, w = y.shape

    def sub(p: np.ndarray) -> np.ndarray:   # 2x2 average, then packed into (H/4, W) rows
        return p.reshape(t, h // 2, 2, w // 2, 2).mean(axis=(2, 4)).reshape(t, h // 4, w)

    planes = np.concatenate([y, sub(u), sub(v)], axis=1)
    return np.clip(np.rint(planes), 0, 255).astype(np.uint8)


def _x264_asm() -> str:
    """The x264 CPU mask that gives the same bytes on every run and every machine.

    Measured with x264 core 165 on an AVX-512 CPU: with all extensions the output of
    the same frames varied from one encode to the next inside one process (so with
    the worker count); up to SSE2 it is stable and identical to x264's pure C path,
    which is what other architectures get.
    """
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
    return "MMX2,SSE,SSE2" if x86 else "0"


def encoder_options(codec: str, cfg: DemoConfig) -> dict[str, str]:
    """Single-threaded constant-quality options for libx264 / libvpx(-vp9)."""
    if codec == "libx264":
        return {"crf": str(cfg.h264_crf), "preset": cfg.h264_preset, "threads": "1",
                "x264-params": f"asm={_x264_asm()}"}
    opts = {"crf": str(cfg.vpx_crf), "threads": "1", "deadline": "good", "cpu-used": "4"}
    # VP8 needs a bitrate cap in CRF mode; VP9 takes b=0 as constant quality.
    opts["b"] = "0" if codec == "libvpx-vp9" else "1M"
    if codec == "libvpx-vp9":
        opts["row-mt"] = "0"
    return opts


def encode_video(path: Path, yuv: np.ndarray, codec: str, cfg: DemoConfig) -> None:
    """Encode yuv420p frames bit-exactly (no wall-clock metadata, one thread).

    Args:
        path: output .mp4 (H.264) or .webm (VP8/VP9) file.
        yuv: (T, H * 3 // 2, W) uint8 from `rgb_to_yuv420p`.
        codec: "libx264", "libvpx" or "libvpx-vp9".
        cfg: fps and quality settings.
    """
    import av   # imported here so that planning and tests of text need no FFmpeg

    fmt = "mp4" if codec == "libx264" else "webm"
    with av.open(str(path), "w", format=fmt, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=cfg.fps, options=encoder_options(codec, cfg))
        stream.width, stream.height, stream.pix_fmt = cfg.size, cfg.size, "yuv420p"
        stream.time_base = Fraction(1, cfg.fps)
        stream.codec_context.thread_count = 1
        stream.codec_context.gop_size = cfg.fps     # a key frame every second: cheap seeks
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        for k, plane in enumerate(yuv):
            frame = av.VideoFrame.from_ndarray(plane, format="yuv420p")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def encoder_versions() -> dict[str, Any]:
    """The versions the bytes depend on (PyAV, numpy, FFmpeg's libraries), for the manifest."""
    import av

    return {"av": av.__version__, "numpy": np.__version__,
            "ffmpeg": {k: ".".join(map(str, v)) for k, v in sorted(av.library_versions.items())}}
