"""ASR alignment over a video list: each video's transcript cleaned, DTW-aligned to the denoised
text, and cut into K-clip windows (tvts.data.asr, tvts.data.windows); bad videos are rejects."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from tqdm import tqdm

from tvts import io
from tvts.data import asr, video
from tvts.data.config import AlignConfig
from tvts.data.formats.yttemporal import VideoEntry, load_annotation
from tvts.data.windows import plan_windows, window_span, window_to_dict
from tvts.io import RejectError


def check_duration(claimed: float, path: Path, cfg: AlignConfig) -> None:
    """The annotation's duration against the video's own, and a hard cap on both.

    Window planning walks the whole claimed timeline, so `info.duration: 1e7` would keep a job
    busy for hours on one video. The container header is cheap to read; when it cannot be read,
    the cap alone applies (shard_clips rejects the unreadable file).

    Raises:
        RejectError: duration_mismatch or video_too_long.
    """
    real = video.probe_duration(path)
    if real is not None and abs(real - claimed) > cfg.duration_tolerance_s:
        raise RejectError("duration_mismatch", f"info.duration {claimed:g}s, the video {real:.2f}s "
                                               f"(tolerance {cfg.duration_tolerance_s:g}s)")
    length = claimed if real is None else real
    if length > cfg.max_duration_s:
        raise RejectError("video_too_long", f"{length:.0f}s > max_duration_s {cfg.max_duration_s:g}")


def align_video(entry: VideoEntry, root: Path, cfg: dict) -> tuple[dict, Counter]:
    """Align one video and cut its windows.

    Returns:
        The output row and the counts of windows skipped by reason.
    Raises:
        RejectError: the video is skipped (reason in the error; a list row that is not UTF-8:
            invalid_utf8).
    """
    acfg: AlignConfig = cfg["align_asr"]
    if entry.invalid:
        raise RejectError("invalid_utf8", entry.invalid)
    if not acfg.allow_outside_root and not entry.inside_root():
        raise RejectError("outside_root", f"{entry.name!r} is not under {root} (align_asr.allow_outside_root)")
    ann = load_annotation(entry, root)
    if not entry.video_path(root).exists():
        raise RejectError("missing_video", str(entry.video_path(root)))
    check_duration(ann.duration, entry.video_path(root), acfg)
    words, times = asr.clean_asr_words(ann.subtitles)
    den = asr.denoised_words(ann.denoised)
    asr.check_words(words, times, den, acfg)
    asr.check_transcript(words, den, acfg)
    al = asr.align_asr_to_denoised(words, times, den, acfg)
    asr.check_alignment(al, acfg)
    windows, skipped = plan_windows(entry.video_id, ann.duration, al.words, al.times, cfg["windows"])
    if not windows:
        wcfg = cfg["windows"]
        too_short = ann.duration < window_span(wcfg.k, min(wcfg.clip_lengths), wcfg.gap_s)
        raise RejectError("video_shorter_than_window" if too_short else "no_valid_window",
                          f"duration {ann.duration:.1f}s, {sum(skipped.values())} windows lacked words")
    row = {"id": entry.video_id, "video": str(entry.video_path(root)), "duration": ann.duration,
           "n_asr_words": len(words), "n_denoised_words": len(den), "n_aligned_words": len(al.words),
           "dtw_cost": al.cost, "words": [[w, round(float(t), 3)] for w, t in zip(al.words, al.times)],
           "windows": [window_to_dict(w) for w in windows]}
    return row, skipped


def align_videos(entries: list[VideoEntry], root: Path, cfg: dict) -> tuple[list[dict], io.Rejects, Counter]:
    """Align every listed video; a repeated id keeps its first row (its keys would collide downstream)."""
    rows, rejects, skipped = [], io.Rejects("align_asr"), Counter()
    first: dict[str, str] = {}
    for entry in tqdm(entries, desc="align_asr", unit="video", mininterval=2):
        if entry.video_id in first:
            rejects.add(entry.video_id, "duplicate_id", f"{entry.name}: the id of {first[entry.video_id]}")
            continue
        first[entry.video_id] = entry.name
        try:
            row, skip = align_video(entry, root, cfg)
        except RejectError as err:
            rejects.add(entry.video_id, err.reason, err.detail)
            continue
        rows.append(row)
        skipped.update(skip)
    return rows, rejects, skipped
