"""Downstream views, the feature cache, the linear probe (cached == uncached) and both eval stages in-process."""
from __future__ import annotations

import json
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tvts.config import ConfigError, from_dict
from tvts.data.formats.common import Missing, VideoItem, VideoSet
from tvts.eval import config as eval_config
from tvts.eval.config import DatasetSpec, LinearConfig, load_dataset_split
from tvts.eval.features import Features, cached_features, extract_features
from tvts.eval.linear import evaluate_probe, probe_lr, train_probe_cached, train_probe_uncached
from tvts.eval.views import ClipDataset, clip_indices, crop_offset
from tvts.models.video_vit import VideoConfig, VideoViT
from tvts.eval import linear_job, zeroshot_job
from tvts.stages import eval_linear, eval_zeroshot_v2v
from tvts.train.data import MEAN, STD

from conftest import save_tiny_checkpoint

TINY = dict(img_size=32, patch_size=8, tubelet=2, num_frames=4, dim=32, depth=1, heads=2)
H, W, SHORT = 40, 56, 36        # stored frame size; resized to 36 x 50 before the 32 x 32 crops


def write_video(path: Path, frames: np.ndarray, fps: int = 8) -> Path:
    """A small H.264 file from (T, H, W, 3) uint8 RGB frames (near-lossless)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "10", "preset": "ultrafast", "threads": "1"})
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        stream.codec_context.gop_size = 4
        for k, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = k
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    return path


def moving_square(label: int, rng: np.random.Generator, n: int = 16) -> np.ndarray:
    """Class 0: a square moving right, 1: moving left, 2: moving down, on a random background."""
    frames = np.zeros((n, H, W, 3), np.uint8) + rng.integers(0, 120, 3).astype(np.uint8)
    y, x = int(rng.integers(4, 20)), int(rng.integers(4, 30))
    for k in range(n):
        dy, dx = [(0, 2 * k), (0, -2 * k), (k, 0)][label]
        yy, xx = np.clip(y + dy, 0, H - 10), np.clip(x + dx, 0, W - 10)
        frames[k, yy:yy + 10, xx:xx + 10] = 230
    return frames


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory) -> dict[str, VideoSet]:
    """Train (9 videos + 1 corrupt) and test (6 videos) splits of 3 classes, plus one missing video each."""
    root = tmp_path_factory.mktemp("tiny_videos")
    rng = np.random.default_rng(0)
    sets = {}
    for split, per_class in (("train", 3), ("test", 2)):
        items = [VideoItem(f"{split}{i}", write_video(root / f"{split}{i}.mp4", moving_square(i % 3, rng)), i % 3)
                 for i in range(3 * per_class)]
        if split == "train":
            bad = root / "bad.mp4"
            bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + rng.bytes(500))   # an mp4 header, then garbage
            items.insert(4, VideoItem("bad", bad, 1))
        missing = [Missing(f"gone_{split}", root / f"gone_{split}.mp4", "missing_video")]
        sets[split] = VideoSet("tiny", split, items, ("right", "left", "down"), missing)
    return sets


@pytest.fixture(scope="module")
def tiny_video_model() -> VideoViT:
    torch.manual_seed(0)
    return VideoViT(VideoConfig(**TINY)).eval()


# ----------------------------------------------------------------------------- views


def test_clip_indices_segments_and_temporal_views():
    assert clip_indices(16, 4).tolist() == [2, 6, 10, 14]                       # one view: segment centres
    assert clip_indices(16, 4, 0, 2).tolist() == [1, 5, 9, 13]                  # 2 views: 1/4 and 3/4 of a segment
    assert clip_indices(16, 4, 1, 2).tolist() == [3, 7, 11, 15]
    assert clip_indices(2, 4).tolist() == [0, 0, 1, 1]                          # shorter than num_frames: repeats
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = clip_indices(16, 4, rng=rng)
        assert ((idx >= [0, 4, 8, 12]) & (idx < [4, 8, 12, 16])).all()          # train: one frame in each segment


def test_crop_offsets_spread_along_the_longer_side():
    assert [crop_offset(36, 50, 32, s, 3) for s in range(3)] == [(2, 0), (2, 9), (2, 18)]    # landscape
    assert [crop_offset(50, 36, 32, s, 3) for s in range(3)] == [(0, 2), (9, 2), (18, 2)]    # portrait
    assert [crop_offset(40, 40, 32, s, 3) for s in range(3)] == [(4, 0), (4, 4), (4, 8)]     # square: along width
    assert crop_offset(36, 50, 32) == (2, 9)                                                  # one view: centre
    rng = np.random.default_rng(0)
    assert all(0 <= y <= 4 and 0 <= x <= 18 for y, x in (crop_offset(36, 50, 32, rng=rng) for _ in range(20)))
    with pytest.raises(ValueError):
        crop_offset(30, 50, 32)


def test_clip_dataset_layout_frames_and_normalisation(tmp_path):
    # Frame k is a flat grey of 8 + 14k: the decoded values say which frames each view took.
    path = write_video(tmp_path / "ramp.mp4", np.stack([np.full((H, W, 3), 8 + 14 * k, np.uint8) for k in range(16)]))
    ds = ClipDataset([VideoItem("ramp", path, 2)], num_frames=4, img_size=32, short_side=SHORT,
                     temporal_views=2, spatial_views=3)
    out = ds[0]
    assert out["ok"] and out["label"] == 2 and out["index"] == 0 and out["reason"] == ""
    frames = out["frames"]
    assert frames.shape == (6, 3, 4, 32, 32) and frames.dtype == torch.float32   # (V, 3, T, S, S)
    pixels = frames.permute(0, 2, 3, 4, 1).numpy() * STD + MEAN                      # undo ImageNet normalisation
    grey = (pixels.mean(axis=(2, 3, 4)) * 255 - 8) / 14                             # (V, T) frame numbers
    assert np.abs(grey[:3] - [1, 5, 9, 13]).max() < 0.3                             # temporal view 0, 3 crops
    assert np.abs(grey[3:] - [3, 7, 11, 15]).max() < 0.3                            # temporal view 1


def test_train_views_are_seeded_by_seed_epoch_index(tiny_sets):
    ds = ClipDataset(tiny_sets["train"].items[:2], 4, 32, SHORT, train=True, seed=5)
    a, b = ds[1]["frames"], ds[1]["frames"]
    ds.set_epoch(1)
    c = ds[1]["frames"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unreadable_video_is_flagged_not_raised(tiny_sets, tmp_path):
    items = [VideoItem("bad", next(i.path for i in tiny_sets["train"].items if i.video_id == "bad"), 1),
             VideoItem("gone", tmp_path / "gone.mp4", 0)]
    ds = ClipDataset(items, 4, 32, SHORT, temporal_views=2, spatial_views=3)
    for i, reason in enumerate(["video_unreadable", "missing_video"]):
        out = ds[i]
        assert not out["ok"] and out["reason"] == reason
        assert out["frames"].shape == (6, 3, 4, 32, 32) and not out["frames"].any()


# ----------------------------------------------------------------------------- features and cache


def test_features_cache_hit_miss_by_key(tmp_path):
    calls = []

    def compute() -> Features:
        calls.append(1)
        return Features(np.full((3, 2, 4), len(calls), np.float32), np.arange(3), np.array([True, False, True]),
                        ["", "video_unreadable", ""])

    path = tmp_path / "features" / "ssv2" / "test-2x3-224.npz"
    key = {"checkpoint_sha256": "abc", "split": "test", "temporal_views": 2}
    first, hit = cached_features(path, key, compute)
    assert not hit and len(calls) == 1 and path.is_file()
    again, hit = cached_features(path, key, compute)
    assert hit and len(calls) == 1
    assert np.array_equal(again.feats, first.feats) and again.reasons == first.reasons
    assert again.ok.tolist() == [True, False, True]
    other, hit = cached_features(path, key | {"checkpoint_sha256": "def"}, compute)   # another checkpoint
    assert not hit and len(calls) == 2 and other.feats[0, 0, 0] == 2
    path.write_bytes(b"not an npz")                                                      # damaged: recomputed
    _, hit = cached_features(path, key, compute)
    assert not hit and len(calls) == 3
    assert not list(path.parent.glob(".*.tmp"))


def test_extract_features_counts_the_unreadable_video(tiny_sets, tiny_video_model):
    ds = ClipDataset(tiny_sets["train"].items, 4, 32, SHORT)
    feats = extract_features(tiny_video_model, ds, batch_size=4, workers=0, device="cpu")
    assert feats.feats.shape == (10, 1, 32) and feats.feats.dtype == np.float32
    bad = [i for i, it in enumerate(tiny_sets["train"].items) if it.video_id == "bad"]
    assert (~feats.ok).nonzero()[0].tolist() == bad and feats.reasons[bad[0]] == "video_unreadable"
    assert not feats.feats[bad[0]].any() and feats.valid()[0].shape == (9, 1, 32)
    with torch.no_grad():  # the CLS of the final norm, as the model computes it
        direct = tiny_video_model(ds[0]["frames"]).numpy()
    assert np.allclose(feats.feats[0], direct, atol=1e-5)


# ----------------------------------------------------------------------------- linear probe


def test_probe_schedule_warmup_then_cosine():
    cfg = LinearConfig(lr=1.0, min_lr=0.0, epochs=4, warmup_epochs=1)
    lrs = [probe_lr(s, 8, 2, cfg) for s in range(8)]
    assert lrs[:2] == [0.5, 1.0] and lrs[2] == 1.0 and lrs[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 5 / 6)))
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))


def test_probe_cached_equals_uncached(tiny_sets, tiny_video_model):
    cfg = LinearConfig(lr=0.1, epochs=4, warmup_epochs=1, batch_size=3, seed=3)
    train_ds = ClipDataset(tiny_sets["train"].items, 4, 32, SHORT, temporal_views=2, spatial_views=3)
    test_ds = ClipDataset(tiny_sets["test"].items, 4, 32, SHORT, temporal_views=2, spatial_views=3)
    t0 = time.perf_counter()
    train = extract_features(tiny_video_model, train_ds, batch_size=4, workers=0, device="cpu")
    extract_s = time.perf_counter() - t0
    cached = train_probe_cached(train, 3, cfg)
    uncached = train_probe_uncached(tiny_video_model, train_ds, 3, cfg, workers=1, extract_batch_size=2)
    test = extract_features(tiny_video_model, test_ds, batch_size=4, workers=0, device="cpu")
    print(f"\nprobe timings: cached {extract_s:.3f}s extract + {cached.train_s:.3f}s train; "
          f"uncached {uncached.train_s:.3f}s ({uncached.extract_s:.3f}s in the encoder)")
    assert cached.steps == uncached.steps == 4 * 4                # ceil(10 / 3) steps x 4 epochs
    assert torch.allclose(cached.weight, uncached.weight, atol=1e-5) and cached.weight.abs().max() > 1e-3
    assert torch.allclose(cached.bias, uncached.bias, atol=1e-5)
    assert cached.losses == pytest.approx(uncached.losses, abs=1e-5)
    assert cached.losses[-1] < cached.losses[0]
    assert evaluate_probe(cached, test) == evaluate_probe(uncached, test)
    assert uncached.rejected == {4: "video_unreadable"}
    again = train_probe_cached(train, 3, cfg)                     # seeded: bit-identical rerun
    assert torch.equal(again.weight, cached.weight)


# ----------------------------------------------------------------------------- config and stages


def test_eval_config_parts_and_truncation(monkeypatch, tiny_sets):
    with pytest.raises(ConfigError, match="eval.linear.lrr: unknown key"):
        from_dict(LinearConfig, {"lrr": 1}, "eval.linear")
    with pytest.raises(ConfigError, match="eval.datasets.k400: not configured"):
        eval_config.dataset_spec({"datasets": {"ssv2": {"format": "ssv2", "root": "x"}}}, "k400")
    calls = []

    def fake_read_split(fmt, root, split, fold=1):
        calls.append((fmt, Path(root), split, fold))
        s = tiny_sets[split]
        return VideoSet(s.dataset, s.split, list(s.items), s.classes, list(s.missing))

    import tvts.data.formats as formats
    monkeypatch.setattr(formats, "read_split", fake_read_split, raising=False)
    vset = load_dataset_split(DatasetSpec("ssv2", "data/x", fold=2, max_videos=3), "train")
    assert calls == [("ssv2", Path("data/x"), "train", 2)]
    assert [i.video_id for i in vset.items] == ["train0", "train1", "train2"] and len(vset.missing) == 1


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A best.pt-style checkpoint of an untrained TVTS with the tiny video encoder."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", TINY,
                                ["a red square moves left", "a blue square moves down"])


def _eval_json(root: str) -> str:
    return json.dumps({"eval": {
        "datasets": {"tiny": {"format": "tiny", "root": root}},
        "tasks": {"zeroshot_v2v": ["tiny"], "linear": ["tiny"]},          # read by the workflow, ignored here
        "views": {"short_side": SHORT, "temporal": 2, "spatial": 3, "batch_size": 4, "workers": 0},
        "zeroshot_v2v": {"short_side": SHORT},
        "linear": {"lr": 0.1, "epochs": 3, "warmup_epochs": 1, "batch_size": 4},
        "finetune": {"anything": 1}}})                                      # another stage's part: not validated here


def _fake_split(tiny_sets):
    def load(spec, split):
        assert spec.format == "tiny"
        return tiny_sets[split]
    return load


def test_stage_zeroshot_v2v(tmp_path, tiny_sets, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("TVTS_TRACKING", "off")
    monkeypatch.setattr(zeroshot_job, "load_dataset_split", _fake_split(tiny_sets))
    out = tmp_path / "eval" / "zeroshot_v2v" / "tiny.json"
    argv = ["--model", str(tiny_checkpoint), "--dataset", "tiny", "--out", str(out), "--features",
            str(tmp_path / "features"), "--device", "cpu", "--exp", "t", "--config-json", _eval_json("x")]
    assert eval_zeroshot_v2v.main(argv) == 0
    res = json.loads(out.read_text())
    assert set(res["metrics"]) == {"r1", "r5", "r10"} and 0 <= res["metrics"]["r1"] <= res["metrics"]["r10"] <= 100
    assert res["counts"] == {"n_test": 6, "n_unreadable": 0, "n_missing": 1, "n_classes": 3}
    assert res["rejects"][0]["reason"] == "missing_video" and res["features"]["hit"] is False
    assert (tmp_path / "features" / "tiny" / f"test-1x1-{SHORT}.npz").is_file()
    assert eval_zeroshot_v2v.main(argv) == 0
    again = json.loads(out.read_text())
    assert again["features"]["hit"] is True and again["metrics"] == res["metrics"]


def test_stage_linear_logs_to_mlflow(tmp_path, tiny_sets, tiny_checkpoint, monkeypatch):
    import mlflow

    from tvts import tracking

    monkeypatch.setattr(linear_job, "load_dataset_split", _fake_split(tiny_sets))
    out = tmp_path / "eval" / "linear" / "tiny.json"
    argv = ["--model", str(tiny_checkpoint), "--dataset", "tiny", "--out", str(out), "--features",
            str(tmp_path / "features"), "--device", "cpu", "--exp", "evaltest", "--rule", "eval_linear_tiny",
            "--config-json", _eval_json("x")]
    assert eval_linear.main(argv) == 0
    res = json.loads(out.read_text())
    assert set(res["metrics"]) == {"top1", "top5"} and res["metrics"]["top5"] == 100.0   # 3 classes
    assert res["counts"] == {"n_train": 9, "n_test": 6, "n_classes": 3, "n_unreadable": 1, "n_missing": 2}
    assert sorted(r["reason"] for r in res["rejects"]) == ["missing_video", "missing_video", "video_unreadable"]
    assert res["features"]["hit"] == {"train": False, "test": False} and len(res["losses"]) == 3
    assert {"time/extract_s", "time/train_s"} <= set(res["timings"])
    names = sorted(p.name for p in (tmp_path / "features" / "tiny").iterdir())
    assert names == [f"test-2x3-{SHORT}.npz", f"train-2x3-{SHORT}.npz"]

    client = mlflow.MlflowClient(tracking.tracking_uri())
    runs = client.search_runs([tracking.init_store()], "tags.`tvts.exp` = 'evaltest'")
    assert len(runs) == 1 and runs[0].data.tags["tvts.task"] == "linear" and runs[0].data.tags["tvts.dataset"] == "tiny"
    logged = runs[0].data.metrics
    assert {"top1", "top5", "n_train", "n_test", "n_unreadable", "n_missing",
            "time/extract_s", "time/train_s"} <= set(logged)
    assert logged["top1"] == pytest.approx(res["metrics"]["top1"]) and logged["n_unreadable"] == 1

    # uncached mode: the same probe (same features up to rounding), the encoder in the loop
    monkeypatch.setenv("TVTS_TRACKING", "off")
    uncached = tmp_path / "uncached.json"
    cfg = json.loads(_eval_json("x"))
    cfg["eval"]["linear"]["mode"] = "uncached"
    assert eval_linear.main(argv[:5] + [str(uncached)] + argv[6:-1] + [json.dumps(cfg)]) == 0
    res_u = json.loads(uncached.read_text())
    assert res_u["metrics"] == res["metrics"] and res_u["counts"] == res["counts"]
    assert res_u["losses"] == pytest.approx(res["losses"], abs=1e-5)


def _paired_json(**temporal) -> str:
    """The tiny set's 'right' and 'left' declared an order-reversed pair; eval.temporal as given."""
    cfg = json.loads(_eval_json("x"))
    cfg["eval"]["datasets"]["tiny"]["reversed_pairs"] = '[["right", "left"]]'
    cfg["eval"]["temporal"] = temporal
    return json.dumps(cfg)


def test_stage_linear_reports_within_pair_accuracy(tmp_path, tiny_sets, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("TVTS_TRACKING", "off")
    monkeypatch.setattr(linear_job, "load_dataset_split", _fake_split(tiny_sets))
    out = tmp_path / "linear.json"
    argv = ["--model", str(tiny_checkpoint), "--dataset", "tiny", "--out", str(out), "--device", "cpu",
            "--exp", "t", "--config-json", _paired_json()]
    assert eval_linear.main(argv) == 0
    res = json.loads(out.read_text())
    assert set(res["metrics"]) == {"top1", "top5", "within_pair_top1"} and res["counts"]["n_reversed_pairs"] == 1
    assert 0 <= res["metrics"]["within_pair_top1"] <= 100
    bad = json.loads(_paired_json())
    bad["eval"]["datasets"]["tiny"]["reversed_pairs"] = '[["right", "up"]]'
    with pytest.raises(SystemExit, match="reversed_pairs"):
        eval_linear.main(argv[:-1] + [json.dumps(bad)])


def test_stage_temporal_probes_log_to_mlflow(tmp_path, tiny_sets, tiny_checkpoint, monkeypatch):
    import mlflow

    from tvts import tracking
    from tvts.eval import temporal_job
    from tvts.stages import eval_temporal

    monkeypatch.setattr(temporal_job, "load_dataset_split", _fake_split(tiny_sets))
    out = tmp_path / "eval" / "temporal" / "tiny.json"
    argv = ["--model", str(tiny_checkpoint), "--dataset", "tiny", "--out", str(out), "--device", "cpu",
            "--features", str(tmp_path / "features"), "--exp", "temporaltest", "--rule", "eval_temporal",
            "--config-json", _paired_json()]
    assert eval_temporal.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["features"]["hit"] == {"train": False, "test": False}
    assert len(list((tmp_path / "features" / "tiny").glob("*.npz"))) == 2 * 2 * 2     # split x pool x direction
    assert set(res["metrics"]) == {f"{p}/{m}" for p in ("cls", "mean") for m in ("top1", "within_pair_top1", "arrow_top1")}
    assert all(0 <= v <= 100 for v in res["metrics"].values())
    assert res["counts"] == {"n_train": 9, "n_arrow_train": 9, "n_test": 6, "n_classes": 3, "n_reversed_pairs": 1,
                             "n_test_paired": 4, "n_unreadable": 1, "n_missing": 2}
    assert res["chance"]["arrow_top1"] == 50.0 and res["protocol"]["views"].startswith("1x1")
    client = mlflow.MlflowClient(tracking.tracking_uri())
    runs = client.search_runs([tracking.init_store()], "tags.`tvts.exp` = 'temporaltest'")
    assert len(runs) == 1 and runs[0].data.tags["tvts.task"] == "temporal"
    assert runs[0].data.metrics["mean/arrow_top1"] == pytest.approx(res["metrics"]["mean/arrow_top1"])

    # a rerun reads the cached features and gets the same numbers
    monkeypatch.setenv("TVTS_TRACKING", "off")
    assert eval_temporal.main(argv) == 0
    again = json.loads(out.read_text())
    assert again["features"]["hit"] == {"train": True, "test": True} and again["metrics"] == res["metrics"]

    # one pool, every eval.views view; a dataset without pairs has no within-pair metric
    cfg = json.loads(_paired_json(pools=["mean"], views="all"))
    cfg["eval"]["datasets"]["tiny"]["reversed_pairs"] = ""
    assert eval_temporal.main(argv[:-1] + [json.dumps(cfg)]) == 0
    res = json.loads(out.read_text())
    assert set(res["metrics"]) == {"mean/top1", "mean/arrow_top1"} and res["protocol"]["views"].startswith("2x3")
