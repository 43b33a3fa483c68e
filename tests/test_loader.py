"""The trainer's frame decoding: decoders and the batched (GPU) path give the samples of the reference path."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from tvts.config import ConfigError, from_dict
from tvts.data.shards import encode_jpeg, open_jpeg, tsn_indices
from tvts.models.text import TextConfig, build_spec
from tvts.models.video_vit import MEAN, STD, VideoConfig
from tvts.train import distributed as dist
from tvts.train.config import PretrainConfig
from tvts.train.data import EVAL_EPOCH, JpegFrames, ResumableBatchSampler, ViewConfig, WindowDataset, load_frames

VIDEO = VideoConfig(img_size=32, patch_size=8, tubelet=2, num_frames=8, dim=32, depth=1, heads=2)
VIEW = ViewConfig(VIDEO, k=4, mask_ratio=0.75, max_length=16)


def reference_frames(sample: dict[str, bytes], view: ViewConfig, rng) -> torch.Tensor:
    """The loader as first written: PIL images, PIL resize and crop, every pixel to float, then normalised."""
    names = sorted(k for k in sample if k.endswith(".jpg"))
    idx = tsn_indices(len(names), view.video.num_frames, rng)
    imgs = [open_jpeg(sample[names[i]], "s", names[i]) for i in idx]
    if view.short_side:
        from tvts.train.data import resize_short
        imgs = [resize_short(im, view.short_side) for im in imgs]
    w, h = imgs[0].size
    s = view.video.img_size
    x0, y0 = ((w - s) // 2, (h - s) // 2) if rng is None else (int(rng.integers(0, w - s + 1)),
                                                                int(rng.integers(0, h - s + 1)))
    arr = np.stack([np.asarray(im.crop((x0, y0, x0 + s, y0 + s)), dtype=np.float32) for im in imgs])
    arr = (arr / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(3, 0, 1, 2)))


@pytest.fixture(scope="module")
def spec(smoke_shards):
    return build_spec(TextConfig(model="scratch"), WindowDataset(smoke_shards, "train", VIEW, None, 0).texts())


@pytest.mark.parametrize("decoder", ["simplejpeg", "pil"])
@pytest.mark.parametrize("short_side", [0, 40])
def test_frames_equal_the_reference_path_bit_for_bit(smoke_shards, spec, decoder, short_side):
    view = replace(VIEW, jpeg_decoder=decoder, short_side=short_side)
    ds = WindowDataset(smoke_shards, "train", view, spec, 0)
    for index in (0, len(ds) - 1):
        sample = ds.read(index)
        for rng_seed in (None, 5):
            rng_a = None if rng_seed is None else np.random.default_rng(rng_seed)
            rng_b = None if rng_seed is None else np.random.default_rng(rng_seed)
            got = load_frames(sample, view, rng_a)
            want = reference_frames(sample, view, rng_b)
            assert got.shape == want.shape == (3, 8, 32, 32) and got.is_contiguous()
            assert torch.equal(got, want)
            if rng_a is not None:  # the same RNG calls were made: the streams are at the same place
                assert rng_a.integers(1 << 30) == rng_b.integers(1 << 30)


def test_decoders_agree_on_a_larger_natural_frame():
    """A 268x476 frame (the paper's stored size) with chroma subsampling: simplejpeg and PIL
    differ at most by decoder rounding (here: not at all, both run libjpeg-turbo's exact IDCT)."""
    from tvts.data.shards import decode_rgb

    yy, xx = np.mgrid[0:268, 0:476]
    rng = np.random.default_rng(0)
    frame = np.stack([xx % 256, (2 * yy) % 256, (xx + yy) % 256], -1) + rng.normal(0, 12, (268, 476, 3))
    data = encode_jpeg(np.clip(frame, 0, 255).astype(np.uint8), 90)
    a, b = decode_rgb(data, "s", "m", "simplejpeg"), decode_rgb(data, "s", "m", "pil")
    assert a.shape == b.shape == (268, 476, 3) and a.dtype == b.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    fast = decode_rgb(data, "s", "m", "simplejpeg-fast").astype(int) - b   # replicated chroma: other pixels
    assert np.abs(fast).max() > 1 and np.abs(fast).mean() < 2   # (far off only at sharp colour edges: opt-in)


def test_an_undecodable_frame_names_the_member_with_either_decoder(smoke_shards, spec):
    from tvts.data.shards import ShardError

    ds = WindowDataset(smoke_shards, "train", VIEW, spec, 0)
    sample = {k: (b"\xff\xd8 broken" if k.endswith(".jpg") else v) for k, v in ds.read(0).items()}
    for decoder in ("simplejpeg", "pil"):
        with pytest.raises(ShardError, match=r"^shd: k\.f\d{3}\.jpg: not a readable JPEG"):
            load_frames(sample, replace(VIEW, jpeg_decoder=decoder), None, "shd", "k")


def batches(ds: WindowDataset, epoch: int, workers: int) -> list[dict]:
    sampler = ResumableBatchSampler(len(ds), 3, seed=1, shuffle=epoch != EVAL_EPOCH, drop_last=False)
    sampler.set_epoch(epoch)
    return list(DataLoader(ds, batch_sampler=sampler, num_workers=workers))


@pytest.mark.parametrize("epoch", [2, EVAL_EPOCH])
def test_batched_decode_cpu_twin_gives_the_cpu_paths_samples(smoke_shards, spec, epoch):
    """decode_device other than cpu: items carry the drawn frames' JPEG bytes and crop, and the
    trainer's own `to_device` decodes the batch (here on the CPU, the code path nvJPEG takes on cuda)."""
    from tvts.train.pretext import to_device

    cpu = WindowDataset(smoke_shards, "train", VIEW, spec, 0)
    gpu = WindowDataset(smoke_shards, "train", replace(VIEW, decode_device="cuda"), spec, 0)
    for x, y in zip(batches(cpu, epoch, 0), batches(gpu, epoch, 2), strict=True):
        assert isinstance(y["frames"], JpegFrames) and len(y["frames"].jpegs) == VIDEO.num_frames
        y = to_device(y, torch.device("cpu"))
        assert x.keys() == y.keys()
        for k in x:
            if k != "frames":
                assert torch.equal(x[k], y[k]), k              # the same draws: order, mask, tokens
        assert y["frames"].shape == x["frames"].shape and y["frames"].is_contiguous()
        # libjpeg-turbo under both; allow one grey level of decoder rounding
        assert (y["frames"] - x["frames"]).abs().max().item() <= 1.01 / 255 / STD.min()


def test_normalising_on_the_device_gives_the_workers_floats(smoke_shards, spec):
    """normalise_on device: items carry the uint8 crop (a quarter of the bytes), and the trainer's
    `to_device` normalises the batch: bit for bit the floats the workers would have made."""
    from tvts.train.data import RawFrames
    from tvts.train.pretext import to_device

    worker = WindowDataset(smoke_shards, "train", VIEW, spec, 0)
    device = WindowDataset(smoke_shards, "train", replace(VIEW, normalise_on="device"), spec, 0)
    for x, y in zip(batches(worker, 2, 0), batches(device, 2, 2), strict=True):
        assert isinstance(y["frames"], RawFrames) and y["frames"].frames.dtype == torch.uint8
        y = to_device(y, torch.device("cpu"))
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def pretrain_cfg(**data) -> PretrainConfig:
    return from_dict(PretrainConfig, {"data": data}, "pretrain")


def test_decoder_keys_are_checked_by_name():
    assert pretrain_cfg().data.jpeg_decoder == "simplejpeg" and pretrain_cfg().data.decode_device == "cpu"
    with pytest.raises(ConfigError, match=r"pretrain\.data\.jpeg_decoder: must be one of simplejpeg, pil"):
        pretrain_cfg(jpeg_decoder="cv2")
    with pytest.raises(ConfigError, match=r"pretrain\.data\.normalise_on: must be one of device, worker"):
        pretrain_cfg(normalise_on="gpu")
    with pytest.raises(ConfigError, match=r"pretrain\.data\.decode_device: must be one of cpu, cuda"):
        pretrain_cfg(decode_device="tpu")
    with pytest.raises(ConfigError, match=r"pretrain\.data\.decode_device: cuda decodes frames as stored"):
        pretrain_cfg(decode_device="cuda", short_side=48)


def test_cuda_decode_without_cuda_is_one_clear_error(smoke_shards):
    from tvts.train.pretrain import build_data

    cfg = pretrain_cfg(decode_device="cuda")
    env = dist.DistEnv(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"pretrain\.data\.decode_device: cuda, but this job runs on cpu"):
        build_data(str(smoke_shards), cfg, env)


def test_pretraining_with_batched_decode_gives_the_cpu_paths_weights(smoke_shards, tmp_path, monkeypatch):
    """The whole trainer (train steps, validation, FLOP count) on batches that `to_device` decodes
    or normalises: decode_device cuda's code path (run on the CPU), normalise_on device (the
    default) and normalise_on worker all train the same weights."""
    import yaml

    from conftest import SMOKE
    from test_train import final_weights, run_pretrain
    from tvts.train import pretrain

    raw = yaml.safe_load(SMOKE.read_text())
    raw["pretrain"]["optim"] |= {"epochs": 1, "decay_epochs": [1]}
    raw["pretrain"]["data"] |= {"batch_size": 2, "eval_batch_size": 4}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert run_pretrain(smoke_shards, tmp_path / "cpu", cfg) == 0
    raw["pretrain"]["data"]["normalise_on"] = "worker"
    (tmp_path / "worker.yaml").write_text(yaml.safe_dump(raw))
    assert run_pretrain(smoke_shards, tmp_path / "worker", tmp_path / "worker.yaml") == 0
    real = pretrain.data_view
    monkeypatch.setattr(pretrain, "data_view", lambda c, device: replace(real(c, device), decode_device="cuda"))
    assert run_pretrain(smoke_shards, tmp_path / "batched", cfg) == 0
    a = final_weights(tmp_path / "cpu")
    for other in ("worker", "batched"):
        b = final_weights(tmp_path / other)
        assert len(a) > 10 and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), other
