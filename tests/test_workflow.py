"""The Snakemake DAG end to end on the smoke config, in a scratch working directory.

Covers the commands the README shows: the full run, `-n` with nothing left to do,
`-R align_asr`, `--until align_asr`, one target file, a bad config, lint and the paper dry-run.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tvts import tracking

from conftest import ROOT, SMOKE

SNAKEFILE = ROOT / "Snakefile"


def snakemake(workdir: Path, *args: str, configfile: Path = SMOKE, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(SNAKEFILE), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Parse the 'Job stats' table of a (dry-)run: rule -> count."""
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        jobs[m.group(1)] = int(m.group(2))
    jobs.pop("total", None)
    return jobs


@pytest.fixture(scope="module")
def done_workdir(tmp_path_factory, smoke_corpus):
    """A workdir on which the whole smoke DAG has run once."""
    work = tmp_path_factory.mktemp("wf")
    (work / "data").mkdir()
    shutil.copytree(smoke_corpus, work / "data" / "smoke")
    shutil.copy(ROOT / "data.dvc", work / "data.dvc")
    proc = snakemake(work)
    return work, proc


def smoke_parts() -> int:
    return yaml.safe_load(SMOKE.read_text())["dag"]["align_parts"]


TRAIN = {"pretrain": 1, "text_only_baseline": 1, "select_ckpt": 1, "all": 1}


def test_full_run_outputs(done_workdir):
    work, proc = done_workdir
    parts = smoke_parts()
    assert planned_jobs(proc) == {"align_asr": parts, "shard_clips": 1} | TRAIN
    manifest = json.loads((work / "results/smoke/shards/manifest.json").read_text())
    assert manifest["counts"]["train_windows"] > 0
    selection = json.loads((work / "results/smoke/select/selection.json").read_text())
    epochs = json.loads((work / "results/smoke/pretrain/manifest.json").read_text())["outputs"]["epoch_checkpoints"]
    assert [c["checkpoint"] for c in selection["candidates"]] == [Path(e).name for e in epochs]
    assert selection["metric"] == "sort_exact" and selection["best"] in [Path(e).name for e in epochs]
    from tvts.select import load_model

    model, cfg = load_model(work / "results/smoke/select/best.pt")
    assert cfg.model.video.dim == model.video.dim
    for i in range(parts):
        assert (work / f"results/smoke/asr/part-{i}.jsonl").exists()
        assert (work / f"logs/smoke/align_asr/part-{i}.log").exists()


def test_nothing_to_do_after_run(done_workdir):
    work, _ = done_workdir
    assert planned_jobs(snakemake(work, "-n")) == {}


def test_rerun_align_reruns_only_align_and_shard(done_workdir):
    work, _ = done_workdir
    assert planned_jobs(snakemake(work, "-n", "-R", "align_asr")) == {
        "align_asr": smoke_parts(), "shard_clips": 1} | TRAIN


def test_rerun_pretrain_reruns_pretraining_and_selection_only(done_workdir):
    work, _ = done_workdir
    assert planned_jobs(snakemake(work, "-n", "-R", "pretrain")) == {"pretrain": 1, "select_ckpt": 1, "all": 1}


def test_until_and_single_target(done_workdir, tmp_path):
    work, _ = done_workdir
    assert planned_jobs(snakemake(work, "-n", "--forceall", "--until", "align_asr")) == {"align_asr": smoke_parts()}
    assert planned_jobs(snakemake(work, "-n", "--force", "results/smoke/asr/part-0.jsonl")) == {"align_asr": 1}


def test_config_change_retriggers_only_affected(done_workdir, tmp_path):
    work, _ = done_workdir
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["shard_clips"]["jpeg_quality"] = 80
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    assert planned_jobs(snakemake(work, "-n", configfile=changed)) == {"shard_clips": 1} | TRAIN
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["select"]["metric"] = "sort_acc"
    changed.write_text(yaml.safe_dump(cfg))
    assert planned_jobs(snakemake(work, "-n", configfile=changed)) == {"select_ckpt": 1, "all": 1}


def test_mlflow_runs_and_tags(done_workdir):
    import mlflow

    work, _ = done_workdir
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("tvts")
    runs = client.search_runs([exp.experiment_id], "tags.`tvts.exp` = 'smoke'", max_results=1000)
    parents = [r for r in runs if r.data.tags.get("tvts.kind") == "workflow"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parent = next(p for p in parents if any(c.data.tags["mlflow.parentRunId"] == p.info.run_id for c in children))
    mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
    assert sorted(c.data.tags["tvts.rule"] for c in mine) == sorted(
        ["align_asr"] * smoke_parts() + ["shard_clips", "pretrain", "text_only_baseline", "select_ckpt"])
    md5 = yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]["md5"]
    for run in [parent, *mine]:
        assert run.data.tags["tvts.data_md5"] == md5
        assert run.data.tags["mlflow.source.git.commit"] == tracking.git_commit(ROOT) != "unknown"
        assert run.info.status == "FINISHED"
    shard_run = next(c for c in mine if c.data.tags["tvts.rule"] == "shard_clips")
    assert shard_run.data.metrics["train_windows"] > 0 and "shard_clips.jpeg_quality" in shard_run.data.params
    assert "manifest.json" in [a.path for a in client.list_artifacts(shard_run.info.run_id)]
    train_run = next(c for c in mine if c.data.tags["tvts.rule"] == "pretrain")
    history = client.get_metric_history(train_run.info.run_id, "train/loss_sort")
    assert len(history) >= 2 and "val/sort_exact" in train_run.data.metrics
    assert "pretrain.model.video.dim" in train_run.data.params
    select_run = next(c for c in mine if c.data.tags["tvts.rule"] == "select_ckpt")
    best = client.get_model_version_by_alias("tvts-smoke", "best")
    assert best.run_id == select_run.info.run_id and best.source.endswith("/model")
    selection = json.loads((work / "results/smoke/select/selection.json").read_text())
    assert best.tags["tvts.checkpoint"] == selection["best"]
    fetched = mlflow.artifacts.download_artifacts("models:/tvts-smoke@best", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    from tvts.select import load_model

    assert load_model(Path(fetched) / "best.pt")[0] is not None


def test_bad_config_stops_before_any_job(tmp_path, smoke_workdir):
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["align_asr"]["band_mim"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = snakemake(smoke_workdir, configfile=bad, check=False)
    assert proc.returncode != 0
    assert "align_asr.band_mim: unknown key" in proc.stderr + proc.stdout
    assert not (smoke_workdir / "results").exists()


def test_wrong_type_names_key(tmp_path, smoke_workdir):
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["dag"]["align_parts"] = "four"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = snakemake(smoke_workdir, "-n", configfile=bad, check=False)
    assert proc.returncode != 0 and "dag.align_parts: 'four' is not of type 'integer'" in proc.stderr + proc.stdout


def test_lint_clean(smoke_workdir):
    proc = snakemake(smoke_workdir, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_paper_config_dry_runs(tmp_path):
    proc = snakemake(tmp_path, "-n", configfile=ROOT / "config/paper.yaml")
    parts = yaml.safe_load((ROOT / "config/paper.yaml").read_text())["dag"]["align_parts"]
    assert planned_jobs(proc) == {"align_asr": parts, "shard_clips": 1, "pretrain": 1, "select_ckpt": 1, "all": 1}


def test_new_data_version_retriggers_alignment(done_workdir, tmp_path):
    """A new md5 in data.dvc (after `dvc add`) re-runs alignment and what depends on it."""
    work, _ = done_workdir
    original = (work / "data.dvc").read_text()
    try:
        (work / "data.dvc").write_text(original.replace("md5: ", "md5: 0", 1))
        assert planned_jobs(snakemake(work, "-n")) == {"align_asr": smoke_parts(), "shard_clips": 1} | TRAIN
    finally:
        (work / "data.dvc").write_text(original)
    assert planned_jobs(snakemake(work, "-n")) == {}


def test_configfile_replaces_the_default(smoke_workdir):
    """`--configfile smoke.yaml` must not inherit keys from the default config/demo.yaml."""
    (smoke_workdir / "config").mkdir()
    shutil.copy(ROOT / "config" / "demo.yaml", smoke_workdir / "config" / "demo.yaml")
    proc = snakemake(smoke_workdir, "-n", "-p")
    commands = proc.stdout + proc.stderr
    assert "tvts align-asr" in commands
    assert "stride_s" not in commands  # a demo.yaml key that smoke.yaml does not set
