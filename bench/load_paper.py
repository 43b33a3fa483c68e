"""Benchmark the data path at the paper's sizes on real-encoder 720p H.264 (5 s GOP, AAC audio).

Run: `.venv/bin/python bench/load_paper.py [--seconds 30]` (needs the `bench` extra for
OpenCV: `pip install -e .[bench]`). One run makes the fixture (tests/realvideo.py), aligns it,
shards it both ways and prints, with ratios measured in the same run:
  1. shard_clips windows/s per core on overlapping windows (48 stored frames, short side 268):
     before (`decode_mode: per_window`, decord `get_batch` per window) and after (one PyAV
     pass per video), and the decoder's cost per frame and per seek behind `SEEK_COST_FRAMES`;
  2. CPU ms per 16x224^2 training sample: (a) the official path, OpenCV seeking to each of the
     16 frames in the raw mp4; (b) decord `get_batch` on the raw mp4; (c) the shards through
     `tvts.train.data.WindowDataset` (stored short side 268, 224 crop, mask and tokens
     included); (d) WindowDataset with `decode_device: cuda` (JPEG decoded by nvJPEG in
     batches) when a GPU is present.
Every decoder runs one thread; CPU ms are process CPU time (all threads) per sample.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import realvideo  # noqa: E402
from tvts.data import shards, video  # noqa: E402
from tvts.data.config import ShardConfig  # noqa: E402
from tvts.data.sharding import JsonlRows, write_shards  # noqa: E402
from tvts.stages import align_asr  # noqa: E402

N_FRAMES, CROP, SHORT = 16, 224, 268
WINDOWS = {"k": 4, "clip_lengths": [3.0], "gap_s": 1.0, "min_words_per_clip": 1, "allow_overlap": True, "stride_s": 1.0}


def cpu_ms(fn, n: int) -> float:
    """Process CPU milliseconds per call of fn(i) over n calls."""
    t0 = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - t0) * 1e3 / n


def shard_rate(asr: Path, out: Path, mode: str) -> tuple[float, int]:
    """windows per CPU second with one worker (the worker's CPU: it runs in a child process)."""
    cfg = ShardConfig(frames_per_window=48, short_side=SHORT, samples_per_shard=64, decode_mode=mode, workers=1)
    out.mkdir()
    t0 = os.times()
    sinks, _ = write_shards(JsonlRows([asr]), out, cfg, workers=1)
    t1 = os.times()
    cpu = (t1.user - t0.user) + (t1.system - t0.system) + (t1.children_user - t0.children_user) + \
        (t1.children_system - t0.children_system)
    n = sum(k.n_samples for k in sinks.values())
    return n / cpu, n


def decoder_costs(path: Path) -> tuple[float, float]:
    """(ms per decoded frame, extra frames per seek): a sequential pass, then one seek per GOP."""
    container, stream = video.open_container(path)
    with container:
        table = video.frame_table(container, stream, path)
        all_frames = np.arange(len(table.pts))
        t0 = time.process_time()
        list(video.iter_frames(container, stream, table, all_frames, (476, 268), float("inf"), path))
        per_frame = (time.process_time() - t0) / len(all_frames)
        keys = np.flatnonzero(table.keyframe)
        t0 = time.process_time()
        for _ in range(5):
            list(video.iter_frames(container, stream, table, keys, (476, 268), 0.0, path))
        per_seek = (time.process_time() - t0) / (5 * len(keys))
    return per_frame * 1e3, per_seek / per_frame - 1


def sample_indices(samples: list[dict], fps: float, rng) -> list[np.ndarray]:
    """The 16 video frame indices of each training sample: TSN draws over its stored frames."""
    out = []
    for s in samples:
        times = np.asarray(json.loads(s["json"])["frame_times"])
        out.append(np.floor(times[shards.tsn_indices(len(times), N_FRAMES, rng)] * fps + 1e-6).astype(int))
    return out


def crop(frame: np.ndarray) -> np.ndarray:
    """Short side 224, centre 224x224 crop (the official transform's size)."""
    frame = video.resize_short_side(frame, CROP)
    h, w = frame.shape[:2]
    return frame[(h - CROP) // 2:(h - CROP) // 2 + CROP, (w - CROP) // 2:(w - CROP) // 2 + CROP]


def official_cv2(path: Path, indices: list[np.ndarray]):
    import cv2

    cv2.setNumThreads(1)

    def one(i: int) -> None:
        cap = cv2.VideoCapture(str(path))
        frames = []
        for j in indices[i]:
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(j))
            ok, bgr = cap.read()
            frames.append(crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        cap.release()
    return one


def raw_decord(path: Path, indices: list[np.ndarray]):
    import decord

    def one(i: int) -> None:
        vr = decord.VideoReader(str(path), num_threads=1)
        [crop(f) for f in vr.get_batch([int(j) for j in indices[i]]).asnumpy()]
    return one


def window_dataset(part: Path, device: str = "cpu"):
    import torch

    from tvts.models.config import VideoConfig
    from tvts.models.text import TextConfig, build_spec
    from tvts.train.data import ViewConfig, WindowDataset

    torch.set_num_threads(1)
    extra = {"decode_device": device} if "decode_device" in {f.name for f in dataclasses.fields(ViewConfig)} else {}
    if device != "cpu" and not extra:
        return None
    view = ViewConfig(VideoConfig(img_size=CROP, patch_size=16, tubelet=2, num_frames=N_FRAMES), k=4,
                      mask_ratio=0.75, max_length=32, **extra)
    probe = WindowDataset(str(part), "train", view, None, seed=0)
    return WindowDataset(str(part), "train", view, build_spec(TextConfig(model="scratch"), probe.texts()), seed=0)


def gpu_ms(ds, n: int, batch: int = 32) -> float | None:
    """Wall ms per sample for batches of JPEG bytes decoded on the GPU (CPU side included)."""
    import torch
    from torch.utils.data import default_collate

    if ds is None or not torch.cuda.is_available():
        return None
    def run() -> None:
        for b in range(0, n, batch):
            items = [ds[(0, i % len(ds))] for i in range(b, b + batch)]
            default_collate(items)["frames"].to("cuda")
        torch.cuda.synchronize()
    run()
    t0 = time.perf_counter()
    run()
    return (time.perf_counter() - t0) * 1e3 / n


def main() -> None:
    os.environ.setdefault("TVTS_TRACKING", "off")  # time the stage, not the store; set here, not at import
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0, help="length of the 720p fixture video")
    p.add_argument("--official-samples", type=int, default=4)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        t0 = time.perf_counter()
        listing = realvideo.make_corpus(tmp / "yt", sizes=((1280, 720),), seconds=args.seconds)
        made = time.perf_counter() - t0
        mp4 = tmp / "yt" / realvideo.SUBSET / "data" / "real_1280x720.mp4"
        asr = tmp / "asr.jsonl"
        align_asr.main(["--list", str(listing), "--config-json", json.dumps({"windows": WINDOWS}), "--exp", "bench",
                        "--out", str(asr)])
        before, n_win = shard_rate(asr, tmp / "per_window", "per_window")
        after, _ = shard_rate(asr, tmp / "auto", "auto")
        ms_frame, seek_frames = decoder_costs(mp4)
        samples = [s for split in shards.SPLITS for t in shards.list_shards(tmp / "auto", split)
                   for s in shards.iter_tar_samples(t)]
        idx = sample_indices(samples * 16, 25.0, np.random.default_rng(0))
        cv2_ms = cpu_ms(official_cv2(mp4, idx), args.official_samples)
        decord_ms = cpu_ms(raw_decord(mp4, idx), 2 * args.official_samples)
        ds = window_dataset(tmp / "auto") if shards.list_shards(tmp / "auto", "train") else None
        shard_ms = cpu_ms(lambda i: ds[(0, i % len(ds))], 64) if ds else float("nan")
        gpu = gpu_ms(window_dataset(tmp / "auto", "cuda"), 256) if ds else None
    print(f"fixture: 1280x720 H.264 (libx264, GOP 5 s) + AAC, {args.seconds:.0f} s at 25 fps, made in {made:.1f} s; "
          f"{n_win} overlapping windows (stride 1 s), 48 stored frames each, short side {SHORT}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (shared: take the ratios)")
    print(f"decoder: {ms_frame:.2f} ms CPU per 720p frame decoded and scaled; a seek costs {seek_frames:.1f} frames more "
          f"(tvts.data.video.SEEK_COST_FRAMES = {video.SEEK_COST_FRAMES})")
    print(f"shard_clips before (per-window decord get_batch): {before:8.2f} windows/s per core")
    print(f"shard_clips after  (one PyAV pass per video)    : {after:8.2f} windows/s per core   x{after / before:.2f}")
    print(f"training sample {N_FRAMES}x{CROP}^2, CPU ms per sample:")
    print(f"  (a) official: OpenCV seek per frame, raw mp4 : {cv2_ms:9.1f} ms")
    print(f"  (b) decord get_batch, raw mp4                : {decord_ms:9.1f} ms   x{cv2_ms / decord_ms:.1f} vs (a)")
    print(f"  (c) shards, WindowDataset on CPU             : {shard_ms:9.1f} ms   x{cv2_ms / shard_ms:.1f} vs (a), "
          f"x{decord_ms / shard_ms:.1f} vs (b)")
    if gpu is None:
        print("  (d) shards, JPEG decoded on the GPU          : no GPU")
    else:
        print(f"  (d) shards, JPEG decoded on the GPU          : {gpu:9.2f} ms wall per sample "
              f"({1e3 / gpu:.0f} samples/s, one process)")


if __name__ == "__main__":
    main()
