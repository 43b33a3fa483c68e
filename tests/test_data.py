"""The trainer's data pipeline on real smoke shards: what one item holds, and its determinism."""
from __future__ import annotations


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
