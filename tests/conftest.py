"""Shared fixtures: one MLflow store per pytest run in a temp folder, and the smoke corpus."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tvts.config import load_sections
from tvts.data.demo import DemoConfig, generate_demo

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "config" / "smoke.yaml"
_ENV_AT_START = {k: v for k, v in os.environ.items() if k.startswith(("TVTS_", "MLFLOW_"))}


def pytest_collection_finish(session):
    """Importing a test module must not switch the project's behaviour for every later test
    (a benchmark module that set TVTS_TRACKING=off at import once silenced all run tracking)."""
    now = {k: v for k, v in os.environ.items() if k.startswith(("TVTS_", "MLFLOW_"))}
    if now != _ENV_AT_START:
        changed = sorted(set(now.items()) ^ set(_ENV_AT_START.items()))
        raise pytest.UsageError(f"collecting the tests changed the environment: {changed}")


@pytest.fixture(scope="session")
def mlflow_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


def own_store(mp: pytest.MonkeyPatch, root: Path, experiment: str) -> str:
    """Point MLflow at a store of its own under `root` (for tests that count runs). Returns its URI."""
    uri = f"sqlite:///{root}/mlflow.db"
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("TVTS_MLFLOW_EXPERIMENT", experiment)
    mp.setenv("TVTS_GIT_COMMIT", "test")
    mp.delenv("TVTS_PARENT_RUN_ID", raising=False)
    return uri


@pytest.fixture(scope="session", autouse=True)
def _isolated_tracking(mlflow_dir):
    """For the whole pytest run (module fixtures run workflows too): never touch the repository's
    mlflow.db, no parent run leaks in, and the venv's `tvts`/`snakemake` are on PATH."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{mlflow_dir}/mlflow.db")
        mp.delenv("TVTS_PARENT_RUN_ID", raising=False)
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        yield


@pytest.fixture(scope="session")
def smoke_demo_config() -> DemoConfig:
    return load_sections({"demo": DemoConfig}, str(SMOKE))["demo"]


@pytest.fixture(scope="session")
def smoke_corpus(tmp_path_factory, smoke_demo_config) -> Path:
    """The smoke corpus (all three formats), generated once per pytest run. Read-only for tests."""
    out = tmp_path_factory.mktemp("corpus") / "smoke"
    generate_demo(out, smoke_demo_config, workers=2)
    return out


@pytest.fixture
def smoke_workdir(tmp_path, smoke_corpus) -> Path:
    """A Snakemake working directory holding data/smoke (a copy) and data.dvc."""
    (tmp_path / "data").mkdir()
    shutil.copytree(smoke_corpus, tmp_path / "data" / "smoke")
    shutil.copy(ROOT / "data.dvc", tmp_path / "data.dvc")
    return tmp_path


@pytest.fixture(scope="session")
def smoke_shards(tmp_path_factory, smoke_corpus) -> Path:
    """Window shards of the smoke corpus (align_asr + shard_clips in-process), built once."""
    from tvts.stages import align_asr, shard_clips

    out = tmp_path_factory.mktemp("smoke_shards")
    part = out / "asr" / "part-0.jsonl"
    assert align_asr.main(["--list", str(smoke_corpus / "yttemporal" / "videos.tsv"), "--config", str(SMOKE),
                           "--exp", "t", "--out", str(part)]) == 0
    assert shard_clips.main(["--asr", str(part), "--out", str(out / "shards"), "--config", str(SMOKE),
                             "--workers", "2", "--exp", "t"]) == 0
    return out / "shards"


def save_tiny_checkpoint(path: Path, video: dict, captions: list[str]) -> Path:
    """Write a best.pt (the format tvts.select reads) of an untrained, seeded TVTS.

    Args:
        path: where to write it.
        video: `model.video` overrides of the smoke config (a tiny encoder).
        captions: the texts the scratch tokenizer is trained on.
    Returns:
        `path`.
    """
    import json

    import torch

    from tvts.config import from_dict, load_yaml
    from tvts.io import dumps
    from tvts.models.text import build_spec
    from tvts.train import checkpoint
    from tvts.train.config import PretrainConfig
    from tvts.models.load import build_model

    raw = load_yaml(SMOKE)["pretrain"]
    raw["model"]["video"] = dict(video)
    cfg = from_dict(PretrainConfig, raw, "pretrain")
    spec = build_spec(cfg.model.text, captions)
    torch.manual_seed(0)
    model = build_model(cfg, spec, load_pretrained_text=False)
    checkpoint.save(path, {"model": model.state_dict(), "config": json.loads(dumps(cfg)), "text_spec": spec.as_dict(),
                  "step": 0})
    return path


@pytest.fixture(scope="session")
def smoke_dag_done(tmp_path_factory, smoke_corpus):
    """A workdir on which the whole smoke DAG has run once, locally (read-only for tests: copy it
    before running anything that changes its results)."""
    import subprocess

    work = tmp_path_factory.mktemp("wf")
    (work / "data").mkdir()
    shutil.copytree(smoke_corpus, work / "data" / "smoke")
    shutil.copy(ROOT / "data.dvc", work / "data.dvc")
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(SMOKE), "--cores", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return work, proc
