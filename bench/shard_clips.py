"""Benchmark `shard_clips`: windows/s per core, and loading one training sample.

Run: `.venv/bin/python bench/shard_clips.py [--videos N]` (uses data/demo if pulled,
else generates a small corpus). Prints:
  1. sharding throughput with 1 worker (windows/s per core) and with 2 workers;
  2. time to load one training sample (16 TSN-sampled frames) from a shard, against the
     baseline measured in the same run: decoding the same 16 frames from the raw mp4 with
     a fresh reader and one seek per frame (what the official loader does per sample).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tvts.data.config import AlignConfig, ShardConfig, WindowConfig  # noqa: E402
from tvts.data import shards, video  # noqa: E402
from tvts.data.formats.yttemporal import read_video_list  # noqa: E402
from tvts.data.align import align_videos as align_run  # noqa: E402
from tvts.data.sharding import write_shards  # noqa: E402

N_FRAMES = 16


def corpus(tmp: Path) -> Path:
    root = Path("data/demo/yttemporal")
    if (root / "videos.tsv").exists():
        return root
    from tvts.data.demo import DemoConfig, generate_demo

    generate_demo(tmp / "demo", DemoConfig(n_videos=8), workers=2)
    return tmp / "demo" / "yttemporal"


def shard_throughput(rows, root, cfg, workers, tmp: Path) -> tuple[float, int]:
    out = tmp / f"shards-{workers}"
    out.mkdir()
    t0 = time.perf_counter()
    sinks, _ = write_shards(rows, out, cfg, workers)
    dt = time.perf_counter() - t0
    return sum(k.n_samples for k in sinks.values()) / dt, sum(k.n_samples for k in sinks.values())


def load_from_shard(samples, rng) -> float:
    t0 = time.perf_counter()
    for s in samples:
        shards.decode_sample(s, N_FRAMES, rng)
    return (time.perf_counter() - t0) / len(samples)


def load_from_mp4(samples, root: Path, rng) -> float:
    import decord

    t0 = time.perf_counter()
    for s in samples:
        _, meta = shards.decode_sample(s, 1, None)
        times = np.asarray(meta["frame_times"])[shards.tsn_indices(len(meta["frame_times"]), N_FRAMES, rng)]
        vr = decord.VideoReader(meta["source"], num_threads=1)
        idx = video.frame_indices(times, video.video_meta(vr))
        [vr[int(i)].asnumpy() for i in idx]  # one seek per frame
    return (time.perf_counter() - t0) / len(samples)


def main() -> None:
    os.environ.setdefault("TVTS_TRACKING", "off")  # time the stage, not the store; set here, not at import
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--videos", type=int, default=16)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        root = corpus(tmp)
        entries = read_video_list(root / "videos.tsv")[: args.videos]
        rows, _, _ = align_run(entries, root, {"align_asr": AlignConfig(), "windows": WindowConfig()})
        cfg = ShardConfig(short_side=80, frames_per_window=48)
        rate1, n = shard_throughput(rows, root, cfg, 1, tmp)
        rate2, _ = shard_throughput(rows, root, cfg, 2, tmp)
        samples = [s for p in shards.list_shards(tmp / "shards-1", "train") for s in shards.iter_tar_samples(p)]
        samples = samples[:64]
        rng = np.random.default_rng(0)
        shard_s, mp4_s = load_from_shard(samples, rng), load_from_mp4(samples, root, rng)
    print(f"corpus: {root}  videos: {len(rows)}  windows: {n}  frames/window: {cfg.frames_per_window}")
    print(f"shard_clips, 1 worker : {rate1:8.2f} windows/s per core")
    print(f"shard_clips, 2 workers: {rate2:8.2f} windows/s  (x{rate2 / rate1:.2f} vs 1 worker)")
    print(f"load 1 sample ({N_FRAMES} frames) from shard        : {shard_s * 1e3:8.2f} ms")
    print(f"load 1 sample from raw mp4, seek per frame (base): {mp4_s * 1e3:8.2f} ms")
    print(f"speed-up of shard loading vs baseline            : x{mp4_s / shard_s:.2f}")


if __name__ == "__main__":
    main()
