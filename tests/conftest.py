"""Shared fixtures: a session MLflow store in a temp folder and the smoke corpus."""
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


@pytest.fixture(scope="session")
def mlflow_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="session", autouse=True)
def _isolated_tracking(mlflow_dir):
    """Session-wide (module fixtures run workflows too): never touch the repository's
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
    """The smoke corpus (all three formats), generated once per session. Read-only for tests."""
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
