"""Cut every window of a video from one decoder pass and write them as WebDataset shards.

Workers decode videos in parallel (PyAV: frames scaled to the stored short side as they leave
the decoder, JPEG) and samples are written in input order as each video finishes, so the shards
are byte-identical for any number of workers and a bounded number of videos is in memory: a
few in flight per worker, plus the shard being filled. A decoder that crashes its process costs
that video only.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import multiprocessing as mp
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from tvts import io
from tvts.data import shards, video
from tvts.data.config import ShardConfig
from tvts.io import RejectError

Result = tuple[list[dict], list[tuple[str, str, str]]]  # (samples, rejects as (item, reason, detail))
SEEK_COSTS = {"auto": video.SEEK_COST_FRAMES, "sequential": float("inf"), "seek": 0.0}


def window_meta(row: dict, window: dict, frame_times) -> dict:
    return {"video_id": row["id"], "source": row["video"], "window": window["index"],
            "start": window["start"], "end": window["end"], "clip_len": window["clip_len"],
            "clips": [{"start": c["start"], "end": c["end"], "text": c["text"]} for c in window["clips"]],
            "frame_times": [round(float(t), 3) for t in frame_times]}


@dataclass(frozen=True)
class WindowPlan:
    """One window to cut: its sample key, its row entry, its frame times and frame indices."""

    key: str
    window: dict
    times: np.ndarray
    indices: np.ndarray


def plan_windows(row: dict, meta: video.VideoMeta, cfg: ShardConfig) -> tuple[list[WindowPlan], list]:
    """The windows of a row that lie inside the video, and a reject for each that does not."""
    plans, rejects = [], []
    for w in row["windows"]:
        key = shards.sample_key(row["id"], w["index"])
        if w["end"] > meta.duration + 1.0 / meta.fps:
            rejects.append((key, "window_beyond_video_end", f"window ends {w['end']}s, video {meta.duration:.2f}s"))
            continue
        times = video.segment_times(w["start"], w["end"], cfg.frames_per_window)
        plans.append(WindowPlan(key, w, times, video.frame_indices(times, meta)))
    return plans, rejects


def cut_windows(row: dict, plans: list[WindowPlan], frames: Iterator[tuple[int, np.ndarray]],
                quality: int) -> list[dict]:
    """Encode each window as soon as the decoder has passed its last frame, keeping only the
    decoded frames that windows still to come need. Returns the samples in window order."""
    pending = sorted(range(len(plans)), key=lambda j: (int(plans[j].indices[-1]), j))
    cache: dict[int, np.ndarray] = {}
    samples: dict[int, dict] = {}
    for i, frame in frames:
        cache[i] = frame
        while pending and int(plans[pending[0]].indices[-1]) <= i:
            j = pending.pop(0)
            p = plans[j]
            samples[j] = shards.make_sample(p.key, window_meta(row, p.window, p.times),
                                                         [cache[int(k)] for k in p.indices], quality)
            first = min((int(plans[j].indices[0]) for j in pending), default=i + 1)
            cache = {k: v for k, v in cache.items() if k >= first}
    return [samples[j] for j in range(len(plans))]


def shard_video(task: tuple[dict, ShardConfig]) -> Result:
    """Decode every window of one video. Returns (samples, rejects as (item, reason, detail))."""
    row, cfg = task
    if cfg.decode_mode == "per_window":
        return shard_video_per_window(task)
    path = Path(row["video"])
    try:
        container, stream = video.open_container(path)
        with container:
            table = video.frame_table(container, stream, path)
            plans, rejects = plan_windows(row, table.meta, cfg)
            if not plans:
                return [], rejects
            wanted = np.unique(np.concatenate([p.indices for p in plans]))
            size = video.scaled_size(stream.codec_context.width, stream.codec_context.height, cfg.short_side)
            if cfg.decoder == "gpu":
                frames = video.iter_frames_gpu(path, wanted, size)
            else:
                frames = video.iter_frames(container, stream, table, wanted, size, SEEK_COSTS[cfg.decode_mode], path)
            return cut_windows(row, plans, frames, cfg.jpeg_quality), rejects
    except RejectError as err:
        return [], [(row["id"], err.reason, err.detail)]


def shard_video_per_window(task: tuple[dict, ShardConfig]) -> Result:
    """The former path, kept as the benchmark's baseline: decord, one `get_batch` per window
    (overlapping windows decode the same GOPs again), then a PIL resize of each full-size frame."""
    row, cfg = task
    path = Path(row["video"])
    try:
        vr = video.open_video(path)
    except RejectError as err:
        return [], [(row["id"], err.reason, err.detail)]
    plans, rejects = plan_windows(row, video.video_meta(vr), cfg)
    samples = []
    for p in plans:
        try:
            frames = video.decode_frames(vr, p.indices, path)
        except RejectError as err:
            return [], [(row["id"], err.reason, err.detail)]
        frames = [video.resize_short_side(f, cfg.short_side) for f in frames]
        samples.append(shards.make_sample(p.key, window_meta(row, p.window, p.times), frames, cfg.jpeg_quality))
    return samples, rejects


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))


def _run_until_crash(tasks: Iterator, workers: int):
    """Yield (row, result) of each task in order, at most 2 * workers tasks in flight.

    Returns (as the generator's value):
        None when every task succeeded, else the tasks in flight when a worker died, in order
        (a decoder crash kills the whole pool; the culprit may be any of them).
    """
    with _pool(workers) as pool:
        inflight: deque = deque()
        while True:
            while len(inflight) < 2 * workers and (task := next(tasks, None)) is not None:
                inflight.append((task, pool.submit(shard_video, task)))
            if not inflight:
                return None
            try:
                result = inflight[0][1].result()
            except BrokenProcessPool:
                return [t for t, _ in inflight]
            yield inflight.popleft()[0][0], result


def _isolated(task: tuple[dict, ShardConfig]) -> Result:
    """Decode one video alone in a fresh process: a crash there is this video's fault."""
    with _pool(1) as pool:
        try:
            return pool.submit(shard_video, task).result()
        except BrokenProcessPool:
            return [], [(task[0]["id"], "decoder_crashed", f"{task[0]['video']}: the decoding process died")]


def iter_videos(rows: Iterable[dict], cfg: ShardConfig, workers: int) -> Iterator[tuple[dict, Result]]:
    """Yield (row, (samples, rejects)) per video, in input order, as each is decoded.

    Videos are decoded in worker processes, so a decoder that crashes (segfault, abort)
    on a corrupt file costs that video only: it is retried alone and, if it crashes
    again, rejected as `decoder_crashed`.
    """
    tasks: Iterator = ((r, cfg) for r in rows)
    while (lost := (yield from _run_until_crash(tasks, workers))) is not None:
        yield lost[0][0], _isolated(lost[0])
        tasks = itertools.chain(lost[1:], tasks)


class JsonlRows:
    """The rows of align_asr's part files, read lazily on each pass (a part of the paper's
    corpus is 10^5 videos: their rows need not all be in memory)."""

    def __init__(self, paths: Iterable[str | Path]):
        self.paths = list(paths)

    def __iter__(self) -> Iterator[dict]:
        for path in self.paths:
            with open(path, encoding="utf-8") as f:
                yield from (json.loads(line) for line in f if line.strip())


def duplicate_rows(rows: Iterable[dict], rejects: io.Rejects) -> set[int]:
    """The positions of rows whose sample keys another row took first (each is rejected).

    align_asr drops a repeated id within one part; across parts (or for ids that give one key,
    `a.b` and `a_b`) the repeats meet only here, and would write duplicate sample keys.
    """
    first: dict[str, dict] = {}
    dup = set()
    for i, row in enumerate(rows):
        stem = shards.key_stem(row["id"])
        if stem in first:
            taken = first[stem]
            rejects.add(row["id"], "duplicate_id", f"{row['video']}: its keys are those of {taken['id']} ({taken['video']})")
            dup.add(i)
        else:
            first[stem] = {"id": row["id"], "video": row["video"]}
    return dup


def write_shards(rows: Iterable[dict], out_dir: Path, cfg: ShardConfig, workers: int
                 ) -> tuple[dict[str, shards.ShardSink], io.Rejects]:
    """Shard the videos of `rows` (iterated twice: a list or `JsonlRows`) into `out_dir`.

    Returns:
        The split's sinks (counts, shard names) and the rejects.
    """
    if cfg.decoder == "gpu" and cfg.decode_mode != "per_window":
        video.check_gpu_decoder()
    sinks = {s: shards.ShardSink(out_dir, s, cfg.samples_per_shard) for s in shards.SPLITS}
    rejects = io.Rejects("shard_clips")
    dup = duplicate_rows(rows, rejects)
    n_rows = sum(1 for _ in rows)
    unique = (r for i, r in enumerate(rows) if i not in dup)
    with tqdm(total=n_rows - len(dup), desc="shard_clips", unit="video", mininterval=2) as bar:
        for row, (samples, bad) in iter_videos(unique, cfg, workers):
            for item, reason, detail in bad:
                rejects.add(item, reason, detail)
            sink = sinks[shards.split_of(row["id"], cfg.val_fraction)]
            for s in samples:
                sink.add(s)
            bar.update(1)
            bar.set_postfix(windows=sum(k.n_samples for k in sinks.values()), refresh=False)
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


# ----------------------------------------------------------------------------- the shard set
SET_VERSION = 1


def _add_counts(total: dict, counts: dict) -> None:
    """Sum numeric counts into `total`, nested dicts (e.g. upstream_rejects) key by key."""
    for key, value in counts.items():
        if isinstance(value, dict):
            _add_counts(total.setdefault(key, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


class ShardSetIncomplete(RuntimeError):
    """A shard set that cannot be joined: a part did not finish, or no part holds a window."""


def shard_set(part_dirs: list[str | Path], set_dir: str | Path) -> dict:
    """The set file's content for these parts (in this order): their paths relative to
    `set_dir`, their summed counts and rejects, and each part manifest's md5.

    Raises:
        ShardSetIncomplete: naming the first part without a readable manifest.json (its shard_clips
            job did not finish), or when no part holds a window.
    """
    out: dict = {"version": SET_VERSION, "parts": [], "counts": {}, "rejects": {}, "parts_md5": {}}
    for part in map(Path, part_dirs):
        try:
            raw = (part / "manifest.json").read_bytes()
            manifest = json.loads(raw)
        except (OSError, ValueError) as err:
            raise ShardSetIncomplete(f"shard_union: part {part} has no readable manifest.json ({err}): its shard_clips job "
                             f"did not finish; rerun it (snakemake -R shard_clips reruns every part)") from None
        name = os.path.relpath(part, set_dir)
        out["parts"].append(name)
        _add_counts(out["counts"], manifest["counts"])
        _add_counts(out["rejects"], manifest["rejects"])
        out["parts_md5"][name] = hashlib.md5(raw).hexdigest()
    if not out["counts"].get("windows"):
        raise ShardSetIncomplete("shard_union: no window survived in any part; see the align_asr manifests and rejects")
    out["rejects"] = dict(sorted(out["rejects"].items()))
    return out
