"""Decode each window's frames once and write them as WebDataset shards.

Workers decode videos in parallel (decord; short side resized, JPEG) and samples are written
in input order, so the shards are byte-identical for any number of workers. A decoder that
crashes its process costs that video only.
"""
from __future__ import annotations

import json
import multiprocessing as mp
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tqdm import tqdm

from tvts import io
from tvts.data import shards, video
from tvts.data.config import ShardConfig
from tvts.io import RejectError


def window_meta(row: dict, window: dict, frame_times) -> dict:
    return {"video_id": row["id"], "source": row["video"], "window": window["index"],
            "start": window["start"], "end": window["end"], "clip_len": window["clip_len"],
            "clips": [{"start": c["start"], "end": c["end"], "text": c["text"]} for c in window["clips"]],
            "frame_times": [round(float(t), 3) for t in frame_times]}


def shard_video(task: tuple[dict, ShardConfig]) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """Decode every window of one video. Returns (samples, rejects as (item, reason, detail))."""
    row, cfg = task
    path = Path(row["video"])
    try:
        vr = video.open_video(path)
    except RejectError as err:
        return [], [(row["id"], err.reason, err.detail)]
    meta = video.video_meta(vr)
    samples, rejects = [], []
    for w in row["windows"]:
        key = shards.sample_key(row["id"], w["index"])
        if w["end"] > meta.duration + 1.0 / meta.fps:
            rejects.append((key, "window_beyond_video_end", f"window ends {w['end']}s, video {meta.duration:.2f}s"))
            continue
        times = video.segment_times(w["start"], w["end"], cfg.frames_per_window)
        try:
            frames = video.decode_frames(vr, video.frame_indices(times, meta), path)
        except RejectError as err:
            return [], [(row["id"], err.reason, err.detail)]
        frames = [video.resize_short_side(f, cfg.short_side) for f in frames]
        samples.append(shards.make_sample(key, window_meta(row, w, times), frames, cfg.jpeg_quality))
    return samples, rejects


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))


def _run_until_crash(tasks: list, start: int, workers: int, out: list) -> int:
    """Decode tasks[start:] in order into `out`, a bounded number in flight.

    Returns:
        len(tasks) when all succeeded, else the index of the first task whose worker
        died (a decoder crash kills the whole pool; the culprit may be any task in flight).
    """
    with _pool(workers) as pool:
        inflight: deque = deque()
        nxt = start
        for i in range(start, len(tasks)):
            while nxt < len(tasks) and len(inflight) < 2 * workers:
                inflight.append(pool.submit(shard_video, tasks[nxt]))
                nxt += 1
            try:
                out.append(inflight.popleft().result())
            except BrokenProcessPool:
                return i
    return len(tasks)


def _isolated(task: tuple[dict, ShardConfig]) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """Decode one video alone in a fresh process: a crash there is this video's fault."""
    with _pool(1) as pool:
        try:
            return pool.submit(shard_video, task).result()
        except BrokenProcessPool:
            return [], [(task[0]["id"], "decoder_crashed", f"{task[0]['video']}: the decoding process died")]


def iter_videos(rows: list[dict], cfg: ShardConfig, workers: int):
    """Yield (samples, rejects) per video, in input order.

    Videos are decoded in worker processes, so a decoder that crashes (segfault, abort)
    on a corrupt file costs that video only: it is retried alone and, if it crashes
    again, rejected as `decoder_crashed`.
    """
    tasks = [(r, cfg) for r in rows]
    i = 0
    while i < len(tasks):
        results: list = []
        failed = _run_until_crash(tasks, i, workers, results)
        yield from results
        if failed < len(tasks):
            yield _isolated(tasks[failed])
        i = failed + 1


def unique_videos(rows: list[dict], rejects: io.Rejects) -> list[dict]:
    """The rows whose sample keys are their own: the first row of each key stem, in order.

    align_asr drops a repeated id within one part; across parts (or for ids that give one key,
    `a.b` and `a_b`) the repeats meet only here, and would write duplicate sample keys.
    """
    first: dict[str, dict] = {}
    for row in rows:
        taken = first.setdefault(shards.key_stem(row["id"]), row)
        if taken is not row:
            rejects.add(row["id"], "duplicate_id",
                        f"{row['video']}: its keys are those of {taken['id']} ({taken['video']})")
    return [r for r in rows if first[shards.key_stem(r["id"])] is r]


def write_shards(rows: list[dict], out_dir: Path, cfg: ShardConfig, workers: int
                 ) -> tuple[dict[str, shards.ShardSink], io.Rejects]:
    sinks = {s: shards.ShardSink(out_dir, s, cfg.samples_per_shard) for s in shards.SPLITS}
    rejects = io.Rejects("shard_clips")
    rows = unique_videos(rows, rejects)
    for row, (samples, bad) in zip(rows, tqdm(iter_videos(rows, cfg, workers), total=len(rows),
                                               desc="shard_clips", unit="video", mininterval=2)):
        for item, reason, detail in bad:
            rejects.add(item, reason, detail)
        split = shards.split_of(row["id"], cfg.val_fraction)
        for s in samples:
            sinks[split].add(s)
    for sink in sinks.values():
        sink.flush()
        sink.write_index()
    return sinks, rejects


def upstream_rejects(asr_paths: list[str]) -> dict[str, int]:
    """Reject counts of the align_asr parts, so one manifest tells the whole story."""
    total: dict[str, int] = {}
    for p in asr_paths:
        manifest, _ = io.sidecars(p)
        if manifest.exists():
            for reason, n in json.loads(manifest.read_text())["rejects"].items():
                total[reason] = total.get(reason, 0) + n
    return total


def shard_counts(sinks: dict[str, shards.ShardSink], rejects: io.Rejects, n_videos: int) -> dict:
    counts: dict = {"videos_in": n_videos, "windows_rejected": len(rejects)}
    for split, sink in sinks.items():
        counts |= {f"{split}_windows": sink.n_samples, f"{split}_shards": len(sink.shards)}
    counts["windows"] = counts["train_windows"] + counts["val_windows"]
    counts["bytes"] = sum(k.n_bytes for k in sinks.values())
    return counts
