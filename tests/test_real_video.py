"""The data stages on real-encoder video (tests/realvideo.py: libx264, 5 s GOP, AAC audio, at
1280x720 and 640x272 in the YT-Temporal layout): align_asr, shard_clips in two parts, their
union, and inspect-shards; the stored frames are the frames PyAV decodes at the same index."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tvts import io
from tvts.data import shards, video
from tvts.stages import align_asr, shard_clips, shard_union

import realvideo
from conftest import SMOKE

# smoke's windows with a stored resolution of real size; every window of both videos
CONFIG = {"align_asr": {"min_asr_words": 8},
          "windows": {"k": 4, "clip_lengths": [3.0], "gap_s": 1.0, "min_words_per_clip": 1,
                      "allow_overlap": True, "stride_s": 2.0},
          "shard_clips": {"frames_per_window": 12, "short_side": 128, "jpeg_quality": 90, "val_fraction": 0.5,
                          "samples_per_shard": 2, "workers": 1}}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return realvideo.make_corpus(tmp_path_factory.mktemp("real") / "yttemporal", seconds=18.0)


@pytest.fixture(scope="module")
def shard_set(corpus, tmp_path_factory) -> Path:
    """align_asr in two parts, one shard_clips job per part, then shard_union: the workflow's data path."""
    out = tmp_path_factory.mktemp("real_run")
    cfg = json.dumps(CONFIG)
    parts = []
    for p in range(2):
        asr = out / "asr" / f"part-{p}.jsonl"
        assert align_asr.main(["--list", str(corpus), "--part", str(p), "--parts", "2", "--config-json", cfg,
                               "--exp", "t", "--out", str(asr)]) == 0
        assert shard_clips.main(["--asr", str(asr), "--out", str(out / "shards" / f"part-{p}"), "--config-json", cfg,
                                 "--workers", "1", "--exp", "t"]) == 0
        parts.append(str(out / "shards" / f"part-{p}"))
    assert shard_union.main(["--parts", *parts, "--out", str(out / "shards" / "set.json"), "--exp", "t"]) == 0
    return out / "shards" / "set.json"


def samples_of(set_file: Path) -> list[dict]:
    parts = json.loads(set_file.read_text())["parts"]
    return [s for part in parts for split in shards.SPLITS
            for p in shards.list_shards(set_file.parent / part, split) for s in shards.iter_tar_samples(p)]


def test_the_fixture_is_what_real_corpora_hold(corpus):
    import av

    for name, size in (("real_1280x720", (1280, 720)), ("real_640x272", (640, 272))):
        with av.open(str(corpus.parent / "subset_0" / "data" / f"{name}.mp4")) as c:
            v = c.streams.video[0]
            assert (v.codec_context.name, v.width, v.height) == ("h264", *size)
            assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
            keys = [p.pts * v.time_base for p in c.demux(v) if p.is_keyframe and p.pts is not None]
        assert [float(k) for k in sorted(keys)] == [0.0, 5.0, 10.0, 15.0]   # a 5 s GOP


def test_the_set_file_lists_both_parts_with_summed_counts(shard_set):
    content = json.loads(shard_set.read_text())
    assert content["version"] == 1 and content["parts"] == ["part-0", "part-1"]
    manifests = [json.loads((shard_set.parent / p / "manifest.json").read_text()) for p in content["parts"]]
    assert content["counts"]["windows"] == sum(m["counts"]["windows"] for m in manifests) > 0
    assert all(m["counts"]["windows"] > 0 for m in manifests)        # each part holds one of the videos
    for p in content["parts"]:
        import hashlib
        assert content["parts_md5"][p] == hashlib.md5((shard_set.parent / p / "manifest.json").read_bytes()).hexdigest()


def test_stored_frames_are_pyav_frames_at_the_same_index(shard_set, corpus):
    seen = set()
    for sample in samples_of(shard_set):
        meta = json.loads(sample["json"])
        path = Path(meta["source"])
        fps = 25.0
        indices = np.floor(np.asarray(meta["frame_times"]) * fps + 1e-6).astype(int)
        ref = realvideo.pyav_frames(path, indices)
        for j, i in enumerate(indices):
            stored = np.asarray(shards.open_jpeg(sample[f"f{j:03d}.jpg"], "", ""))
            expect = video.resize_short_side(ref[int(i)], 128)
            assert stored.shape == expect.shape
            err = np.abs(stored.astype(int) - expect).mean()
            assert err < 6, f"{meta['video_id']} frame {i}: mean error {err:.1f}"
            # the white bar shows the index: a frame off by one puts it 8 source pixels away
            bar = stored.mean(axis=(0, 2)).argmax()
            assert abs(bar - (8 * (i % (ref[int(i)].shape[1] // 8)) + 4) * stored.shape[1] / ref[int(i)].shape[1]) <= 3
        seen.add(meta["video_id"])
    assert seen == {"real_1280x720", "real_640x272"}


def test_sequential_seek_and_auto_decoding_give_the_same_frames(corpus):
    path = corpus.parent / "subset_0" / "data" / "real_1280x720.mp4"
    wanted = np.array([0, 3, 60, 61, 130, 131, 260, 300, 449])          # dense and sparse stretches, last frame
    got = {}
    for cost in (0.0, float("inf"), video.SEEK_COST_FRAMES):
        container, stream = video.open_container(path)
        with container:
            table = video.frame_table(container, stream, path)
            runs = video.decode_runs(table, wanted, cost)
            got[cost] = (runs, dict(video.iter_frames(container, stream, table, wanted, (455, 256), cost, path)))
    assert len(got[0.0][0]) == 4 and len(got[float("inf")][0]) == 1     # seeks per GOP / one pass
    assert got[video.SEEK_COST_FRAMES][0] == got[0.0][0]                  # sparse here: auto seeks too
    for cost, (_, frames) in got.items():
        assert sorted(frames) == wanted.tolist()
        assert all(np.array_equal(frames[i], got[float("inf")][1][i]) for i in wanted), cost
    full = realvideo.pyav_frames(path, wanted)
    for i in wanted:   # swscale's bilinear scale of the same decoded frame: close to PIL's
        assert np.abs(got[0.0][1][i].astype(int) - video.resize_short_side(full[i], 256)).mean() < 4


def test_shards_are_byte_identical_for_any_worker_count(corpus, tmp_path):
    cfg = json.dumps(CONFIG)
    asr = tmp_path / "asr.jsonl"
    assert align_asr.main(["--list", str(corpus), "--config-json", cfg, "--exp", "t", "--out", str(asr)]) == 0
    tars = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert shard_clips.main(["--asr", str(asr), "--out", str(out), "--config-json", cfg,
                                 "--workers", str(workers), "--exp", "t"]) == 0
        tars.append({p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))})
    assert tars[0] == tars[1] and tars[0]


def test_inspect_shards_reads_the_set_of_mixed_aspect_ratios(shard_set, tmp_path, capsys):
    from tvts.stages import inspect_shards

    png = tmp_path / "sheet.png"
    split = shards.split_of("real_1280x720", CONFIG["shard_clips"]["val_fraction"])
    assert shards.split_of("real_640x272", CONFIG["shard_clips"]["val_fraction"]) == split   # one sheet, both
    assert inspect_shards.main([str(shard_set.parent), "--split", split, "-n", "4", "--frames", "4",
                                "--png", str(png)]) == 0
    assert "real_640x272" in capsys.readouterr().out and png.stat().st_size > 0


def test_shard_union_names_a_missing_part(shard_set, tmp_path):
    with pytest.raises(SystemExit, match=r"part .*part-7 has no readable manifest.json"):
        shard_union.main(["--parts", str(shard_set.parent / "part-0"), str(shard_set.parent / "part-7"),
                          "--out", str(tmp_path / "set.json"), "--exp", "t"])
    assert not (tmp_path / "set.json").exists()
