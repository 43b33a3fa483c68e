"""Stage `shard_clips`: decode each window's frames once and write WebDataset shards.

Reads the aligned parts from `align_asr`, decodes `frames_per_window` frames spread over
each window with decord (short-side resized, JPEG), and writes
`<out>/{train,val}-NNNNNN.tar` split by video, plus `manifest.json` and `rejects.jsonl`.
Workers decode videos in parallel; samples are written in input order, so the shards are
byte-identical for any number of workers.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tqdm import tqdm

from tvts import io, tracking
from tvts.config import ShardConfig, load_sections
from tvts.data import shards, video
from tvts.io import RejectError
from tvts.stages.align_asr import sidecars
from tvts.stages.common import add_common_args, setup_logging, timer

log = logging.getLogger("tvts.shard_clips")
SECTIONS = {"shard_clips": ShardConfig}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts shard-clips", description=__doc__)
    p.add_argument("--asr", nargs="+", required=True, help="part-N.jsonl files from align_asr")
    p.add_argument("--out", required=True, help="output directory for the shards")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: config)")
    add_common_args(p)
    return p


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


def write_shards(rows: list[dict], out_dir: Path, cfg: ShardConfig, workers: int
                 ) -> tuple[dict[str, shards.ShardSink], io.Rejects]:
    sinks = {s: shards.ShardSink(out_dir, s, cfg.samples_per_shard) for s in shards.SPLITS}
    rejects = io.Rejects("shard_clips")
    for row, (samples, bad) in zip(rows, tqdm(iter_videos(rows, cfg, workers), total=len(rows),
                                               desc="shard_clips", unit="video", mininterval=2)):
        for item, reason, detail in bad:
            rejects.add(item, reason, detail)
        split = shards.split_of(row["id"], cfg.val_fraction)
        for s in samples:
            sinks[split].add(s)
    for sink in sinks.values():
        sink.flush()
    return sinks, rejects


def upstream_rejects(asr_paths: list[str]) -> dict[str, int]:
    """Reject counts of the align_asr parts, so one manifest tells the whole story."""
    total: dict[str, int] = {}
    for p in asr_paths:
        manifest, _ = sidecars(p)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    cfg = load_sections(SECTIONS, args.config_path, args.config_json)
    scfg: ShardConfig = cfg["shard_clips"]
    workers = args.workers or scfg.workers
    rows = [r for p in args.asr for r in io.read_jsonl(p)]
    timings: dict = {}
    with tracking.stage_run("shard_clips", args.exp, cfg | {"workers": workers}, rule=args.rule) as mlrun:
        with io.atomic_dir(args.out) as tmp:
            with timer(timings, "shard_s"):
                sinks, rejects = write_shards(rows, tmp, scfg, workers)
            counts = shard_counts(sinks, rejects, len(rows))
            if counts["windows"] == 0:
                raise SystemExit("shard_clips: no window survived; see the align_asr manifests and rejects")
            timings["windows_per_s"] = counts["windows"] / max(timings["shard_s"], 1e-9)
            timings["windows_per_s_per_worker"] = timings["windows_per_s"] / workers
            rejects.write(tmp / "rejects.jsonl")
            io.write_manifest(tmp / "manifest.json", stage="shard_clips", inputs={"asr": args.asr},
                              config=cfg | {"workers": workers}, counts=counts | {"upstream_rejects": upstream_rejects(args.asr)},
                              rejects=rejects, timings=timings, outputs={s: k.shards for s, k in sinks.items()})
        mlrun.log_metrics(counts | {"rejects": rejects.counts()} | timings)
        mlrun.log_artifact(Path(args.out) / "manifest.json")
    log.info("wrote %s", {s: (k.n_samples, len(k.shards)) for s, k in sinks.items()})
    return 0
