"""The Snakemake DAG end to end on the smoke config, in a scratch working directory.

Covers the commands the README shows: the full run, `-n` with nothing left to do,
`-R align_asr`, `--until align_asr`, one target file, a bad config, lint and the paper dry-run.
"""
from __future__ import annotations

import csv
import io
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
def done_workdir(smoke_dag_done):
    """A workdir on which the whole smoke DAG has run once (shared with tests/test_slurm.py)."""
    return smoke_dag_done


def smoke_parts() -> int:
    return yaml.safe_load(SMOKE.read_text())["dag"]["align_parts"]


EVAL = {"eval_zeroshot_v2v": 1, "eval_linear": 1, "eval_finetune": 1, "eval_t2v": 1}
EVAL_BOTH = {rule: 2 for rule in EVAL}  # the smoke experiment and its no-pretraining baseline `random`
TRAIN = {"pretrain": 1, "text_only_baseline": 1, "select_ckpt": 1, "init_model": 1, "report": 1, "all": 1} | EVAL_BOTH


def test_full_run_outputs(done_workdir):
    work, proc = done_workdir
    parts = smoke_parts()
    assert planned_jobs(proc) == {"align_asr": parts, "shard_clips": smoke_parts(), "shard_union": 1} | TRAIN
    shard_set = json.loads((work / "results/smoke/shards/set.json").read_text())
    assert shard_set["counts"]["train_windows"] > 0
    selection = json.loads((work / "results/smoke/select/selection.json").read_text())
    epochs = json.loads((work / "results/smoke/pretrain/manifest.json").read_text())["outputs"]["epoch_checkpoints"]
    assert [c["checkpoint"] for c in selection["candidates"]] == [Path(e).name for e in epochs]
    assert selection["metric"] == "sort_exact" and selection["best"] in [Path(e).name for e in epochs]
    from tvts.models.load import load_model

    model, cfg = load_model(work / "results/smoke/select/best.pt")
    assert cfg.model.video.dim == model.video.dim
    for i in range(parts):
        assert (work / f"results/smoke/asr/part-{i}.jsonl").exists()
        assert (work / f"logs/smoke/align_asr/part-{i}.log").exists()


def test_selection_reuses_the_trainers_validation_pass(done_workdir):
    """select_ckpt takes each checkpoint's scores from the trainer's end-of-epoch val pass;
    scoring the checkpoint again gives the same numbers, so the reuse changes nothing."""
    import torch

    from tvts.select import score
    from tvts.train import distributed as dist

    work, _ = done_workdir
    selection = json.loads((work / "results/smoke/select/selection.json").read_text())
    assert set(selection["scores_from"].values()) == {"trainer"}
    cpu = dist.DistEnv(0, 1, 0, torch.device("cpu"))
    for cand in selection["candidates"]:
        fresh = score(work / "results/smoke/pretrain/ckpt" / cand["checkpoint"], work / "results/smoke/shards", cpu, 0)
        assert fresh == pytest.approx({k: v for k, v in cand.items() if k != "checkpoint"}, abs=1e-6)


def test_selection_scores_checkpoints_the_trainer_did_not_validate(done_workdir, tmp_path, monkeypatch):
    """A manifest without the val pass of some epoch (or `select.rescore: true`): those are scored."""
    from tvts.stages import select_ckpt

    work, _ = done_workdir
    pre = tmp_path / "pretrain"
    shutil.copytree(work / "results/smoke/pretrain", pre)
    manifest = json.loads((pre / "manifest.json").read_text())
    manifest["history"] = manifest["history"][1:]   # the first epoch's pass is missing
    (pre / "manifest.json").write_text(json.dumps(manifest))
    ref = json.loads((work / "results/smoke/select/selection.json").read_text())
    monkeypatch.chdir(work)   # the manifest names its shards relative to the workdir
    for rescore in (False, True):
        out = tmp_path / f"select-{rescore}"
        cfg = json.dumps({"select": {"register": False, "rescore": rescore}})
        assert select_ckpt.main(["--pretrain", str(pre), "--shards", "results/smoke/shards", "--out", str(out),
                                 "--exp", "smoke-reselect", "--config-json", cfg]) == 0
        sel = json.loads((out / "selection.json").read_text())
        sources = list(sel["scores_from"].values())
        assert sources[0] == "scored" and set(sources[1:]) == {"scored" if rescore else "trainer"}
        assert sel["best"] == ref["best"]
        for ours, theirs in zip(sel["candidates"], ref["candidates"]):
            assert ours["checkpoint"] == theirs["checkpoint"]
            assert {k: ours[k] for k in theirs if k != "checkpoint"} == pytest.approx(
                {k: v for k, v in theirs.items() if k != "checkpoint"}, abs=1e-6)


def test_selection_by_step_takes_the_last_checkpoint_and_by_loss_the_lowest():
    """`select.metric: step` is the fixed-budget protocol: the last epoch, whatever val says."""
    from tvts.select import SelectConfig, pick

    scores = {f"epoch-{e:04d}_step-{54 * (e + 1):08d}.pt": {"step": 54.0 * (e + 1), "loss_align": 6.0 + e,
                                                           "sort_exact": [0.1, 0.3, 0.2][e]}
              for e in range(3)}
    names = sorted(scores)
    assert pick(scores, SelectConfig(metric="step")) == names[-1]
    assert pick(scores, SelectConfig(metric="loss_align")) == names[0]
    assert pick(scores, SelectConfig(metric="sort_exact")) == names[1]


def test_nothing_to_do_after_run(done_workdir):
    work, _ = done_workdir
    assert planned_jobs(snakemake(work, "-n")) == {}


def test_rerun_align_reruns_only_align_and_shard(done_workdir):
    work, _ = done_workdir
    assert planned_jobs(snakemake(work, "-n", "-R", "align_asr")) == {
        "align_asr": smoke_parts(), "shard_clips": smoke_parts(), "shard_union": 1} | TRAIN


def test_rerun_pretrain_reruns_pretraining_and_selection_only(done_workdir):
    work, _ = done_workdir
    assert planned_jobs(snakemake(work, "-n", "-R", "pretrain")) == {"pretrain": 1, "select_ckpt": 1, "report": 1,
                                                                     "all": 1} | EVAL


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
    assert planned_jobs(snakemake(work, "-n", configfile=changed)) == {"shard_clips": smoke_parts(), "shard_union": 1} | TRAIN
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["select"]["metric"] = "sort_acc"
    changed.write_text(yaml.safe_dump(cfg))
    assert planned_jobs(snakemake(work, "-n", configfile=changed)) == {"select_ckpt": 1, "report": 1, "all": 1} | EVAL


def test_mlflow_runs_and_tags(done_workdir):
    import mlflow

    work, _ = done_workdir
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("tvts")
    runs = client.search_runs([exp.experiment_id], "tags.`tvts.exp` = 'smoke'", max_results=1000)
    parents = [r for r in runs if r.data.tags.get("tvts.kind") == "workflow"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    # the full run of this workdir (other tests rerun single stages of the smoke experiment in the same store)
    kids = {p.info.run_id: [c for c in children if c.data.tags["mlflow.parentRunId"] == p.info.run_id] for p in parents}
    parent = next(p for p in parents if "align_asr" in {c.data.tags["tvts.rule"] for c in kids[p.info.run_id]})
    mine = kids[parent.info.run_id]
    assert sorted(c.data.tags["tvts.rule"] for c in mine) == sorted(
        ["align_asr"] * smoke_parts() + ["shard_clips"] * smoke_parts() + ["shard_union", "pretrain", "text_only_baseline", "select_ckpt"] + list(EVAL))
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
    from tvts.models.load import load_model

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
    tasks = yaml.safe_load((ROOT / "config/paper.yaml").read_text())["eval"]["tasks"]
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())["dag"]
    assert planned_jobs(proc) == {"fetch_videos": paper["fetch_parts"], "join_fetched": 1,
                                  "align_asr": parts, "shard_clips": paper["shard_parts"], "shard_union": 1,
                                  "shard_pairs": paper["pair_parts"], "pretrain": 1, "select_ckpt": 1,
                                  "post_pretrain": 1, "report": 1, "all": 1} | {
        f"eval_{task}": 2 * len(names) for task, names in tasks.items()}  # paper and paper-post
    assert len(tasks["finetune"]) == 4 and len(tasks["t2v"]) == 4  # every dataset of the paper's tables
    # The jobs are listed in the order they can run: every fetch part and the join before alignment.
    order = re.findall(r"^rule (\w+):", proc.stdout, re.MULTILINE)
    assert max(i for i, r in enumerate(order) if r in ("fetch_videos", "join_fetched")) < order.index("align_asr")


def test_new_data_version_retriggers_alignment(done_workdir, tmp_path):
    """A new md5 in data.dvc (after `dvc add`) re-runs alignment and what depends on it."""
    work, _ = done_workdir
    original = (work / "data.dvc").read_text()
    try:
        (work / "data.dvc").write_text(original.replace("md5: ", "md5: 0", 1))
        assert planned_jobs(snakemake(work, "-n")) == {"align_asr": smoke_parts(), "shard_clips": smoke_parts(), "shard_union": 1} | TRAIN
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


def test_evaluations_for_both_experiments_and_the_report(done_workdir):
    work, _ = done_workdir
    keys = {"zeroshot_v2v": {"r1", "r5", "r10"}, "linear": {"top1", "top5"}, "finetune": {"top1", "top5"},
            "t2v": {"zeroshot/r1", "zeroshot/medr", "finetuned/r1", "finetuned/medr"}}
    for exp in ("smoke", "random"):
        for task, dataset in [("zeroshot_v2v", "ssv2"), ("linear", "ssv2"), ("finetune", "ssv2"), ("t2v", "msrvtt")]:
            result = json.loads((work / f"results/{exp}/eval/{task}/{dataset}.json").read_text())
            assert keys[task] <= set(result["metrics"]), (exp, task)
            assert all(0 <= v <= 100 for k, v in result["metrics"].items() if "/r" in k or k[:1] in "rt")
    init = torch_load(work / "results/random/init/model.pt")
    assert init["step"] == 0 and init["source"].startswith("init:")
    summary = (work / "results/report/summary.md").read_text()
    assert "`smoke`" in summary and "`random`" in summary and "Linear probe" in summary
    for png in ("pretrain_curves", "retrieval", "classification"):
        assert (work / f"results/report/{png}.png").read_bytes()[:4] == b"\x89PNG"


def torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def test_eval_runs_are_tagged_and_compare_prints_both(done_workdir):
    import mlflow

    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("tvts")
    runs = [r for r in client.search_runs([exp.experiment_id], "tags.`tvts.task` = 'linear'", max_results=1000)
            if r.data.tags["tvts.exp"] in ("smoke", "random")]  # other tests log their own probes
    assert {r.data.tags["tvts.exp"] for r in runs} == {"smoke", "random"}
    assert all(r.data.tags["tvts.dataset"] == "ssv2" and "top1" in r.data.metrics for r in runs)
    proc = subprocess.run([str(Path(sys.executable).parent / "tvts"), "compare", "smoke", "random"],
                          capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "linear" in line.lower() and "top1" in line)
    linear = {e: json.loads((done_workdir[0] / f"results/{e}/eval/linear/ssv2.json").read_text())["metrics"]["top1"]
              for e in ("smoke", "random")}
    for value in linear.values():
        assert f"{value:.2f}" in row or f"{value:.1f}" in row, (row, linear)


def test_rerun_linear_probe_plans_only_linear_probes_and_report(done_workdir):
    work, _ = done_workdir
    assert planned_jobs(snakemake(work, "-n", "-R", "eval_linear")) == {"eval_linear": 2, "report": 1, "all": 1}


def test_snakemake_report_includes_the_plots(done_workdir, tmp_path):
    work, _ = done_workdir
    out = tmp_path / "report.zip"
    snakemake(work, "--report", str(out))
    import zipfile

    names = zipfile.ZipFile(out).namelist()
    for png in ("pretrain_curves.png", "retrieval.png", "classification.png"):
        assert any(n.endswith(png) for n in names), names


SMOKE_GRID = {"seeds": [0, 1], "methods": {
    "tvts": {},
    "videomae": {"pretrain": {"method": "videomae", "model": {"mask_ratio": 0.9, "mask_kind": "shared"},
                              "videomae": {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}},
                 "select": {"metric": "loss_recon"}},
    # a supervised control: its initial model trained on the SSV2 train labels, then read frozen
    "supervised": {"no_pretrain": True, "seeds": [0], "supervised": {"dataset": "ssv2", "finetune": {"lr": 1.0e-2}}}}}


def test_smoke_grid_of_methods_and_seeds(done_workdir, tmp_path):
    """A tiny methods x seeds grid on the smoke shards: one pretraining per (method, seed), the
    untrained baseline per seed, evaluations, and the report aggregating over seeds."""
    work = tmp_path / "grid"
    shutil.copytree(done_workdir[0], work, symlinks=True)
    config = yaml.safe_load(SMOKE.read_text())
    config["grid"] = SMOKE_GRID
    config["eval"]["tasks"] = {"linear": ["ssv2"]}
    config["dag"]["report_dir"] = "results/grid-report"
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump(config))
    exps = ["tvts-s0", "tvts-s1", "videomae-s0", "videomae-s1"]
    # the data stages are the smoke experiment's, already built: only the grid's jobs are planned
    assert planned_jobs(snakemake(work, "-n", configfile=cfg)) == {
        "pretrain": 4, "select_ckpt": 4, "init_model": 3, "supervise": 1, "eval_linear": 7,
        "report": 1, "all": 1}
    snakemake(work, configfile=cfg)
    manifests = {e: json.loads((work / f"results/{e}/pretrain/manifest.json").read_text()) for e in exps}
    assert [m["config"]["pretrain"]["seed"] for m in manifests.values()] == [0, 1, 0, 1]
    assert [m["config"]["pretrain"]["method"] for m in manifests.values()] == ["tvts", "tvts", "videomae", "videomae"]
    assert "loss_recon" not in manifests["tvts-s0"]["history"][-1]
    assert manifests["videomae-s0"]["history"][-1]["loss_recon"] > 0
    best = {e: torch_load(work / f"results/{e}/select/best.pt")["model"] for e in exps}
    assert any("decoder" in k for k in best["videomae-s0"]) and not any("decoder" in k for k in best["tvts-s0"])
    key = "video.patch_embed.proj.weight"
    assert not best["tvts-s0"][key].equal(best["tvts-s1"][key])  # the seed changes the run
    inits = [torch_load(work / f"results/random-s{s}/init/model.pt")["model"][key] for s in (0, 1)]
    assert not inits[0].equal(inits[1])
    trained = json.loads((work / "results/supervised-s0/supervised/result.json").read_text())
    assert trained["config"]["finetune"]["lr"] == 1.0e-2 and trained["counts"]["steps"] > 0
    probed = json.loads((work / "results/supervised-s0/eval/linear/ssv2.json").read_text())
    assert probed["model"]["checkpoint"] == "results/supervised-s0/supervised/model.pt"
    tuned = torch_load(work / "results/supervised-s0/supervised/model.pt")["model"][key]
    assert not tuned.equal(torch_load(work / "results/supervised-s0/init/model.pt")["model"][key])
    summary = (work / "results/grid-report/summary.md").read_text()
    assert "## Methods over seeds" in summary
    assert all(any(l.startswith(f"| `{m}` | 2 |") for l in summary.splitlines()) for m in ("tvts", "videomae", "random"))
    assert (work / "results/grid-report/methods.png").read_bytes()[:4] == b"\x89PNG"
    proc = subprocess.run([str(Path(sys.executable).parent / "tvts"), "compare", "tvts-s*", "videomae-s*",
                           "--by-method", "--csv", "-"], capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    rows = {(r["stage/task"], r["metric"]): r for r in csv.DictReader(io.StringIO(proc.stdout))}
    values = [json.loads((work / f"results/{e}/eval/linear/ssv2.json").read_text())["metrics"]["top1"]
              for e in ("tvts-s0", "tvts-s1")]
    assert float(rows[("linear", "top1")]["tvts_mean"]) == pytest.approx(sum(values) / 2)
    assert rows[("linear", "top1")]["videomae_n"] == "2"
