"""`tvts inspect-shards` on shards whose videos differ in frame size, as a folder, a set, a set file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tvts.data import shards
from tvts.stages import inspect_shards


def window_meta(video_id: str, n_frames: int) -> dict:
    return {"video_id": video_id, "window": 0, "start": 0.0, "end": 4.0,
            "frame_times": [0.5 * i for i in range(n_frames)],
            "clips": [{"start": 0.0, "end": 2.0, "text": f"words of {video_id}"}]}


def write_part(folder: Path, videos: dict[str, tuple[int, int]], n_frames: int = 4) -> Path:
    """A shard folder with one window per video, frames of the given (H, W), and a manifest."""
    folder.mkdir(parents=True)
    sink = shards.ShardSink(folder, "train", samples_per_shard=1)
    for i, (video_id, (h, w)) in enumerate(videos.items()):
        frames = np.full((n_frames, h, w, 3), 60 + 60 * i, np.uint8)
        sink.add(shards.make_sample(shards.sample_key(video_id, 0), window_meta(video_id, n_frames), frames, 90))
    sink.flush()
    (folder / "manifest.json").write_text(json.dumps({"counts": {"windows": len(videos)}, "rejects": {}}))
    return folder


def test_a_contact_sheet_of_two_frame_sizes(tmp_path, capsys):
    part = write_part(tmp_path / "shards", {"wide": (48, 86), "tall": (64, 48)})
    png = tmp_path / "sheet.png"
    assert inspect_shards.main([str(part), "-n", "2", "--frames", "3", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "counts: {'windows': 2}" in out and "words of wide" in out and "words of tall" in out
    sheet = np.asarray(Image.open(png))
    assert sheet.shape == (2 * 48, 3 * 86, 3)  # the tall row scaled to height 48 and padded
    assert abs(int(sheet[:48].mean()) - 60) < 3 and (sheet[48:, 3 * 36 + 1:] == 0).all()


@pytest.mark.parametrize("form", ["set file", "folder with set.json"])
def test_a_shard_set_lists_its_parts(tmp_path, capsys, form):
    root = tmp_path / "shards"
    write_part(root / "part-0", {"a": (48, 64)})
    write_part(root / "part-1", {"b": (36, 64), "c": (64, 36)})
    (root / "set.json").write_text(json.dumps({"version": 1, "parts": ["part-0", "part-1"]}))
    spec = root / "set.json" if form == "set file" else root
    png = tmp_path / "sheet.png"
    assert inspect_shards.main([str(spec), "-n", "5", "--frames", "2", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "part-0: counts: {'windows': 1}" in out and "part-1: counts: {'windows': 2}" in out
    assert [line.split()[0] for line in out.splitlines() if " window " in line] == ["a", "b", "c"]
    assert Image.open(png).size[1] == 3 * 48


def test_a_bad_set_file_is_one_line_naming_it(tmp_path):
    (tmp_path / "set.json").write_text('{"version": 1, "parts": []}')
    with pytest.raises(SystemExit, match=r"set\.json: 'parts' must be a non-empty list"):
        inspect_shards.main([str(tmp_path / "set.json")])
    (tmp_path / "set.json").write_text("{oops")
    with pytest.raises(SystemExit, match=r"set\.json: not a shard set file"):
        inspect_shards.main([str(tmp_path)])


def test_pair_samples_show_their_caption(tmp_path, capsys):
    folder = tmp_path / "pairs"
    folder.mkdir()
    sink = shards.ShardSink(folder, "train", samples_per_shard=8)
    meta = {"id": "cc3m/0001.jpg", "caption": "a red bus", "kind": "image", "frame_times": [0.0]}
    sink.add(shards.make_sample("cc3m_0001_jpg", meta, np.zeros((1, 32, 48, 3), np.uint8), 90))
    sink.flush()
    assert inspect_shards.main([str(folder), "--png", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "no manifest.json" in out and "cc3m/0001.jpg (image): a red bus" in out
