"""Divergence: a run whose loss or gradients go NaN or infinite is stopped with one line, never
accepted. Non-finite steps are skipped and counted, no checkpoint with a NaN is ever written,
selection refuses such a candidate and every evaluation refuses such a model."""
from __future__ import annotations

import functools
import logging
import math
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml

from conftest import SMOKE
from tvts.io import CheckpointError
from tvts.train import checkpoint
from tvts.train import distributed as dist
from tvts.train import image_mae, trainer
from tvts.train.image_mae import train_steps
from tvts.train.init_config import StepsConfig
from tvts.train.preemption import Diverged, Preempted

CPU = dist.DistEnv(0, 1, 0, torch.device("cpu"))


def smoke_with(tmp_path: Path, **pretrain: dict) -> Path:
    """The smoke config with some `pretrain` subsections updated."""
    cfg = yaml.safe_load(SMOKE.read_text())
    for section, values in pretrain.items():
        cfg["pretrain"][section] = cfg["pretrain"].get(section, {}) | values
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_pretrain(shards: Path, out: Path, cfg: Path) -> int | str:
    from tvts.stages import pretrain

    try:
        return pretrain.main(["--shards", str(shards), "--out", str(out), "--config", str(cfg), "--exp", "t", "--cpu"])
    except SystemExit as err:
        return err.code


def every_checkpoint_is_finite(folder: Path) -> bool:
    return all(not checkpoint.nonfinite_tensors(checkpoint.load(p)["model"]) for p in folder.glob("*.pt"))


@pytest.mark.parametrize("loss", [{"temperature": 1e-39}, {"align_weight": 1e39}])
def test_a_loss_that_is_nan_from_step_one_stops_pretraining_with_one_line(smoke_shards, tmp_path, loss):
    """Finding: `loss.temperature: 1e-39` or `align_weight: 1e39` gave NaN from step 1; pretraining
    exited 0 and wrote NaN checkpoints, and selection then picked one."""
    out = tmp_path / "pre"
    code = run_pretrain(smoke_shards, out, smoke_with(tmp_path, loss=loss))
    assert isinstance(code, str), f"pretraining accepted a diverged run (exit {code})"
    # the smoke run's epoch is one step: its end checks the share of skipped steps
    assert code.startswith("pretrain: diverged at step 1: 1 of 1 steps (pretrain.optim.max_skipped_share 0.05) "
                           "had a non-finite loss or gradient (loss="), code
    assert "loss_align=" in code and "grad_norm=" in code and "\n" not in code
    assert not (out / "manifest.json").exists()
    assert every_checkpoint_is_finite(out / "ckpt")


def test_a_loss_that_explodes_stops_pretraining_with_one_line(smoke_shards, tmp_path):
    """Finding: lr 1e3 gave a loss of ~1e6 (finite) and exit 0."""
    out = tmp_path / "pre"
    cfg = smoke_with(tmp_path, optim={"lr": 1e3, "epochs": 4, "decay_epochs": [4]})
    code = run_pretrain(smoke_shards, out, cfg)
    assert isinstance(code, str), f"pretraining accepted a diverged run (exit {code})"
    assert code.startswith("pretrain: diverged at step 2: 1 of 2 steps (pretrain.optim.max_skipped_share 0.05) had "
                           "a loss over 10000 times the first step's ("), code
    assert "pretrain.optim.max_loss_growth) (loss=" in code and "\n" not in code
    assert not (out / "manifest.json").exists()


def test_an_exploding_loss_is_skipped_like_a_nan(tmp_path, caplog):
    def make_batch(step: int) -> int:
        return step

    def loss_of(step: int) -> torch.Tensor:
        loss = model(torch.ones(1, 3)).pow(2).sum() + 1.0
        return loss * 1e6 if step in (3, 4) else loss

    model = nn.Linear(3, 1)
    with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.WARNING, "tvts.trainer"):
        mp.setattr(image_mae, "Budget", functools.partial(trainer.Budget, max_loss_growth=1e3, max_skipped_share=0.25))
        train_steps(model, loss_of, make_batch, STEPS, tmp_path, "k", CPU)
    assert caplog.text.count("skipped: a loss over 1000 times the first step's") == 2, caplog.text


def nan_at(bad_steps: set[int]):
    """A linear regression whose loss is NaN on the given (0-based) steps' batches."""
    def make_batch(step: int) -> tuple[int, torch.Tensor]:
        return step, torch.randn(4, 3, generator=torch.Generator().manual_seed(step))

    def loss_of(batch) -> torch.Tensor:
        step, x = batch
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        return loss * float("nan") if step in bad_steps else loss

    model = nn.Linear(3, 1)
    return model, loss_of, make_batch


STEPS = StepsConfig(steps=12, lr=0.05, warmup_steps=0, log_every=1, ckpt_every=4, clip_grad=0.0)


def train(folder: Path, bad_steps: set[int], **guard) -> nn.Module:
    """12 steps of the trainer core (as the init stages run it), NaN on `bad_steps`; `guard`: the
    limits (a share of 0.25 unless given: 2 of 12 are allowed)."""
    model, loss_of, make_batch = nan_at(bad_steps)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(image_mae, "Budget", functools.partial(trainer.Budget, **({"max_skipped_share": 0.25} | guard)))
        train_steps(model, loss_of, make_batch, STEPS, folder, "k", CPU)
    return model


def test_a_non_finite_step_is_skipped_counted_and_changes_no_weight(tmp_path, caplog):
    clean = train(tmp_path / "clean", set())
    with caplog.at_level(logging.WARNING, "tvts.trainer"):
        skipped = train(tmp_path / "skipped", {5, 9})
    assert "step 6 skipped: a non-finite loss or gradient (loss=nan grad_norm=nan); 1 skipped so far" in caplog.text
    assert "step 10 skipped" in caplog.text and "2 skipped so far" in caplog.text
    weights = dict(skipped.named_parameters())
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert any(not torch.equal(w, dict(clean.named_parameters())[k]) for k, w in weights.items())
    saved = checkpoint.load(next((tmp_path / "skipped").glob("epoch-*.pt")))
    assert saved["guard"]["skipped"] == 2 and saved["guard"]["in_row"] == 0


def preempted_after(folder: Path, bad_steps: set[int], step: int, **guard) -> None:
    """Train until SIGTERM arrives after optimiser step `step` (checkpointed there)."""
    real_step = trainer.optimizer_step

    def step_then_signal(state, *args):
        real_step(state, *args)
        if state.step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "optimizer_step", step_then_signal)
        with pytest.raises(Preempted):
            train(folder, bad_steps, **guard)


def test_a_skipped_step_resumes_exactly(tmp_path, caplog):
    """The skip counters are checkpointed: a run cut after its skipped step resumes to the same weights."""
    straight = train(tmp_path / "a", {5})
    preempted_after(tmp_path / "b", {5}, 7)
    guard = checkpoint.load(tmp_path / "b" / checkpoint.step_name(7))["guard"]
    assert guard["skipped"] == 1 and guard["in_row"] == 0 and guard["first_loss"] > 0
    with caplog.at_level(logging.INFO, "tvts.init"):
        model = train(tmp_path / "b", {5})
    assert "resuming from step-00000007.pt" in caplog.text
    for name, w in straight.named_parameters():
        assert torch.equal(w, dict(model.named_parameters())[name]), name


def test_the_count_in_a_row_survives_a_resume(tmp_path):
    preempted_after(tmp_path, {4, 5}, 6, max_skipped_in_row=3)
    with pytest.raises(Diverged, match=r"^diverged at step 7: 3 steps in a row"):
        train(tmp_path, {6}, max_skipped_in_row=3)


def test_too_many_non_finite_steps_in_a_row_stop_the_run(tmp_path):
    with pytest.raises(Diverged, match=r"^diverged at step 5: 3 steps in a row \(max_skipped_in_row 3\) had a "
                                       r"non-finite loss or gradient \(loss=nan grad_norm=nan\)"):
        train(tmp_path, {2, 3, 4}, max_skipped_in_row=3)


def test_too_large_a_share_of_non_finite_steps_stops_the_run(tmp_path):
    with pytest.raises(Diverged, match=r"^diverged at step 8: 3 of 8 steps \(max_skipped_share 0.2\)"):
        train(tmp_path, {1, 4, 7, 10}, max_skipped_in_row=3, max_skipped_share=0.2)


def nan_weights(path: Path) -> Path:
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight[0, 1] = float("nan")
    checkpoint.save(path, {"model": model.state_dict()})
    return path


def test_no_non_finite_checkpoint_is_ever_written(tmp_path):
    from tvts.train.trainer import TrainState

    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.bias.fill_(float("inf"))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state = TrainState(model, model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), 4, step=4)
    ckpts = checkpoint.CheckpointManager(tmp_path, "k", CPU, every=1, keep_last=2)
    with pytest.raises(checkpoint.NonFiniteWeights, match=r"step-00000004.pt \(step 4\): 1 of 2 weight tensors are "
                                                          r"not finite \(NaN or inf, first: bias\)"):
        ckpts.save_step(state)
    assert list(tmp_path.iterdir()) == []


def test_every_evaluation_refuses_a_non_finite_model(tmp_path):
    """Every evaluation loads its model through tvts.models.load (tests/test_structure.py)."""
    from tvts.models.load import load_model

    path = nan_weights(tmp_path / "best.pt")
    state = checkpoint.load(path)
    state |= {"config": {}, "text_spec": {}}
    checkpoint.save(path, {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(CheckpointError, match=rf"^{path}: 1 of 2 weight tensors are not finite \(NaN or inf, "
                                              r"first: weight\); refusing a diverged model"):
        load_model(path)


def test_select_ckpt_refuses_non_finite_candidates_and_says_so(tmp_path, caplog):
    """Finding: selection picked epoch 0 of a NaN run: best.pt had 20 of 60 tensors non-finite."""
    from tvts.select import SelectConfig, choose_best, write_best

    good = tmp_path / "epoch-0000_step-00000002.pt"
    checkpoint.save(good, {"model": nn.Linear(3, 1).state_dict(), "config": {}, "text_spec": {}, "step": 2,
                           "steps_per_epoch": 2, "run_key": "k"})
    nan_state = checkpoint.load(nan_weights(tmp_path / "epoch-0001_step-00000004.pt"))
    checkpoint.save(tmp_path / "epoch-0001_step-00000004.pt",
                    {k: v for k, v in nan_state.items() if k != "format"}
                    | {"config": {}, "text_spec": {}, "step": 4, "steps_per_epoch": 2, "run_key": "k"})
    nan_score = tmp_path / "epoch-0002_step-00000006.pt"
    scores = {"epoch-0000_step-00000002.pt": {"sort_exact": 0.1}, "epoch-0001_step-00000004.pt": {"sort_exact": 0.9},
              nan_score.name: {"sort_exact": math.nan}}
    with caplog.at_level(logging.WARNING):
        best, refused = choose_best(scores, {}, SelectConfig(metric="sort_exact"), tmp_path, tmp_path / "best.pt")
    assert best == good.name
    assert refused == {
        nan_score.name: f"{nan_score}: non-finite validation sort_exact (nan); refusing a diverged checkpoint",
        "epoch-0001_step-00000004.pt": f"{tmp_path / 'epoch-0001_step-00000004.pt'}: 1 of 2 weight tensors are not "
                                       "finite (NaN or inf, first: weight); refusing a diverged model"}
    assert "refusing a diverged" in caplog.text
    assert not checkpoint.nonfinite_tensors(checkpoint.load(tmp_path / "best.pt")["model"])
    with pytest.raises(CheckpointError, match="refusing a diverged model"):
        write_best(tmp_path / "epoch-0001_step-00000004.pt", tmp_path / "x.pt", "sort_exact", 0.9)


def test_the_guard_limits_are_config_keys_checked_with_one_line():
    from tvts.config import ConfigError, from_dict
    from tvts.train.config import PretrainConfig
    from tvts.train.post_config import PostPretrainConfig

    assert from_dict(PretrainConfig, {"optim": {"max_skipped_in_row": 4}}, "pretrain").optim.max_skipped_in_row == 4
    with pytest.raises(ConfigError, match=r"^pretrain.optim.max_loss_growth: must be 0 \(off\) or > 1$"):
        from_dict(PretrainConfig, {"optim": {"max_loss_growth": 0.5}}, "pretrain")
    with pytest.raises(ConfigError, match=r"^pretrain.optim.max_skipped_in_row: must be >= 1$"):
        from_dict(PretrainConfig, {"optim": {"max_skipped_in_row": 0}}, "pretrain")
    with pytest.raises(ConfigError, match=r"^post_pretrain.optim.max_skipped_share: must lie in \[0, 1\]$"):
        from_dict(PostPretrainConfig, {"optim": {"max_skipped_share": 2.0}}, "post_pretrain")
