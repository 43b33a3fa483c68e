"""Windows of K consecutive clips cut from one video's timed transcript (docs/method.md, 'Pretext task').

A window holds K clips of one length L (drawn per window from `clip_lengths`) separated by
`gap_s`; a clip's transcript is the aligned words whose timestamps fall inside it.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from tvts.data.config import WindowConfig


@dataclass(frozen=True)
class Clip:
    start: float
    end: float
    text: str
    n_words: int


@dataclass(frozen=True)
class Window:
    index: int
    start: float
    end: float
    clip_len: float
    clips: tuple[Clip, ...]


def window_span(k: int, clip_len: float, gap_s: float) -> float:
    """Seconds covered by K clips of `clip_len` with K-1 gaps (15, 19 or 23 s in the paper)."""
    return k * clip_len + (k - 1) * gap_s


def video_rng(video_id: str, seed: int) -> np.random.Generator:
    """A generator that depends only on (seed, video id): stable across runs and part splits."""
    digest = int.from_bytes(hashlib.sha256(video_id.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, digest])


def clip_transcript(words: list[str], times: np.ndarray, start: float, end: float) -> Clip:
    """The words with start <= time < end; `times` non-decreasing, so two binary searches find them
    (a scan of every word per clip made a 3-hour video's windows take 10 s)."""
    lo, hi = np.searchsorted(times, [start, end], side="left")
    inside = words[lo:hi]
    return Clip(start=round(start, 3), end=round(end, 3), text=" ".join(inside), n_words=len(inside))


def plan_windows(video_id: str, duration: float, words: list[str], times: np.ndarray,
                 cfg: WindowConfig) -> tuple[list[Window], Counter]:
    """Cut a video's timeline into windows of K clips with their transcripts.

    Candidate windows start every `stride_s` seconds from a random phase, each with its own
    random clip length; a candidate whose clips lack words is skipped, and unless
    `allow_overlap`, a candidate overlapping the last kept window is passed over.

    Args:
        video_id: used to seed the random phase and clip lengths.
        duration: video length in seconds.
        words, times: the aligned denoised words and their timestamps, non-decreasing (as
            alignment gives them: align_asr rejects ASR times that go back).
        cfg: window geometry.
    Returns:
        The kept windows, and counts of skipped candidates by reason.
    Raises:
        ValueError: the times decrease somewhere.
    """
    times = np.asarray(times, dtype=np.float64)
    if np.any(np.diff(times) < 0):
        raise ValueError(f"{video_id}: word times must be non-decreasing")
    words = list(words)
    rng = video_rng(video_id, cfg.seed)
    skipped: Counter = Counter()
    kept: list[Window] = []
    free_from = 0.0  # earliest start that does not overlap the last kept window
    t = float(rng.uniform(0.0, cfg.stride_s))
    while t + window_span(cfg.k, min(cfg.clip_lengths), cfg.gap_s) <= duration:
        clip_len = float(rng.choice(cfg.clip_lengths))
        span = window_span(cfg.k, clip_len, cfg.gap_s)
        if t + span <= duration and (cfg.allow_overlap or t >= free_from):
            clips = tuple(clip_transcript(words, times, t + i * (clip_len + cfg.gap_s),
                                          t + i * (clip_len + cfg.gap_s) + clip_len) for i in range(cfg.k))
            if min(c.n_words for c in clips) < cfg.min_words_per_clip:
                skipped["window_clip_without_words"] += 1
            else:
                kept.append(Window(len(kept), round(t, 3), round(t + span, 3), clip_len, clips))
                free_from = t + span + cfg.gap_s
        t += cfg.stride_s
    return _limit(kept, cfg, rng), skipped


def _limit(windows: list[Window], cfg: WindowConfig, rng: np.random.Generator) -> list[Window]:
    if not cfg.max_windows_per_video or len(windows) <= cfg.max_windows_per_video:
        return windows
    keep = sorted(rng.choice(len(windows), cfg.max_windows_per_video, replace=False))
    return [Window(i, w.start, w.end, w.clip_len, w.clips) for i, w in enumerate(windows[j] for j in keep)]


def window_to_dict(w: Window) -> dict:
    return {"index": w.index, "start": w.start, "end": w.end, "clip_len": w.clip_len,
            "clips": [{"start": c.start, "end": c.end, "text": c.text, "n_words": c.n_words} for c in w.clips]}
