"""`runtime.compile` on the CPU (inductor): compiled training steps match eager ones, a compiled
run resumes bit-identically, and a compile failure is one line naming the stage and the key.

Compiling is slow on 2 cores (the first compile of the smoke model's forward and backward takes
about a minute), so these tests are few: one pretraining test (eager, compiled, preempted and
resumed), one post-pretraining test, one fine-tuning test, one failure.

Dropout and drop path are off here: inductor draws its own random numbers for dropout (not
eager's stream), so with them on a compiled step's loss differs from eager's by the masks, not
by compiling. Tolerance: a compiled step's loss within 1e-4 relative of eager's (fused kernels
sum in another order: measured differences are ~1e-6).
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml

from tvts.stages import post_pretrain, pretrain
from tvts.train import checkpoint, trainer
from tvts.train.preemption import PREEMPTED

from conftest import SMOKE
from test_eval_finetune import corpus, tiny_checkpoint  # noqa: F401 (fixtures)
from test_post_pretrain import pairs  # noqa: F401 (fixture)
from test_train import final_weights, run_pretrain, train_config

CLOSE = 1e-4


def deterministic(path: Path, section: str = "pretrain") -> Path:
    """The config at `path` without dropout and drop path (see the module docstring)."""
    raw = yaml.safe_load(path.read_text())
    if section == "pretrain":
        raw["pretrain"]["model"]["text"]["dropout"] = 0.0
        raw["pretrain"]["model"]["video"]["drop_path"] = 0.0
    path.write_text(yaml.safe_dump(raw))
    return path


def losses(out: Path, key: str = "train/loss") -> list[float]:
    return [r[key] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if key in r]


def test_compiled_pretraining_matches_eager_and_resumes_bit_identically(tmp_path, smoke_shards, monkeypatch):
    (tmp_path / "e").mkdir()
    (tmp_path / "c").mkdir()
    eager = deterministic(train_config(tmp_path / "e"))
    compiled = deterministic(train_config(tmp_path / "c", compile=True))
    assert run_pretrain(smoke_shards, tmp_path / "eager", eager) == 0
    assert run_pretrain(smoke_shards, tmp_path / "straight", compiled) == 0
    reference, straight = losses(tmp_path / "eager"), losses(tmp_path / "straight")
    assert len(straight) == len(reference) >= 6
    assert straight == pytest.approx(reference, rel=CLOSE)

    real_step = trainer.optimizer_step

    def step_then_signal(state, c):   # SIGTERM mid-epoch, after step 4
        real_step(state, c)
        if state.step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "optimizer_step", step_then_signal)
    assert run_pretrain(smoke_shards, tmp_path / "resumed", compiled) == PREEMPTED
    monkeypatch.setattr(trainer, "optimizer_step", real_step)
    assert run_pretrain(smoke_shards, tmp_path / "resumed", compiled) == 0
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses(tmp_path / "resumed") == straight


def test_compiled_post_pretraining_matches_eager(tmp_path, pairs):  # noqa: F811
    parts, init = pairs
    runs = {}
    for compile_ in (False, True):
        raw = yaml.safe_load(SMOKE.read_text())
        raw["post_pretrain"]["runtime"]["compile"] = compile_
        cfg = tmp_path / f"{compile_}.yaml"
        cfg.write_text(yaml.safe_dump(raw))
        out = tmp_path / str(compile_)
        assert post_pretrain.main(["--init", str(init), "--pairs", *map(str, parts), "--out", str(out / "post"),
                                   "--select", str(out / "select"), "--config", str(cfg), "--exp", "t-post",
                                   "--cpu"]) == 0
        runs[compile_] = losses(out / "post", "train/loss_align")
    assert len(runs[True]) >= 2 and runs[True] == pytest.approx(runs[False], rel=CLOSE)


def test_compiled_finetuning_matches_eager(tmp_path, corpus, tiny_checkpoint, monkeypatch):  # noqa: F811
    """`eval.finetune.compile`: the same fine-tuning steps' losses as eager, within CLOSE (no dropout)."""
    from test_eval_finetune import eval_section, run_stage
    from tvts.eval import tuning
    from tvts.stages import eval_finetune
    # before the failure test: inductor keeps its C++ compiler check for the process
    torch._dynamo.reset()
    compiled = []
    real = tuning.compile_engine
    monkeypatch.setattr(tuning, "compile_engine", lambda *a: compiled.append(a[1:]) or real(*a))
    history = {}
    for compile_ in (False, True):
        section = eval_section(corpus, {"drop_path": 0.0, "head_dropout": 0.0, "reprob": 0.0, "epochs": 1,
                                        "warmup_epochs": 0, "amp": "off", "compile": compile_})
        out = tmp_path / f"{compile_}.json"
        assert run_stage(eval_finetune, tiny_checkpoint, "ssv2", out, tmp_path / f"work-{compile_}", section,
                         exp=f"compile-{compile_}") == 0    # its own experiment: fttest's run counts stay fttest's
        history[compile_] = [h["train/loss"] for h in json.loads(out.read_text())["history"]]
    assert compiled == [("eval_finetune", "eval.finetune.compile")]
    assert history[True] == pytest.approx(history[False], rel=CLOSE) and history[False]


def test_a_compile_failure_is_one_line_naming_the_stage_and_the_setting(tmp_path, smoke_shards, monkeypatch):
    import torch._inductor.config as inductor

    # A real compile failure: inductor's C++ compiler is not there (and nothing comes from its caches)
    monkeypatch.setattr(inductor, "fx_graph_cache", False)
    monkeypatch.setattr(inductor, "autotune_local_cache", False)
    monkeypatch.setattr(inductor.cpp, "cxx", ("/nonexistent/g++",))
    torch._dynamo.reset()
    cfg = train_config(tmp_path, compile=True)
    with pytest.raises(SystemExit) as err:
        pretrain.main(["--shards", str(smoke_shards), "--out", str(tmp_path / "out"), "--config", str(cfg),
                       "--exp", "t", "--cpu"])
    torch._dynamo.reset()
    line = str(err.value.code)
    assert line.startswith("pretrain: pretrain.runtime.compile: torch.compile failed in stage pretrain (")
    assert line.endswith("set it to false to train without compiling") and "\n" not in line
