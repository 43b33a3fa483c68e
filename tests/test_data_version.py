"""The DVC-versioned demo corpus: pulled data matches data.dvc, and the code regenerates it byte for byte."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tvts.config import load_sections
from tvts.data.demo import DemoConfig, generate_demo

from conftest import ROOT

DEMO = ROOT / "data" / "demo"
pulled = pytest.mark.skipif(not (DEMO / "yttemporal" / "videos.tsv").exists(),
                            reason="data/ not pulled (run `make test`, which runs `dvc pull`)")


def md5s(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pulled
def test_dvc_status_clean():
    dvc = Path(sys.executable).parent / "dvc"
    proc = subprocess.run([str(dvc), "status", "data.dvc"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout, proc.stdout


def test_remote_is_in_repo_and_small():
    config = (ROOT / ".dvc" / "config").read_text()
    assert "url = ../dvc-store" in config
    size = sum(p.stat().st_size for p in (ROOT / "dvc-store").rglob("*") if p.is_file())
    assert 0 < size < 15 * 2**20
    assert yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]["path"] == "data"


@pulled
def test_committed_corpus_is_what_the_code_generates(tmp_path):
    cfg = load_sections({"demo": DemoConfig}, str(ROOT / "config" / "demo.yaml"))["demo"]
    generate_demo(tmp_path / "demo", cfg, workers=2)
    assert md5s(tmp_path / "demo") == md5s(DEMO)
