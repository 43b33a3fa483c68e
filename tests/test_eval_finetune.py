"""Fine-tuning and text-to-video stages: recipe pieces, both stages end to end, preemption + exact resume, DDP."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tvts.config import ConfigError, from_dict
from tvts.eval.config import DatasetSpec, load_dataset_split
from tvts.eval.augment import ClipAugment
from tvts.eval.finetune import AugmentedClips, FinetuneConfig, build_classifier, build_optimizer, param_groups
from tvts.eval.views import ClipDataset
from tvts.eval.t2v import T2VConfig, contrastive_share, queries
from tvts.data.formats.common import VideoItem
from tvts.models.load import load_model
from tvts.models.tvts import contrastive_loss
from tvts.stages import eval_finetune, eval_t2v
from tvts.train import checkpoint, schedule, trainer
from tvts.train.preemption import PREEMPTED

from conftest import save_tiny_checkpoint

HERE = Path(__file__).parent
TINY = dict(img_size=32, patch_size=8, tubelet=2, num_frames=4, dim=32, depth=3, heads=2)


# The telemetry every training stage logs (tvts/train/telemetry.py).
PERF = {"perf/samples_per_s_per_device", "perf/data_wait_share", "perf/step_time_p50_s", "perf/step_time_p99_s",
        "perf/flops_per_sample", "perf/mfu", "perf/peak_mem_gb", "perf/device_hours"}

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def corpus(smoke_corpus, tmp_path_factory) -> Path:
    """The smoke SSV2 and MSR-VTT sets with one corrupt train video each and one missing SSV2 test video."""
    root = tmp_path_factory.mktemp("ft_corpus")
    for name in ("ssv2", "msrvtt"):
        shutil.copytree(smoke_corpus / name, root / name)
    ssv2_videos = root / "ssv2" / "20bn-something-something-v2"
    train_ids = [e["id"] for e in json.loads((root / "ssv2" / "train.json").read_text())]
    test_ids = [e["id"] for e in json.loads((root / "ssv2" / "validation.json").read_text())]
    (ssv2_videos / f"{train_ids[4]}.webm").write_bytes(b"\x1aE\xdf\xa3" + bytes(range(256)) * 2)   # EBML magic, garbage
    (ssv2_videos / f"{test_ids[0]}.webm").unlink()
    (root / "msrvtt" / "videos" / "all" / "video1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    return root


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A best.pt of an untrained TVTS with a tiny 3-block video encoder (the format tvts.select reads)."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ft_ckpt") / "best.pt", TINY,
                                ["the red square moves to the left", "a blue circle turns clockwise"])


def eval_section(corpus: Path, finetune: dict | None = None, t2v: dict | None = None) -> dict:
    return {"eval": {
        "datasets": {"ssv2": {"format": "ssv2", "root": str(corpus / "ssv2")},
                     "msrvtt": {"format": "msrvtt", "root": str(corpus / "msrvtt")}},
        "views": {"short_side": 36, "temporal": 2, "spatial": 3, "batch_size": 8, "workers": 0},
        "linear": {"epochs": 1},                                              # another stage's part: ignored
        "finetune": {"epochs": 2, "warmup_epochs": 1, "batch_size": 4, "lr": 0.05, "workers": 0, "ckpt_every": 2,
                     "drop_path": 0.1, "head_dropout": 0.1, "crop_scale": [0.3, 1.0]} | (finetune or {}),
        "t2v": {"epochs": 2, "warmup_epochs": 1, "batch_size": 2, "lr": 1e-3, "workers": 0,
                "ckpt_every": 1} | (t2v or {})}}


def run_stage(module, ckpt: Path, dataset: str, out: Path, work: Path, section: dict, *extra: str,
              exp: str = "fttest") -> int:
    argv = ["--model", str(ckpt), "--dataset", dataset, "--out", str(out), "--work", str(work), "--cpu",
            "--exp", exp, "--config-json", json.dumps(section), *extra]
    try:
        return module.main(argv)
    except SystemExit as err:
        return int(err.code)


def final_weights(work: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(checkpoint.epoch_checkpoints(work / "ckpt")[-1])["model"]


def mlflow_runs(exp: str, task: str) -> list:
    import mlflow

    from tvts import tracking

    client = mlflow.MlflowClient(tracking.tracking_uri())
    return client.search_runs([tracking.init_store()], f"tags.`tvts.exp` = '{exp}' and tags.`tvts.task` = '{task}'")


# ----------------------------------------------------------------------------- recipe pieces


def test_layer_decay_groups_and_no_decay_params(tiny_checkpoint):
    from tvts.models.load import load_model

    tvts_model, _ = load_model(tiny_checkpoint)
    cfg = FinetuneConfig(layer_decay=0.5, weight_decay=0.05)
    model = build_classifier(tvts_model.video, 5, cfg)
    depth = TINY["depth"]
    scale_of = {id(p): g["lr_scale"] for g in param_groups(model, 0.05, 0.5) for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in param_groups(model, 0.05, 0.5) for p in g["params"]}
    named = dict(model.named_parameters())
    assert set(scale_of) == {id(p) for p in named.values()}                         # every parameter, once
    for i in range(1, depth + 1):                                                    # block i (1-based)
        assert scale_of[id(named[f"video.blocks.{i - 1}.attn.qkv.weight"])] == 0.5 ** (depth + 1 - i)
    assert scale_of[id(named["head.weight"])] == scale_of[id(named["video.norm.weight"])] == 1.0
    for name in ("video.cls_token", "video.pos_embed", "video.temporal_embed", "video.patch_embed.proj.weight"):
        assert scale_of[id(named[name])] == 0.5 ** (depth + 1)
    for name in ("video.cls_token", "video.pos_embed", "video.temporal_embed", "video.blocks.0.norm1.weight",
                 "video.blocks.1.attn.qkv.bias", "head.bias", "video.norm.bias"):
        assert decay_of[id(named[name])] == 0.0, name
    for name in ("video.blocks.0.attn.qkv.weight", "video.blocks.2.mlp.fc1.weight", "head.weight",
                 "video.patch_embed.proj.weight"):
        assert decay_of[id(named[name])] == 0.05, name
    opt = build_optimizer(model, cfg, peak_lr=2e-3)
    assert {round(g["lr"] / g["lr_scale"], 12) for g in opt.param_groups} == {2e-3}
    assert cfg.peak_lr(512) == pytest.approx(2e-3) and FinetuneConfig(lr_batch=0).peak_lr(512) == 1e-3


def test_warmup_then_cosine_schedule():
    f = [schedule.warmup_cosine(s, 10, 2, 0.1) for s in range(12)]
    assert f[:3] == [0.5, 1.0, 1.0] and f[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 7 / 8)))
    assert f[10] == f[11] == pytest.approx(0.1) and all(a >= b for a, b in zip(f[1:], f[2:]))


def test_rand_augment_applies_the_same_ops_to_every_frame(monkeypatch):
    aug = ClipAugment(32, "rand-m7-n4-mstd0.5-inc1", reprob=0.0, scale=(0.3, 1.0))
    calls: list[tuple] = []
    for op in aug.rand_augment.ops:  # record each applied op with its drawn arguments
        def spy(img, *args, _fn=op.aug_fn, _name=op.name, **kw):
            calls.append((_name, args, kw.get("resample")))
            return _fn(img, *args, **kw)
        op.aug_fn = spy
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (4, 40, 48, 3), dtype=np.uint8)                    # 4 different frames
    py_state, np_state = random.getstate(), np.random.get_state()[1].copy()
    per_clip = []
    for seed in range(6):
        calls.clear()
        aug.rand_augment_frames(frames, seed)
        per_frame = len(calls) // 4
        assert len(calls) == 4 * per_frame
        assert all(calls[k * per_frame:(k + 1) * per_frame] == calls[:per_frame] for k in range(4))
        per_clip.append(calls[:per_frame])
    assert any(per_clip) and len({repr(c) for c in per_clip}) > 1                  # ops differ between clips
    assert random.getstate() == py_state and np.array_equal(np.random.get_state()[1], np_state)  # restored

    # The whole clip augmentation on a clip of identical frames gives identical frames (same ops,
    # crop, flip and erased box), and the same RNG gives the same clip.
    full = ClipAugment(32, "rand-m7-n4-mstd0.5-inc1", reprob=1.0, flip=True)
    still = np.repeat(frames[:1], 4, axis=0)
    out = full(still, np.random.default_rng([1, 2, 3]))
    assert out.shape == (3, 4, 32, 32)
    assert torch.equal(out, full(still, np.random.default_rng([1, 2, 3])))           # seeded: reproducible
    plain = ClipAugment(32, "rand-m7-n4-mstd0.5-inc1", reprob=0.0, flip=True)
    no_erase = plain(still, np.random.default_rng([1, 2, 3]))
    box = (out != no_erase).any(0)                                                    # (T, S, S) erased pixels
    assert box.any() and all(torch.equal(box[0], box[t]) for t in range(4))          # one box, on every frame
    for t in range(1, 4):
        assert torch.equal(no_erase[:, 0], no_erase[:, t])


def test_train_view_test_trains_on_the_test_centre_view(corpus):
    """`train_view: test`: every epoch's training clip is the test's centre view, unaugmented; the
    default draws new frames and crops each epoch."""
    items = load_dataset_split(DatasetSpec("ssv2", str(corpus / "ssv2")), "train").items[:3]
    test = ClipDataset(items, 4, 32, 36)
    plain = AugmentedClips(items, 4, 32, 36, ClipAugment(32, "", 0.0, (0.3, 1.0)), mask_ratio=0.5, tubelet=2,
                           patch_size=8, test_view=True)
    augmented = AugmentedClips(items, 4, 32, 36, ClipAugment(32, "", 0.0, (0.3, 1.0)))
    for i in range(3):
        clips = [plain[(epoch, i)] for epoch in (0, 1)]
        assert all(torch.equal(c["frames"], test[i]["frames"][0]) for c in clips)
        assert clips[0]["keep"].shape == (2, 8) and not torch.equal(clips[0]["keep"], clips[1]["keep"])
    assert any(not torch.equal(augmented[(0, i)]["frames"], augmented[(1, i)]["frames"]) for i in range(3))
    with pytest.raises(ConfigError, match="train_view"):
        from_dict(FinetuneConfig, {"train_view": "centre"}, "eval.finetune")


def test_contrastive_share_is_the_pretraining_loss_and_skips_unreadable_pairs():
    torch.manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(5, 8, dtype=torch.float64), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(5, 8, dtype=torch.float64), dim=-1)
    ok = torch.ones(5, dtype=torch.bool)
    assert contrastive_share(v, t, ok, 0.05) == contrastive_loss(v, t, v, t, 0, 0.05)
    ok[2] = False
    keep = ok.nonzero().squeeze(1)
    expect = contrastive_loss(v[keep], t[keep], v[keep], t[keep], 0, 0.05)
    assert contrastive_share(v, t, ok, 0.05).item() == pytest.approx(expect.item(), rel=1e-12)


def test_queries_and_config_errors():
    items = [VideoItem("a", Path("a.mp4"), captions=("a1", "a2")), VideoItem("b", Path("b.mp4"), captions=("b1",))]
    assert queries(items, "first") == (["a1", "b1"], [0, 1])
    assert queries(items, "all") == (["a1", "a2", "b1"], [0, 0, 1])
    assert T2VConfig().query_mode("msvd") == "all" and T2VConfig().query_mode("msrvtt") == "first"
    assert not FinetuneConfig().uses_flip("ssv2") and FinetuneConfig().uses_flip("kinetics400")
    with pytest.raises(ConfigError, match="eval.finetune.lrr: unknown key"):
        from_dict(FinetuneConfig, {"lrr": 1}, "eval.finetune")
    with pytest.raises(ConfigError, match="eval.t2v.test_captions"):
        from_dict(T2VConfig, {"test_captions": "some"}, "eval.t2v")


# ----------------------------------------------------------------------------- stages


def test_stage_finetune_end_to_end(tmp_path, corpus, tiny_checkpoint):
    out = tmp_path / "eval" / "finetune" / "ssv2.json"
    section = eval_section(corpus, {"val_every": 1})
    assert run_stage(eval_finetune, tiny_checkpoint, "ssv2", out, tmp_path / "work", section,
                     "--rule", "eval_finetune_ssv2") == 0
    res = json.loads(out.read_text())
    assert set(res["metrics"]) == {"top1", "top5"}
    assert 0 <= res["metrics"]["top1"] <= res["metrics"]["top5"] <= 100
    c = res["counts"]
    spec = DatasetSpec("ssv2", str(corpus / "ssv2"))
    train = load_dataset_split(spec, "train")
    n_test, n_train = len(load_dataset_split(spec, "test").items), len(train.items)
    assert (c["n_train"], c["n_test"], c["n_classes"], c["n_unreadable"], c["n_missing"]) == (
        n_train - 1, n_test, len(train.classes), 1, 1)                  # one corrupt train video
    assert sorted(r["reason"] for r in res["rejects"]) == ["missing_video", "video_unreadable"]
    assert c["steps"] == 2 * (n_train // 4) and res["recipe"]["steps_per_epoch"] == n_train // 4
    assert res["recipe"]["augment"]["flip"] is False and res["recipe"]["global_batch"] == 4
    assert [h["epoch"] for h in res["history"]] == [0, 1] and all("val/top1" in h for h in res["history"])
    assert Path(res["checkpoint"]).is_file() and res["checkpoint"].startswith(str(tmp_path / "work"))
    assert {"time/train_s", "time/test_s", "time/total_s"} <= set(res["timings"])
    assert PERF <= set(res["timings"]) and res["timings"]["perf/flops_per_sample"] > 0
    assert 0 <= res["timings"]["perf/data_wait_share"] <= 1 and res["timings"]["perf/mfu"] > 0

    runs = mlflow_runs("fttest", "finetune")
    assert len(runs) == 1 and runs[0].data.tags["tvts.dataset"] == "ssv2" and runs[0].info.status == "FINISHED"
    logged = runs[0].data.metrics
    assert {"top1", "top5", "n_train", "n_test", "n_unreadable", "n_missing", "time/train_s", "train/loss",
            "val/top1"} | PERF <= set(logged)
    assert logged["top1"] == pytest.approx(res["metrics"]["top1"])

    # A finished run is not trained again: the rerun only evaluates, with the same result; asked
    # to, it writes the fine-tuned encoder as a model the frozen probes load (the supervised control).
    saved = tmp_path / "work" / "model.pt"
    assert run_stage(eval_finetune, tiny_checkpoint, "ssv2", out, tmp_path / "work", section,
                     "--save-model", str(saved)) == 0
    again = json.loads(out.read_text())
    assert again["resumed_from"] == Path(res["checkpoint"]).name and again["metrics"] == res["metrics"]
    assert again["saved_model"] == str(saved)
    model, _ = load_model(saved)
    tuned, start = final_weights(tmp_path / "work"), checkpoint.load(tiny_checkpoint)["model"]
    video = {k: v for k, v in model.state_dict().items() if k.startswith("video.")}
    assert video and all(torch.equal(v, tuned[k]) for k, v in video.items())
    assert any(not torch.equal(v, start[k]) for k, v in video.items())          # it did train
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items() if k.startswith("text."))


def test_finetune_preempted_run_resumes_bit_exactly(tmp_path, corpus, tiny_checkpoint, monkeypatch):
    """A real SIGTERM after step 3 (mid-epoch 0): checkpoint, exit 75; the rerun ends with the same weights
    and continues the same MLflow run."""
    section = eval_section(corpus, {"ckpt_every": 100})     # only the forced checkpoint mid-epoch
    with monkeypatch.context() as m:
        m.setenv("TVTS_TRACKING", "off")
        assert run_stage(eval_finetune, tiny_checkpoint, "ssv2", tmp_path / "a.json", tmp_path / "straight",
                         section) == 0
    straight = json.loads((tmp_path / "a.json").read_text())

    real_step = trainer.optimizer_step

    def step_then_signal(state, clip):
        real_step(state, clip)
        if state.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "optimizer_step", step_then_signal)
    work = tmp_path / "preempted"
    assert run_stage(eval_finetune, tiny_checkpoint, "ssv2", tmp_path / "b.json", work, section,
                     exp="ftresume") == PREEMPTED
    assert not (tmp_path / "b.json").exists()
    assert [r.info.status for r in mlflow_runs("ftresume", "finetune")] == ["KILLED"]
    assert [p.name for p in checkpoint.candidates(work / "ckpt")] == [checkpoint.step_name(3)]
    monkeypatch.setattr(trainer, "optimizer_step", real_step)
    assert run_stage(eval_finetune, tiny_checkpoint, "ssv2", tmp_path / "b.json", work, section, exp="ftresume") == 0
    resumed = json.loads((tmp_path / "b.json").read_text())
    runs = mlflow_runs("ftresume", "finetune")
    assert [r.info.status for r in runs] == ["FINISHED"] and "train/loss" in runs[0].data.metrics
    assert resumed["resumed_from"] == checkpoint.step_name(3)
    a, b = final_weights(tmp_path / "straight"), final_weights(work)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["metrics"] == straight["metrics"]
    assert [h["train/loss"] for h in resumed["history"]] == [h["train/loss"] for h in straight["history"]]
    assert resumed["counts"]["n_unreadable"] == straight["counts"]["n_unreadable"] == 1


def test_stage_t2v_zeroshot_and_finetuned(tmp_path, corpus, tiny_checkpoint):
    out = tmp_path / "eval" / "t2v" / "msrvtt.json"
    assert run_stage(eval_t2v, tiny_checkpoint, "msrvtt", out, tmp_path / "work", eval_section(corpus)) == 0
    res = json.loads(out.read_text())
    names = {f"{p}/{m}" for p in ("zeroshot", "finetuned") for m in ("r1", "r5", "r10", "medr")}
    assert set(res["metrics"]) == names
    m = res["metrics"]
    for phase in ("zeroshot", "finetuned"):
        assert 0 <= m[f"{phase}/r1"] <= m[f"{phase}/r5"] <= m[f"{phase}/r10"] <= 100 and m[f"{phase}/medr"] >= 1
    c = res["counts"]
    assert (c["n_train"], c["n_test"], c["n_queries"], c["n_unreadable"], c["n_missing"]) == (3, 2, 2, 1, 0)
    assert c["steps"] == 2 * (4 // 2) and len(res["history"]) == 2
    assert np.isfinite([h["train/loss"] for h in res["history"]]).all()      # a batch with the unreadable video
    assert res["rejects"][0]["item"] == "train/video1"
    assert {"time/zeroshot_s", "time/train_s", "time/finetuned_s"} <= set(res["timings"])
    runs = mlflow_runs("fttest", "t2v")
    assert len(runs) == 1 and runs[0].data.tags["tvts.dataset"] == "msrvtt"
    assert names | PERF <= set(runs[0].data.metrics)

    zs_only = tmp_path / "zs.json"                                              # epochs 0: zero-shot only
    section = eval_section(corpus, t2v={"epochs": 0, "warmup_epochs": 0, "test_captions": "all"})
    assert run_stage(eval_t2v, tiny_checkpoint, "msrvtt", zs_only, tmp_path / "work0", section) == 0
    zs = json.loads(zs_only.read_text())
    assert set(zs["metrics"]) == {n for n in names if n.startswith("zeroshot")}
    assert zs["counts"]["n_queries"] == 6 and zs["counts"]["steps"] == 0        # 3 captions x 2 test videos


def test_t2v_preempted_finetuning_resumes_bit_exactly(tmp_path, corpus, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("TVTS_TRACKING", "off")
    section = eval_section(corpus, t2v={"ckpt_every": 100, "epochs": 3})
    assert run_stage(eval_t2v, tiny_checkpoint, "msrvtt", tmp_path / "a.json", tmp_path / "straight", section) == 0
    real_step = trainer.optimizer_step

    def step_then_signal(state, clip):
        real_step(state, clip)
        if state.step == 3:                                                        # mid-epoch 1
            os.kill(os.getpid(), signal.SIGUSR1)

    monkeypatch.setattr(trainer, "optimizer_step", step_then_signal)
    work = tmp_path / "preempted"
    assert run_stage(eval_t2v, tiny_checkpoint, "msrvtt", tmp_path / "b.json", work, section) == PREEMPTED
    monkeypatch.setattr(trainer, "optimizer_step", real_step)
    assert run_stage(eval_t2v, tiny_checkpoint, "msrvtt", tmp_path / "b.json", work, section) == 0
    a, b = final_weights(tmp_path / "straight"), final_weights(work)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert rb["resumed_from"] == checkpoint.step_name(3) and ra["metrics"] == rb["metrics"]


def test_finetune_under_torchrun_two_processes_matches_one(tmp_path, corpus, tiny_checkpoint):
    """2 gloo ranks x 4 clips == 1 process x 8 clips (no dropout): the same weights up to float rounding."""
    section = eval_section(corpus, {"batch_size": 4, "drop_path": 0.0, "head_dropout": 0.0, "workers": 1,
                                      "amp": "off"})  # float32: bf16 rounding would hide a DDP mismatch
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "ddp.json"
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "tvts.cli", "eval-finetune",
                           "--model", str(tiny_checkpoint), "--dataset", "ssv2", "--out", str(out), "--work",
                           str(tmp_path / "ddp"), "--cpu", "--exp", "ftddp", "--config-json", json.dumps(section)],
                          capture_output=True, text=True, timeout=300,
                          env=os.environ | {"OMP_NUM_THREADS": "1", "TVTS_TRACKING": "off"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    ddp = json.loads(out.read_text())
    assert ddp["counts"]["world_size"] == 2 and ddp["recipe"]["global_batch"] == 8
    spec = DatasetSpec("ssv2", str(corpus / "ssv2"))
    n_test, n_train = (len(load_dataset_split(spec, split).items) for split in ("test", "train"))
    assert ddp["counts"]["steps"] == 2 * (n_train // 8) and ddp["counts"]["n_test"] == n_test   # every test video, once
    assert ddp["counts"]["n_unreadable"] == 1
    state = checkpoint.load(Path(ddp["checkpoint"]))
    assert state["complete"] and not any(k.startswith("module.") for k in state["model"])

    os.environ["TVTS_TRACKING"] = "off"
    try:
        one_section = eval_section(corpus, {"batch_size": 8, "drop_path": 0.0, "head_dropout": 0.0, "amp": "off"})
        assert run_stage(eval_finetune, tiny_checkpoint, "ssv2", tmp_path / "one.json", tmp_path / "one",
                         one_section) == 0
    finally:
        del os.environ["TVTS_TRACKING"]
    one, two = final_weights(tmp_path / "one"), state["model"]
    init = checkpoint.load(tiny_checkpoint)["model"]
    moved = max((one[k] - init[k]).abs().max().item() for k in init if k.startswith("video.") and k in one)
    diff = max((one[k] - two[k]).abs().max().item() for k in one)
    print(f"\nDDP vs one process: weights moved up to {moved:.2e}, differ by {diff:.2e}")
    assert moved > 1e-3 and diff < 1e-5, (moved, diff)
