"""`make gpu-check` (bench/gpu_check.py): its CPU dry run writes the JSON with every section, and
without a GPU the plain command is one line and exit 0."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_check  # noqa: E402


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(capsys, tmp_path):
    if torch.cuda.is_available():
        return
    assert gpu_check.main(["--out", str(tmp_path / "x.json")]) == 0
    said = capsys.readouterr().out
    assert said.startswith("gpu-check: no CUDA GPU here") and len(said.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


def test_cpu_dry_run_writes_every_section(tmp_path, smoke_shards):
    out = tmp_path / "gpu_check.json"
    # compile on the CPU is tested by tests/test_compile.py (minutes on 2 cores): not again here
    assert gpu_check.main(["--cpu", "--no-compile", "--shards", str(smoke_shards), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    s = report["sections"]
    assert set(s) == set(gpu_check.SECTIONS) and not [k for k, v in s.items() if "error" in v]
    assert s["versions"]["torch"] == torch.__version__ and s["versions"]["device"] == "cpu"
    assert s["collectives"]["gloo_grad_matches_analytic"] is True
    eager = s["smoke_pretrain"]["eager"]
    assert eager["exit_code"] == 0 and eager["steps"] > 0 and eager["final_loss"] > 0 and eager["samples_per_s"] > 0
    step = s["train_step"]["eager"]
    assert step["samples_per_s"] > 0 and step["flops_per_sample"] > 0 and step["mfu"] > 0
    assert s["nvjpeg"]["within_tolerance"] is True and s["nvjpeg"]["ms_per_frame_device"] > 0
    assert "skipped" in s["torchcodec"] or s["torchcodec"]["max_abs_diff"] >= 0
    assert gpu_check.numbers(s)["nvjpeg/max_abs_diff"] == s["nvjpeg"]["max_abs_diff"]
