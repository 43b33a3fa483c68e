"""The trainer's data pipeline on real smoke shards: what one item holds, and its determinism; and
sharding at scale: flat memory, parts in the DAG."""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from tvts.models.text import TextConfig, build_spec, load_tokenizer
from tvts.models.video_vit import VideoConfig
from tvts.train.data import EVAL_EPOCH, ResumableBatchSampler, ViewConfig, WindowDataset, index_shards
from tvts.data.shards import iter_tar_samples, list_shards

VIDEO = VideoConfig(img_size=32, patch_size=8, tubelet=2, num_frames=8, dim=32, depth=1, heads=2)
VIEW = ViewConfig(VIDEO, k=4, mask_ratio=0.75, max_length=16)


@pytest.fixture(scope="module")
def dataset(smoke_shards):
    probe = WindowDataset(smoke_shards, "train", VIEW, None, seed=0)
    spec = build_spec(TextConfig(model="scratch"), probe.texts())
    return WindowDataset(smoke_shards, "train", VIEW, spec, seed=0)


def test_index_matches_the_tar_contents(smoke_shards):
    paths = list_shards(smoke_shards, "train")
    refs = index_shards(paths)
    samples = [s for p in paths for s in iter_tar_samples(p)]
    assert len(refs) == len(samples)
    ds = WindowDataset(smoke_shards, "train", VIEW, None, seed=0)
    for i, sample in enumerate(samples):
        assert ds.read(i) == {k: v for k, v in sample.items() if k != "__key__"}


def test_shard_clips_writes_the_index_every_rank_reads(smoke_shards, caplog):
    from tvts.train.data import load_refs

    with caplog.at_level("WARNING", logger="tvts.data.shards"):
        for split in ("train", "val"):
            assert (smoke_shards / f"{split}-index.json").is_file()
            assert load_refs(smoke_shards, split) == index_shards(list_shards(smoke_shards, split))
    assert not caplog.records                                   # read, not rebuilt


def test_a_stale_or_missing_index_is_rebuilt_with_a_warning(smoke_shards, tmp_path, caplog):
    import shutil

    from tvts.train.data import load_refs

    shards = tmp_path / "shards"
    shutil.copytree(smoke_shards, shards)
    first = list_shards(shards, "train")[0]
    shutil.copy(first, shards / "train-000099.tar")             # a shard the index does not list
    with caplog.at_level("WARNING", logger="tvts.data.shards"):
        refs = load_refs(shards, "train")
    assert "is stale" in caplog.text and refs == index_shards(list_shards(shards, "train"))
    caplog.clear()
    assert load_refs(shards, "train") == refs and not caplog.records   # the rebuilt index was saved
    (shards / "val-index.json").unlink()
    with caplog.at_level("WARNING", logger="tvts.data.shards"):
        assert load_refs(shards, "val") == index_shards(list_shards(shards, "val"))
    assert "is missing" in caplog.text
    (shards / "val-index.json").write_text("{not json")
    with caplog.at_level("WARNING", logger="tvts.data.shards"):
        assert load_refs(shards, "val") == index_shards(list_shards(shards, "val"))
    assert "is unreadable" in caplog.text


def test_item_shapes_mask_and_transcript_order(dataset):
    item = dataset[(0, 0)]
    assert item["frames"].shape == (3, 8, 32, 32) and item["frames"].dtype == torch.float32
    assert abs(item["frames"].mean().item()) < 3  # normalised, not 0..255
    assert item["keep"].shape == (4, 4)  # 4 tubes x 16 patches * 0.25
    assert len({tuple(t.tolist()) for t in item["keep"]}) > 1
    order = item["order"].tolist()
    assert sorted(order) == [0, 1, 2, 3]
    clips = dataset.meta(0)["clips"]
    tok = load_tokenizer(dataset.spec, 16)
    for slot, position in enumerate(order):  # slot i holds the transcript of clip order[i]
        expected = tok.encode(clips[position]["text"]).ids
        assert item["input_ids"][slot].tolist() == expected


def test_items_are_a_function_of_seed_epoch_index(dataset):
    a, b = dataset[(3, 1)], dataset[(3, 1)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = dataset[(4, 1)]
    assert not torch.equal(a["keep"], c["keep"]) or not torch.equal(a["frames"], c["frames"])
    other = dataset[(3, 2)]
    assert not torch.equal(a["keep"], other["keep"])  # masks differ per sample
    e1, e2 = dataset[(EVAL_EPOCH, 1)], dataset[(EVAL_EPOCH, 1)]
    assert all(torch.equal(e1[k], e2[k]) for k in e1)


def test_loader_workers_do_not_change_the_batches(dataset):
    def batches(workers: int) -> list[dict]:
        sampler = ResumableBatchSampler(len(dataset), 2, seed=1)
        return list(DataLoader(dataset, batch_sampler=sampler, num_workers=workers))

    for x, y in zip(batches(0), batches(2), strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_frames_smaller_than_the_crop_are_a_clear_error(smoke_shards):
    big = ViewConfig(VideoConfig(img_size=64, patch_size=8, num_frames=8, dim=32, depth=1, heads=2), 4, 0.75, 16)
    spec = build_spec(TextConfig(model="scratch"), ["a b c"])
    with pytest.raises(ValueError, match="smaller than the crop 64: raise shard_clips.short_side"):
        WindowDataset(smoke_shards, "train", big, spec, 0)[(0, 0)]


# ----------------------------------------------------------------------------- sharding at scale
def peak_rss_kb(cmd: list[str]) -> int:
    """Peak RSS of `cmd` and its children, measured from a fresh parent: RUSAGE_CHILDREN keeps
    the largest child a process ever waited for, so this test's own earlier children must not count."""
    import os
    import subprocess
    import sys

    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    env = dict(os.environ, TVTS_TRACKING="off")
    return int(subprocess.run([sys.executable, "-c", probe, *cmd], check=True, env=env, capture_output=True,
                              text=True, timeout=300).stdout)


def test_peak_memory_of_a_shard_job_does_not_grow_with_its_corpus(tmp_path):
    """10x the videos (each ~1 MB of samples) shard in the same memory: samples are written as
    they are cut, a bounded number of videos is in flight, and rows are read lazily."""
    import json
    import shutil
    import sys
    from pathlib import Path

    import realvideo
    from tvts.stages import align_asr

    listing = realvideo.make_corpus(tmp_path / "yt", sizes=((640, 272),), seconds=16.0, copies=30)
    cfg = json.dumps({"windows": {"k": 4, "clip_lengths": [3.0], "gap_s": 1.0, "min_words_per_clip": 1},
                      "shard_clips": {"frames_per_window": 32, "short_side": 272, "jpeg_quality": 95,
                                      "samples_per_shard": 2}})
    assert align_asr.main(["--list", str(listing), "--config-json", cfg, "--exp", "t", "--out", str(tmp_path / "all.jsonl")]) == 0
    rows = (tmp_path / "all.jsonl").read_text().splitlines()
    tvts = str(Path(sys.executable).parent / "tvts")
    peak, written = {}, {}
    for n in (3, 30):
        (tmp_path / f"{n}.jsonl").write_text("\n".join(rows[:n]) + "\n")
        out = tmp_path / f"shards-{n}"
        peak[n] = peak_rss_kb([tvts, "shard-clips", "--asr", str(tmp_path / f"{n}.jsonl"), "--config-json", cfg,
                               "--workers", "1", "--exp", "t", "--out", str(out)])
        written[n] = sum(p.stat().st_size for p in out.glob("*.tar"))
        shutil.rmtree(out)
    assert written[30] > 25e6 and written[30] > 9 * written[3]      # the big corpus would show if it were held
    assert peak[30] <= 1.2 * peak[3], peak
    # whatever the interpreter's base size: the extra videos' samples are not what grows
    assert (peak[30] - peak[3]) * 1024 < 0.25 * (written[30] - written[3]), (peak, written)


def test_shard_parts_above_align_parts_is_a_config_error():
    from tvts.config import ConfigError
    from tvts.workflow_config import check_shard_parts

    check_shard_parts({"align_parts": 4, "shard_parts": 2})
    with pytest.raises(ConfigError, match=r"^dag.shard_parts: must be <= dag.align_parts \(2\)"):
        check_shard_parts({"align_parts": 2, "shard_parts": 3})


def test_a_gpu_decoder_without_one_is_one_clear_error(tmp_path, monkeypatch):
    import builtins

    from tvts.data.config import ShardConfig
    from tvts.data.sharding import write_shards

    real_import = builtins.__import__

    def no_torchcodec(name, *args, **kwargs):
        if name == "torchcodec":
            raise ImportError("No module named 'torchcodec'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchcodec)
    from tvts.config import ConfigError

    with pytest.raises(ConfigError, match="shard_clips.decoder: gpu needs torchcodec"):
        write_shards([], tmp_path, ShardConfig(decoder="gpu"), workers=1)


def test_the_dag_shards_in_parts_and_a_rerun_part_reruns_only_itself(smoke_workdir, tmp_path):
    import yaml

    from conftest import SMOKE
    from test_workflow import planned_jobs, snakemake

    three = tmp_path / "three.yaml"
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["dag"] |= {"align_parts": 3, "shard_parts": 2}
    three.write_text(yaml.safe_dump(cfg))
    target = "results/smoke/shards/set.json"
    assert planned_jobs(snakemake(smoke_workdir, target, configfile=three)) == {
        "align_asr": 3, "shard_clips": 2, "shard_union": 1}
    assert json.loads((smoke_workdir / target).read_text())["parts"] == ["part-0", "part-1"]
    rerun = planned_jobs(snakemake(smoke_workdir, "-n", "-R", "results/smoke/shards/part-1", configfile=three))
    assert rerun["shard_clips"] == 1 and rerun["shard_union"] == 1 and "align_asr" not in rerun
    assert rerun["pretrain"] == 1 and rerun["all"] == 1                # and everything below
