"""The workflow's front end through Snakemake against the local stand-in for YouTube:
fetch_videos (2 parts) -> join_fetched -> align_asr -> shard_clips -> shard_union."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tvts import io
from tvts.data.shards import split_of

from fetchserver import FakeYouTube

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the red ball rolls to the left and the blue cube jumps up high while a green ring spins round "
         "and round then a small star falls down slowly and the box opens wide so a cat walks by the door "
         "and sits down on the mat to rest").split()


def both_splits(n: int, val_fraction: float) -> list[str]:
    """n YouTube-shaped ids, at least one per shard split."""
    ids = [f"dagvid{i:05d}" for i in range(200)]
    val = [v for v in ids if split_of(v, val_fraction) == "val"][: max(1, n // 3)]
    train = [v for v in ids if split_of(v, val_fraction) == "train"][: n - len(val)]
    return train + val


def test_fetch_join_align_shard_end_to_end(tmp_path):
    site = FakeYouTube(tmp_path)
    try:
        good = both_splits(4, 0.3)
        for vid in good:
            site.add_video(vid, WORDS, seconds=26.0, extra_formats=False)
        site.add_video("forbidden01", WORDS, behaviour="http_403", extra_formats=False)
        site.add_video("nocaptions1", WORDS, captions=False, extra_formats=False)
        release = tmp_path / "release"
        release.mkdir()
        rows = [{"id": v, "denoised": [{"cleanasr": " ".join(WORDS).capitalize() + "."}]} for v in good]
        rows += [{"id": "forbidden01"}, {"id": "nocaptions1"}, {"id": "gone0000001"}]
        with gzip.open(release / "yttemporal180m_000of001.jsonl.gz", "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        cfg = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
        cfg |= {"exp": "fetchdag", "dag": {"align_parts": 2, "fetch": True, "fetch_parts": 2},
                "data": {"yttemporal_list": "corpus/videos.tsv"},
                "fetch": {"ids": str(release), "store": "store", "info_url": site.url + "/info/{id}.json",
                          "retries": 1, "backoff_s": 0.05, "socket_timeout_s": 5.0}}
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
        cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
               "--configfile", str(tmp_path / "config.yaml"), "--cores", "2", "results/fetchdag/shards/set.json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=900)
        logs = "\n".join(p.read_text() for p in (tmp_path / "logs").rglob("*.log")) if (tmp_path / "logs").exists() else ""
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs[-4000:]
    finally:
        site.close()
    snap = json.loads((tmp_path / "results/fetchdag/fetch/availability.json").read_text())
    assert snap["counts"]["ids"] == 7 and snap["counts"]["ok"] == 4
    assert {v: r["reason"] for v, r in snap["videos"].items() if r["status"] != "ok"} == {
        "forbidden01": "bot_check_403", "nocaptions1": "no_captions", "gone0000001": "removed_or_private"}
    parts = [io.read_jsonl(tmp_path / f"results/fetchdag/fetch/part-{p}.jsonl") for p in (0, 1)]
    assert sorted(len(p) for p in parts) == [3, 4]  # the 7 distinct ids, round-robin
    aligned = [r["id"] for p in (0, 1) for r in io.read_jsonl(tmp_path / f"results/fetchdag/asr/part-{p}.jsonl")]
    assert sorted(aligned) == sorted(good)
    shard_set = json.loads((tmp_path / "results/fetchdag/shards/set.json").read_text())
    assert shard_set["counts"]["windows"] > 0
    # Nothing left to do: the fetched store is not refetched, the join not redone.
    again = subprocess.run(cmd[:-1] + ["-n", "results/fetchdag/shards/set.json"], capture_output=True, text=True,
                           env=os.environ.copy(), timeout=900)
    assert "Nothing to be done" in again.stdout + again.stderr
