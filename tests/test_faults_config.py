"""Hostile configs: a YAML alias bomb is refused with one line, both where Snakemake loads the
config and where a stage reads `--config`, instead of growing to gigabytes and hanging."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SMOKE
from tvts.config import ConfigError, load_yaml
from test_workflow import SNAKEFILE

# 9 levels of 9 aliases each: 9^9 (387 million) numbers once expanded, under windows.clip_lengths.
LEVELS = "abcdefghi"
BOMB = "\n".join(["  clip_lengths:", "    - &a [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]"]
                 + [f"    - &{n} [{', '.join(['*' + p] * 9)}]" for p, n in zip(LEVELS, LEVELS[1:])])


def bomb_config(tmp_path: Path) -> tuple[Path, int]:
    """The smoke config with the bomb as `windows.clip_lengths`, and the line of its first alias."""
    text = SMOKE.read_text()
    assert "  clip_lengths: [3.0, 4.0]\n" in text
    before, after = text.split("  clip_lengths: [3.0, 4.0]\n")
    path = tmp_path / "bomb.yaml"
    path.write_text(before + BOMB + "\n" + after)
    return path, before.count("\n") + 3


def test_an_alias_bomb_is_refused_naming_the_file_and_line(tmp_path):
    path, line = bomb_config(tmp_path)
    with pytest.raises(ConfigError, match=rf"^{path}:{line}: YAML alias \*a refused: configs may not use anchors "
                                          "and aliases; write the value out$"):
        load_yaml(path)


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Before the fix both commands grew to 4.4 GB and hung: the timeout is the failure."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_a_stage_refuses_an_alias_bomb_in_its_config(tmp_path):
    path, line = bomb_config(tmp_path)
    (tmp_path / "videos.tsv").write_text("Name\n")
    proc = run([sys.executable, "-m", "tvts.cli", "align-asr", "--config", str(path), "--list",
                str(tmp_path / "videos.tsv"), "--out", str(tmp_path / "part-0.jsonl")], tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [f"align_asr: {path}:{line}: YAML alias *a refused: configs may not "
                                                "use anchors and aliases; write the value out"]


def test_snakemake_refuses_an_alias_bomb_in_the_config(tmp_path):
    path, line = bomb_config(tmp_path)
    proc = run([str(Path(sys.executable).parent / "snakemake"), "-s", str(SNAKEFILE), "--directory", str(tmp_path),
                "--configfile", str(path), "--cores", "1", "-n"], tmp_path)
    assert proc.returncode != 0
    assert f"Config error: {path}:{line}: YAML alias *a refused" in proc.stderr, proc.stderr[-3000:]
