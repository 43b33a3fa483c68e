"""Post-pretraining: the alternating sampler, the stage on tiny pair shards (it learns, it selects,
it resumes exactly), and its place in the DAG (`-R post_pretrain` reruns it and what is below it)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, SMOKE, save_tiny_checkpoint
from tvts.data.demo.pairs import generate_pairs
from tvts.models.load import load_model
from tvts.stages import post_pretrain, shard_pairs
from tvts.train import checkpoint, trainer
from tvts.train.pair_data import AlternatingSampler
from tvts.train.preemption import PREEMPTED

VIDEO = {"img_size": 32, "patch_size": 8, "tubelet": 2, "num_frames": 8, "dim": 32, "depth": 1, "heads": 2}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, smoke_demo_config) -> tuple[list[Path], Path]:
    """(the two shard_pairs part folders of the demo pairs, a tiny best.pt to start from)."""
    root = tmp_path_factory.mktemp("post")
    corpus = root / "corpus"
    corpus.mkdir()
    generate_pairs(corpus, smoke_demo_config)
    parts = []
    for i in range(2):
        out = root / f"part-{i}"
        assert shard_pairs.main(["--cc3m", str(corpus / "cc3m/cc3m_train.tsv"), "--cc3m-images",
                                 str(corpus / "cc3m/training"), "--webvid", str(corpus / "webvid/results_2M_train.csv"),
                                 "--webvid-videos", str(corpus / "webvid/videos"), "--part", str(i), "--parts", "2",
                                 "--out", str(out), "--config", str(SMOKE), "--exp", "t"]) == 0
        parts.append(out)
    with open(corpus / "cc3m/cc3m_train.tsv", encoding="utf-8") as f:
        captions = [row[0] for row in csv.reader(f, delimiter="\t")]
    with open(corpus / "webvid/results_2M_train.csv", encoding="utf-8") as f:
        captions += [row[4] for row in csv.reader(f)]
    return parts, save_tiny_checkpoint(root / "best.pt", VIDEO, captions)


def run(pairs, out: Path, *extra: str) -> int:
    parts, init = pairs
    try:
        return post_pretrain.main(["--init", str(init), "--pairs", *map(str, parts), "--out", str(out / "post_pretrain"),
                                   "--select", str(out / "select"), "--config", str(SMOKE), "--exp", "t-post",
                                   "--cpu", *extra])
    except SystemExit as err:
        return int(err.code)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    manifest = json.loads((out / "post_pretrain/manifest.json").read_text())
    return checkpoint.load(out / "post_pretrain" / manifest["outputs"]["epoch_checkpoints"][-1])["model"]


def test_each_batch_index_is_one_step_per_source_in_turn_and_the_shorter_restarts():
    s = AlternatingSampler([10, 4], [2, 2], seed=3)
    assert s.steps_per_epoch() == 10   # 5 batch indices (the longer source's pass) x 2 sources
    batches = list(s)
    assert [b[0][0] for b in batches] == [0, 1] * 5
    clips = [[i for _, _, i in b] for b in batches[1::2]]
    assert sorted(clips[0] + clips[1]) == [0, 1, 2, 3] == sorted(clips[2] + clips[3])  # a pass, then it restarts
    assert [b[0][1] for b in batches[1::2]] == [0, 0, 1, 1, 2]                   # ... with a new permutation
    s.set_epoch(1)
    nxt = list(s)
    assert sorted(i for b in nxt[0::2] for _, _, i in b) == list(range(10))
    s.set_epoch(1, start_step=3)   # a resumed run: the same stream from micro-batch 3
    assert list(s) == nxt[3:]
    accum = AlternatingSampler([8, 8], [2, 2], accum=2)
    assert [b[0][0] for b in accum] == [0, 0, 1, 1, 0, 0, 1, 1]
    ranks = [list(AlternatingSampler([8, 4], [2, 1], rank=r, world=2, seed=1)) for r in range(2)]
    assert [len(b) for b in ranks[0]] == [2, 1, 2, 1]
    assert all(not set(a) & set(b) for a, b in zip(*ranks))   # ranks take disjoint slices of each global batch


def test_post_pretraining_learns_contrastively_and_selects_a_loadable_model(tmp_path, pairs):
    out = tmp_path / "run"
    assert run(pairs, out) == 0
    start = checkpoint.load(pairs[1])["model"]
    best = checkpoint.load(out / "select/best.pt")
    changed = {k for k, v in best["model"].items() if not torch.equal(v, start[k])}
    assert any(k.startswith("video.blocks") for k in changed) and any(k.startswith("text.") for k in changed)
    assert not any(k.startswith("sort_head.") for k in changed)                     # contrastive only
    assert "video.temporal_embed" in changed
    log = [json.loads(line) for line in (out / "post_pretrain/log.jsonl").read_text().splitlines()]
    losses = [r["train/loss_align"] for r in log if "train/loss_align" in r]
    assert losses[-1] < losses[0]
    assert [k for k in ("train/image/loss_align", "train/video/loss_align") if k in log[0] or k in log[1]] == \
        ["train/image/loss_align", "train/video/loss_align"]                         # image step first, then clips
    selection = json.loads((out / "select/selection.json").read_text())
    assert selection["metric"] == "loss_align" and len(selection["candidates"]) == 2
    assert selection["best_score"] == min(c["loss_align"] for c in selection["candidates"])
    model, cfg = load_model(out / "select/best.pt")   # what every evaluation calls
    assert cfg.model.video.num_frames == 8 and model.video.temporal_embed.shape[1] == 4
    history = json.loads((out / "post_pretrain/manifest.json").read_text())["history"]
    assert {"image/t2v_r1", "video/t2v_r1", "t2v_r1", "v2t_r1", "loss_align"} <= set(history[-1])


def test_a_preempted_post_pretraining_resumes_to_identical_weights(tmp_path, pairs, monkeypatch):
    assert run(pairs, tmp_path / "straight") == 0
    real_step = trainer.optimizer_step

    def step_then_signal(state, c):  # SIGTERM mid-epoch, after a clip step
        real_step(state, c)
        if state.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "optimizer_step", step_then_signal)
    out = tmp_path / "preempted"
    assert run(pairs, out) == PREEMPTED
    assert not (out / "post_pretrain/manifest.json").exists()
    monkeypatch.setattr(trainer, "optimizer_step", real_step)
    assert run(pairs, out) == 0
    a, b = final_weights(tmp_path / "straight"), final_weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert checkpoint.load(out / "select/best.pt")["source"] == checkpoint.load(tmp_path / "straight/select/best.pt")["source"]


def test_a_job_killed_before_selection_only_selects_on_rerun(tmp_path, pairs, monkeypatch, caplog):
    import logging

    caplog.set_level(logging.INFO)

    def killed(*args):
        raise KeyboardInterrupt("killed while selecting")

    monkeypatch.setattr(post_pretrain, "select_best", killed)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(pairs, out)
    assert not (out / "select/best.pt").exists() and not (out / "post_pretrain/ckpt/finalised.json").exists()
    steps = len((out / "post_pretrain/log.jsonl").read_text().splitlines())
    monkeypatch.undo()
    assert run(pairs, out) == 0
    assert "resuming from" in caplog.text and (out / "select/best.pt").exists()
    assert len((out / "post_pretrain/log.jsonl").read_text().splitlines()) == steps   # nothing trained again


def test_two_gloo_ranks_post_pretrain_with_ddp_and_gathered_validation(tmp_path, pairs):
    """The real job under torchrun with 2 ranks: DDP over the frozen sort head (no gradient waited
    for), both sources' validation gathered over the ranks, rank 0's checkpoints and selection."""
    parts, init = pairs
    out = tmp_path / "ddp"
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["post_pretrain"]["data"]["batch_size"] = 2
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node", "2",
                           "-m", "tvts.cli", "post-pretrain", "--init", str(init), "--pairs", *map(str, parts),
                           "--out", str(out / "post_pretrain"), "--select", str(out / "select"), "--config", str(path),
                           "--cpu", "--exp", "t-post"], capture_output=True, text=True, timeout=600,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    manifest = json.loads((out / "post_pretrain/manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["world_size"] == 2
    assert counts["steps_per_epoch"] == 2 * (max(counts["train_image"], counts["train_video"]) // 4)
    last = manifest["history"][-1]
    assert (last["image/n"], last["video/n"]) == (counts["val_image"], counts["val_video"])  # every val pair, once
    assert (out / "select/best.pt").exists()


def test_too_few_pairs_for_a_batch_is_one_line_naming_the_key(tmp_path, pairs):
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["post_pretrain"]["data"]["batch_size"] = 10_000
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(cfg))
    parts, init = pairs
    with pytest.raises(SystemExit, match="post_pretrain.data.batch_size"):
        post_pretrain.main(["--init", str(init), "--pairs", *map(str, parts), "--out", str(tmp_path / "o"),
                            "--select", str(tmp_path / "s"), "--config", str(path), "--cpu"])


# ------------------------------------------------------------------------------------------- the DAG
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def post_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["dag"] |= {"post_pretrain": True, "pair_parts": 2}
    path = tmp_path / "post.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def dry_run(work: Path, config: Path, *args: str) -> str:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", str(config),
           "--cores", "2", "-n", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def planned(out: str) -> dict[str, int]:
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1].splitlines()[3:]
    jobs = {}
    for line in table:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def fake_outputs(work: Path, out: str) -> None:
    """Create every planned output, in job order with rising mtimes: a finished DAG for the planner.
    Outputs without a suffix are folders (the shard and pair parts)."""
    t = 1_700_000_000
    for line in out.splitlines():
        if line.strip().startswith("output:"):
            for name in line.split(":", 1)[1].split(","):
                path = work / name.strip()
                path.parent.mkdir(parents=True, exist_ok=True)
                path.mkdir(exist_ok=True) if not path.suffix else path.write_text("{}")
                t += 10
                os.utime(path, (t, t))


def test_the_dag_evaluates_exp_post_and_R_post_pretrain_reruns_it_and_what_is_below_only(tmp_path, smoke_corpus):
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    shutil.copytree(smoke_corpus, work / "data" / "smoke")
    shutil.copy(ROOT / "data.dvc", work / "data.dvc")
    config = post_config(tmp_path)
    first = dry_run(work, config)
    jobs = planned(first)
    assert jobs["shard_pairs"] == 2 and jobs["post_pretrain"] == 1
    assert jobs["select_ckpt"] == 1 and jobs["pretrain"] == 1   # the -post model's selection is its own
    assert "--exps smoke smoke-post random" in first
    for task in ("zeroshot_v2v", "linear", "finetune", "t2v"):
        assert jobs[f"eval_{task}"] == 3 and f"results/smoke-post/eval/{task}/" in first
    fake_outputs(work, first)
    assert planned(dry_run(work, config, "--rerun-triggers", "mtime")) == {}
    again = planned(dry_run(work, config, "--rerun-triggers", "mtime", "-R", "post_pretrain"))
    assert again == {"post_pretrain": 1, "eval_zeroshot_v2v": 1, "eval_linear": 1, "eval_finetune": 1, "eval_t2v": 1,
                     "report": 1, "all": 1, "total": 7}


# ------------------------------------------------------------------------------- report and compare
def finetune_run(exp: str, top1: float) -> None:
    from tvts import tracking

    tags = {"tvts.task": "finetune", "tvts.dataset": "ssv2", "tvts.paper_config": "true"}
    with tracking.stage_run("eval_finetune", exp, {}, extra_tags=tags) as run:
        run.log_metrics({"top1": top1})


def test_compare_and_report_show_exp_exp_post_and_the_baseline_beside_the_papers_two_models(tmp_path, monkeypatch,
                                                                                              capsys):
    from conftest import own_store
    from tvts.stages import compare as compare_stage
    from tvts.stages import report as report_stage

    own_store(monkeypatch, tmp_path, "tvts-post-test")
    for exp, top1 in (("demo", 20.0), ("demo-post", 25.0), ("random", 5.0)):
        finetune_run(exp, top1)
    from tvts import tracking

    with tracking.stage_run("post_pretrain", "demo-post", {}) as run:
        run.log_metrics({"val/loss_align": 1.5, "val/t2v_r1": 0.25})
    assert compare_stage.main(["demo", "demo-post", "random"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["stage/task", "dataset", "metric", "demo", "demo-post", "random",
                                            "paper", "paper", "+CC3M+WebVid"]
    row = next(line.split() for line in text.splitlines() if line.startswith("finetune"))
    assert row[3:] == ["20.00", "25.00", "5.00", "68.50", "69.10"]
    post = next(line.split() for line in text.splitlines() if line.startswith("post_pretrain  ") and "loss_align" in line)
    assert post[1:] == ["val/loss_align", "–", "1.50", "–"]   # the second stage's own rows, demo-post's only
    out = tmp_path / "report"
    assert report_stage.main(["--out", str(out), "--exps", "demo", "demo-post", "random",
                              "--json", str(out / "report.json")]) == 0
    data = json.loads((out / "report.json").read_text())
    top1 = next(r for r in data["headline"] if (r["section"], r["dataset"], r["metric"]) == ("finetune", "ssv2", "top1"))
    assert top1["values"] == {"demo": 20.0, "demo-post": 25.0, "random": 5.0}
    assert (top1["paper"], top1["paper_post"]) == (68.5, 69.1)
    k400 = next(r for r in data["headline"] if (r["section"], r["dataset"]) == ("finetune", "k400"))
    assert k400["paper_post"] == 79.8   # a paper row even where no run has the number
    summary = (out / "summary.md").read_text()
    assert "| `demo` | `demo-post` | `random` | paper | paper +CC3M+WebVid |" in summary


def test_the_paper_config_plans_post_pretraining_with_the_papers_resources(tmp_path):
    out = dry_run(tmp_path, ROOT / "config" / "paper.yaml", "-p")
    jobs = planned(out)
    assert jobs["post_pretrain"] == 1 and jobs["shard_pairs"] == 64
    block = out.split("rule post_pretrain:", 1)[1].split("\n\n", 1)[0]
    assert "gpu=8" in block and "runtime=4320" in block and "--signal=TERM@600" in block
    assert "--exp paper-post" in block and '"batch_size": 48' in block and '"epochs": 12' in block
    assert "results/paper-post/eval/finetune/k400.json" in out


def test_gradient_checkpointing_gives_the_same_gradients(pairs):
    from tvts.train.post_pretrain import PairEncoder

    model, _ = load_model(pairs[1])
    model.train()
    encoder = PairEncoder(model)
    frames = torch.randn(3, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    ids, mask = torch.randint(5, 50, (3, 1, 16)), torch.ones(3, 1, 16, dtype=torch.long)
    grads = []
    for on in (False, True):
        model.zero_grad()
        model.video.grad_checkpointing = on
        v, t = encoder(frames, ids, mask)
        (v @ t.t()).sum().backward()
        grads.append(model.video.blocks[0].attn.qkv.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and grads[0].abs().sum() > 0
