"""Bad samples are data in training too: one unreadable frame costs one sample, not the run. It is
replaced by the next sample (the batch keeps its size, a resumed run sees the same), counted by
reason in the log, MLflow and the manifest, and a limit stops a run with too many."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch

from test_faults_divergence import run_pretrain as pretrain_message
from test_train import final_weights, run_pretrain, train_config
from tvts.data import shards
from tvts.train import trainer
from tvts.train.preemption import PREEMPTED


def flip_frames(folder: Path) -> str:
    """Break every frame of the first train sample in place (the same length: the index stays
    valid, as after a bit flip on disk); returns the sample's key."""
    shard = shards.list_shards(folder, "train")[0]
    key, members = shards.tar_members(shard)[0]
    data = bytearray(shard.read_bytes())
    for field, (offset, size) in members.items():
        if field.endswith(".jpg"):
            data[offset:offset + 4] = b"\x00\x01\x02\x03"  # no JPEG start-of-image marker
    shard.write_bytes(bytes(data))
    return key


@pytest.fixture
def bad_shards(smoke_shards, tmp_path) -> tuple[Path, str]:
    folder = tmp_path / "shards"
    shutil.copytree(smoke_shards, folder)
    return folder, flip_frames(folder)


def test_an_unreadable_frame_costs_one_sample_not_the_run(bad_shards, tmp_path, caplog):
    """Finding: one bit-flipped JPEG killed pretraining at step 3 with `ShardError: ... not a readable
    JPEG`, and the rerun hit the same frame."""
    folder, key = bad_shards
    out = tmp_path / "pre"
    with caplog.at_level(logging.WARNING, "tvts.data"):
        assert run_pretrain(folder, out, train_config(tmp_path)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    epochs = manifest["counts"]["epochs"]
    assert manifest["bad_samples"] == {"unreadable_jpeg": epochs}  # the sample, once per epoch
    assert f"skipped a bad sample (the next one takes its place): {folder}/train-000000.tar: {key}.f" in caplog.text
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert max(r.get("train/bad_samples/unreadable_jpeg", 0) for r in logged) == epochs


def test_a_run_with_a_replaced_sample_resumes_exactly(bad_shards, tmp_path, monkeypatch):
    folder, _ = bad_shards
    cfg = train_config(tmp_path)
    assert run_pretrain(folder, tmp_path / "straight", cfg) == 0
    real_step = trainer.optimizer_step

    def step_then_signal(state, *args):
        real_step(state, *args)
        if state.step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "optimizer_step", step_then_signal)
    out = tmp_path / "preempted"
    assert run_pretrain(folder, out, cfg) == PREEMPTED
    monkeypatch.setattr(trainer, "optimizer_step", real_step)
    assert run_pretrain(folder, out, cfg) == 0
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(out)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert json.loads((out / "manifest.json").read_text())["bad_samples"] == \
        json.loads((tmp_path / "straight/manifest.json").read_text())["bad_samples"]


def test_too_many_bad_samples_stop_the_run_with_one_line(bad_shards, tmp_path):
    import yaml

    folder, _ = bad_shards
    path = train_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["pretrain"]["data"]["max_bad_samples"] = 0
    path.write_text(yaml.safe_dump(cfg))
    code = pretrain_message(folder, tmp_path / "pre", path)
    assert isinstance(code, str) and "\n" not in code, code
    assert code.startswith("pretrain: too many unreadable samples at step "), code
    assert "more than 0 (pretrain.data.max_bad_samples) were replaced on a rank (unreadable_jpeg=1)" in code


def test_every_bad_sample_reason_is_counted_under_its_name():
    from tvts.train.data import replace_bad

    errors = {0: "not a readable JPEG (x)", 1: "invalid JSON (x)", 2: "missing member (the sample has no json)"}

    def item(i: int) -> dict:
        if i in errors:
            raise shards.ShardError("s.tar", f"k{i}", errors[i])
        return {"index": torch.tensor(i)}

    got = replace_bad(item, 0, 5)
    assert int(got["index"]) == 3
    assert dict(zip(shards.REASONS, got["skipped"].tolist())) == {"unreadable_jpeg": 1, "bad_json": 1,
                                                                  "missing_member": 1, "bad_sample": 0}
    with pytest.raises(shards.ShardError, match="no readable sample among 3"):
        replace_bad(item, 0, 3)
