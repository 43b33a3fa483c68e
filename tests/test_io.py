"""Atomic outputs: a writer killed mid-way leaves the old file (or none), never a partial one."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tvts import io


def test_atomic_write_replaces_whole(tmp_path):
    p = tmp_path / "a.json"
    io.atomic_write_json(p, {"x": 1})
    io.atomic_write_json(p, {"x": 2})
    assert json.loads(p.read_text()) == {"x": 2}
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]


def test_exception_leaves_no_output(tmp_path):
    p = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with io.atomic_path(p) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_exception_keeps_previous(tmp_path):
    d = tmp_path / "shards"
    with io.atomic_dir(d) as tmp:
        (tmp / "train-000000.tar").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with io.atomic_dir(d) as tmp:
            (tmp / "train-000000.tar").write_bytes(b"new-partial")
            raise RuntimeError("boom")
    assert (d / "train-000000.tar").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]


def test_killed_writer_leaves_nothing_final(tmp_path):
    """SIGKILL a process in the middle of writing a big JSONL: the final name never appears."""
    out = tmp_path / "part-0.jsonl"
    code = textwrap.dedent(f"""
        import sys, time
        from tvts import io
        def rows():
            for i in range(10**9):
                if i == 1000:
                    print("writing", flush=True)
                    time.sleep(60)
                yield {{"i": i}}
        io.atomic_write_jsonl({str(out)!r}, rows())
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    leftovers = list(tmp_path.iterdir())
    assert all(p.name.startswith(".") and p.name.endswith(".tmp") for p in leftovers)


def test_rejects_counts(tmp_path):
    r = io.Rejects("align_asr")
    r.add("v1", "empty_asr")
    r.add("v2", "empty_asr")
    r.add("v3", "zero_duration", "info.duration=0")
    assert r.counts() == {"empty_asr": 2, "zero_duration": 1}
    r.write(tmp_path / "rejects.jsonl")
    assert [row["item"] for row in io.read_jsonl(tmp_path / "rejects.jsonl")] == ["v1", "v2", "v3"]


def test_remove_stale_temp_dirs_deletes_only_this_outputs_dead_writers(tmp_path):
    out = tmp_path / "part-0"
    dead = Path(tempfile.mkdtemp(prefix=".part-0.", suffix=".tmp", dir=tmp_path))  # as io.atomic_dir names it
    (dead / "train-000000.tar").write_bytes(b"half")
    other = Path(tempfile.mkdtemp(prefix=".part-1.", suffix=".tmp", dir=tmp_path))   # another output's writer
    same_name_file = tmp_path / ".part-0.abcdefgh.tmp"                                # a temp file, not a folder
    same_name_file.write_bytes(b"x")
    assert io.remove_stale_temp_dirs(out) == [dead]
    assert not dead.exists() and other.is_dir() and same_name_file.is_file()
    with io.atomic_dir(out) as tmp:
        (tmp / "ok").write_text("1")
    assert io.remove_stale_temp_dirs(out) == [] and (out / "ok").read_text() == "1"
