"""A real-encoder YT-Temporal corpus: PyAV libx264 with a 5 s GOP and an AAC audio track, at
1280x720 and at 640x272, as real YouTube-style files are (the demo corpus is tiny square video).

Each frame carries its own index (a bright bar whose position is the index, on a drifting
gradient), so that a frame read at the wrong index shows. Kept small (short, low bitrate,
`ultrafast`) so that a corpus is made in seconds.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np

SUBSET = "subset_0"
WORDS = ("red ball rolls left blue cube jumps up green ring spins round small star falls down "
         "the box opens wide a cat walks by").split()


def frame_yuv(index: int, width: int, height: int) -> np.ndarray:
    """Frame `index` as PyAV's yuv420p array (made in YUV: no colour conversion to pay): a
    luma gradient drifting with time, chroma that changes with time, and a white bar at
    x = 8 * (index % (width / 8))."""
    x = (np.arange(width) + 3 * index).astype(np.uint8)
    y = (np.arange(height) // 2).astype(np.uint8)
    luma = np.add.outer(y, x)                               # uint8 wraps: a repeating ramp
    col = 8 * (index % (width // 8))
    luma[:, col:col + 8] = 235
    chroma = np.empty((height // 2, width), np.uint8)       # U then V, packed as PyAV packs them
    chroma[: height // 4] = 128 + (index * 5) % 64
    chroma[height // 4:] = 160 - (index * 3) % 64
    return np.concatenate([luma, chroma])


def encode_mp4(path: Path, width: int, height: int, seconds: float, fps: int = 25) -> int:
    """Write an H.264 (libx264, GOP = 5 s, yuv420p) + AAC mp4. Returns the number of video frames."""
    import av

    n = int(round(seconds * fps))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        v = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "30", "g": str(5 * fps),
                                                         "keyint_min": str(5 * fps), "sc_threshold": "0",
                                                         "threads": "1"})
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        a = out.add_stream("aac", rate=16000)
        a.layout = "mono"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_yuv(i, width, height), format="yuv420p")
            out.mux(v.encode(frame))
        out.mux(v.encode())
        _write_tone(out, a, seconds)
    return n


def _write_tone(out, stream, seconds: float) -> None:
    import av

    rate, chunk = 16000, 1024
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for i, start in enumerate(range(0, len(pcm), chunk)):
        part = pcm[start:start + chunk]
        frame = av.AudioFrame.from_ndarray(part[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def annotation(video_id: str, seconds: float, width: int, height: int, fps: int, seed: int) -> dict:
    """A MERLOT-format annotation: one 6-word sentence every 3 s, each word timed, clean = noisy."""
    rng = np.random.default_rng(seed)
    subtitles, denoised = [], []
    for start in np.arange(0.5, seconds - 3.0, 3.0):
        words = [str(w) for w in rng.choice(WORDS, 6)]
        subtitles += [{"word": w, "time": round(float(start + 0.4 * j), 3)} for j, w in enumerate(words)]
        denoised.append({"cleanasr": " ".join(words), "noisyasr": " ".join(words)})
    return {"subtitles": subtitles, "denoised": denoised,
            "info": {"id": video_id, "title": f"real {video_id}", "duration": seconds, "fps": fps,
                     "width": width, "height": height}}


def make_corpus(root: Path, sizes=((1280, 720), (640, 272)), seconds: float = 24.0, fps: int = 25,
                copies: int = 1) -> Path:
    """Write a YT-Temporal-layout corpus of one video per size (x `copies`). Returns the list file."""
    names = []
    for i, (w, h) in enumerate(sizes):
        video_id = f"real_{w}x{h}"
        encode_mp4(root / SUBSET / "data" / f"{video_id}.mp4", w, h, seconds, fps)
        note = annotation(video_id, seconds, w, h, fps, seed=i)
        for c in range(copies):
            vid = video_id if c == 0 else f"{video_id}_c{c}"
            if c:
                (root / SUBSET / "data" / f"{vid}.mp4").symlink_to(f"{video_id}.mp4")
            (root / SUBSET / "annotations").mkdir(parents=True, exist_ok=True)
            note["info"]["id"] = vid
            (root / SUBSET / "annotations" / f"{vid}.json").write_text(json.dumps(note), "utf-8")
            names.append(f"{SUBSET}/data/{vid}.mp4")
    listing = root / "videos.tsv"
    listing.write_text("Name\n" + "".join(n + "\n" for n in names), "utf-8")
    return listing


def pyav_frames(path: Path, indices) -> dict[int, np.ndarray]:
    """The frames at `indices` (display order), decoded from the start by PyAV at full size."""
    import av

    want, out = set(int(i) for i in indices), {}
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i in want:
                out[i] = frame.to_ndarray(format="rgb24")
            if len(out) == len(want):
                break
    return out
